from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.rtmp import amf0
from airclass.rtmp.amf0 import UNDEFINED, AmfDate, EcmaArray
from airclass.rtmp.errors import AmfError

# The `connect` command ffmpeg 5.1 sent for rtmp://127.0.0.1:34307/live/test?key=k.
FFMPEG_CONNECT = bytes.fromhex(
    "020007636f6e6e656374003ff00000000000000300036170700200046c6976650004747970"
    "6502000a6e6f6e707269766174650008666c617368566572020024464d4c452f332e302028"
    "636f6d70617469626c653b204c61766635392e32372e313030290005746355726c02001b72"
    "746d703a2f2f3132372e302e302e313a33343330372f6c697665000009"
)


def test_ffmpeg_connect_decodes_exactly_and_round_trips() -> None:
    values = amf0.decode(FFMPEG_CONNECT)
    assert values == [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; Lavf59.27.100)",
            "tcUrl": "rtmp://127.0.0.1:34307/live",
        },
    ]
    assert list(values[2]) == ["app", "type", "flashVer", "tcUrl"]
    assert amf0.encode(*values) == FFMPEG_CONNECT


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (1.0, "003ff0000000000000"),
        (-2.5, "00c004000000000000"),
        (True, "0101"),
        (False, "0100"),
        ("ab", "0200026162"),
        ("", "020000"),
        ("é", "020002c3a9"),
        (None, "05"),
        (UNDEFINED, "06"),
        ({"a": 1.0}, "03000161003ff0000000000000000009"),
        ({}, "03000009"),
        (EcmaArray(w=2.0), "0800000001000177004000000000000000000009"),
        ([1.0, "x"], "0a00000002003ff0000000000000020001" + "78"),
        ([], "0a00000000"),
        (AmfDate(1.5e12, 0), "0b4275d3ef798000000000"),
        ({"o": {"n": None}}, "030001" + "6f" + "030001" + "6e" + "05000009" + "000009"),
    ],
)
def test_exact_bytes(value: Any, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert amf0.encode(value) == raw
    decoded = amf0.decode(raw)
    assert decoded == [value]
    assert type(decoded[0]) is type(value)


def test_integers_encode_as_numbers() -> None:
    assert amf0.encode(3) == amf0.encode(3.0)
    assert amf0.decode(amf0.encode(3)) == [3.0]


def test_long_string() -> None:
    text = "x" * 70_000
    raw = amf0.encode(text)
    assert raw[:5] == b"\x0c\x00\x01\x11\x70"
    assert amf0.decode(raw) == [text]


def test_ecma_array_count_is_advisory() -> None:
    # Some encoders write 0 as the count; the end marker decides.
    raw = bytes.fromhex("0800000000" + "000177003ff0000000000000" + "000009")
    assert amf0.decode(raw) == [{"w": 1.0}]


def test_decode_one_returns_offset() -> None:
    raw = amf0.encode("a", 2.0)
    assert amf0.decode_one(raw) == ("a", 4)
    assert amf0.decode_one(raw, 4) == (2.0, 13)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("00", "truncated AMF0 number"),
        ("003ff0", "truncated AMF0 number"),
        ("01", "truncated AMF0 boolean"),
        ("0200", "truncated AMF0 string length"),
        ("0200056162", "truncated AMF0 string"),
        ("0c00010000", "truncated AMF0 long string"),
        ("0300016105", "truncated AMF0 string length"),
        ("030001610500", "truncated AMF0 string"),
        ("030000", "truncated AMF0 object end"),
        ("0300", "truncated AMF0 string length"),
        ("0a000000", "truncated AMF0 array count"),
        ("0affffffff", "strict array declares 4294967295 elements"),
        ("0b00", "truncated AMF0 date"),
        ("09", "unexpected AMF0 object end"),
        ("07 0001", "unsupported AMF0 type: reference"),
        ("10 0001 61 000009", "unsupported AMF0 type: typed object"),
        ("11 01", "unsupported AMF0 type: AMF3 switch"),
        ("0d", "unsupported AMF0 type: unsupported"),
        ("ff", "unknown marker 0xff"),
    ],
)
def test_malformed(raw: str, message: str) -> None:
    with pytest.raises(AmfError, match=message):
        amf0.decode(bytes.fromhex(raw.replace(" ", "")))


def test_depth_bomb_objects() -> None:
    bomb = b"\x03\x00\x01a" * 100_000
    with pytest.raises(AmfError, match="nesting deeper than 16"):
        amf0.decode(bomb)


def test_depth_bomb_arrays() -> None:
    bomb = b"\x0a\x00\x00\x00\x01" * 100_000
    with pytest.raises(AmfError, match="nesting deeper than 16"):
        amf0.decode(bomb)


def test_depth_limit_is_exact() -> None:
    nested: Any = 1.0
    for _ in range(16):
        nested = [nested]
    assert amf0.decode(amf0.encode(nested)) == [nested]
    with pytest.raises(AmfError):
        amf0.decode(amf0.encode([nested]))


def test_element_budget() -> None:
    raw = amf0.encode({f"k{i}": None for i in range(200)})
    assert len(amf0.decode(raw, max_elements=201)[0]) == 200
    with pytest.raises(AmfError, match="too many AMF0 values"):
        amf0.decode(raw, max_elements=200)
    # A strict array's declared count is checked against the budget before allocation.
    with pytest.raises(AmfError, match="strict array declares 200 elements"):
        amf0.decode(amf0.encode([None] * 200), max_elements=200)


def test_encode_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        amf0.encode(object())
    with pytest.raises(TypeError):
        amf0.encode({1: 2})


_keys = st.text(max_size=8)
_scalars = (
    st.floats(allow_nan=False)
    | st.booleans()
    | st.text(max_size=20)
    | st.none()
    | st.just(UNDEFINED)
    | st.builds(AmfDate, st.floats(allow_nan=False), st.integers(-32768, 32767))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_keys.filter(bool), inner, max_size=4)
        | st.dictionaries(_keys.filter(bool), inner, max_size=4).map(EcmaArray)
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(st.lists(_values, max_size=4))
def test_round_trip(values: list[Any]) -> None:
    raw = amf0.encode(*values)
    assert amf0.decode(raw) == values
    assert amf0.encode(*amf0.decode(raw)) == raw


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_amf_error(data: bytes) -> None:
    with contextlib.suppress(AmfError):
        amf0.decode(data)


def test_nan_round_trips_as_nan() -> None:
    (value,) = amf0.decode(amf0.encode(math.nan))
    assert math.isnan(value)
