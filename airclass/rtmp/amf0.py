"""AMF0 encoding and decoding (the value format of RTMP commands and metadata).

Python mapping: number ↔ float (ints encode as numbers), boolean ↔ bool, string and long
string ↔ str, object ↔ dict, ECMA array ↔ `EcmaArray` (a dict, so metadata reads like one),
strict array ↔ list, date ↔ `AmfDate`, null ↔ None, undefined ↔ `UNDEFINED`.

The decoder is bounded: nesting depth, a total number of values, and every declared length or
count is checked against the bytes that remain before anything is allocated. References,
typed objects, record sets, XML and the AMF3 switch are refused: no publisher we support sends
them in AMF0 commands.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Any

from airclass.rtmp.errors import AmfError

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
NULL = 0x05
UNDEFINED_MARKER = 0x06
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C

_NAMES = {
    0x04: "movieclip",
    0x07: "reference",
    0x0D: "unsupported",
    0x0E: "recordset",
    0x0F: "xml document",
    0x10: "typed object",
    0x11: "AMF3 switch",
}

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")

DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ELEMENTS = 10_000
_ENCODE_MAX_DEPTH = 64


class _Undefined(enum.Enum):
    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined.UNDEFINED
"""AMF0 `undefined`, kept distinct from `null` so values round-trip."""


class EcmaArray(dict[str, Any]):
    """An AMF0 ECMA array: an associative array (how `onMetaData` is usually sent)."""


@dataclass(frozen=True, slots=True)
class AmfDate:
    """An AMF0 date."""

    millis: float
    """Milliseconds since the Unix epoch, UTC."""
    timezone: int = 0
    """Reserved by the spec (should be 0); kept so dates round-trip."""


class _Decoder:
    __slots__ = ("_budget", "_buf", "_end", "_max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int, max_elements: int) -> None:
        self._buf = data
        self._end = len(data)
        self._max_depth = max_depth
        self._budget = max_elements
        self.pos = 0

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > self._end:
            raise AmfError(f"truncated AMF0 {what} at offset {self.pos}")

    def _utf8(self, n: int, what: str) -> str:
        self._need(n, what)
        start = self.pos
        self.pos = start + n
        return self._buf[start : start + n].decode("utf-8", "replace")

    def _short_string(self) -> str:
        self._need(2, "string length")
        (n,) = _U16.unpack_from(self._buf, self.pos)
        self.pos += 2
        return self._utf8(n, "string")

    def _long_string(self) -> str:
        self._need(4, "long string length")
        (n,) = _U32.unpack_from(self._buf, self.pos)
        self.pos += 4
        return self._utf8(n, "long string")

    def _properties(self, out: dict[str, Any], depth: int) -> None:
        while True:
            key = self._short_string()
            if key == "":
                self._need(1, "object end")
                if self._buf[self.pos] == OBJECT_END:
                    self.pos += 1
                    return
                # An empty key with a value: legal, if odd.
            out[key] = self.value(depth)

    def value(self, depth: int = 0) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise AmfError("too many AMF0 values")
        self._need(1, "type marker")
        marker = self._buf[self.pos]
        self.pos += 1
        if marker == NUMBER:
            self._need(8, "number")
            (number,) = _DOUBLE.unpack_from(self._buf, self.pos)
            self.pos += 8
            return number
        if marker == BOOLEAN:
            self._need(1, "boolean")
            self.pos += 1
            return self._buf[self.pos - 1] != 0
        if marker == STRING:
            return self._short_string()
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == LONG_STRING:
            return self._long_string()
        if marker == DATE:
            self._need(10, "date")
            millis, tz = _DATE.unpack_from(self._buf, self.pos)
            self.pos += 10
            return AmfDate(millis, tz)
        if marker in (OBJECT, ECMA_ARRAY, STRICT_ARRAY):
            if depth >= self._max_depth:
                raise AmfError(f"AMF0 nesting deeper than {self._max_depth}")
            if marker == OBJECT:
                obj: dict[str, Any] = {}
                self._properties(obj, depth + 1)
                return obj
            self._need(4, "array count")
            (count,) = _U32.unpack_from(self._buf, self.pos)
            self.pos += 4
            if marker == ECMA_ARRAY:
                # The count is advisory (encoders get it wrong); the end marker is authoritative.
                ecma = EcmaArray()
                self._properties(ecma, depth + 1)
                return ecma
            if count > self._end - self.pos or count > self._budget:
                raise AmfError(f"AMF0 strict array declares {count} elements")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == OBJECT_END:
            raise AmfError(f"unexpected AMF0 object end at offset {self.pos - 1}")
        name = _NAMES.get(marker, f"unknown marker 0x{marker:02x}")
        raise AmfError(f"unsupported AMF0 type: {name}")


def decode(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> list[Any]:
    """Decode every value in `data`; raises AmfError on malformed or over-limit input."""
    decoder = _Decoder(bytes(data), max_depth, max_elements)
    values: list[Any] = []
    end = len(data)
    while decoder.pos < end:
        values.append(decoder.value())
    return values


def decode_one(
    data: bytes,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> tuple[Any, int]:
    """Decode the value at `offset`; returns it and the offset just past it."""
    decoder = _Decoder(bytes(data), max_depth, max_elements)
    decoder.pos = offset
    value = decoder.value()
    return value, decoder.pos


def _encode_string_body(text: str, out: bytearray) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("object key longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(obj: dict[str, Any], out: bytearray, depth: int) -> None:
    for key, item in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 object keys must be str, not {type(key).__name__}")
        _encode_string_body(key, out)
        _encode(item, out, depth)
    out += b"\x00\x00\x09"


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > _ENCODE_MAX_DEPTH:
        raise ValueError("value nested too deeply to encode")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            number = math.nan  # one canonical NaN
        out.append(NUMBER)
        out += _DOUBLE.pack(number)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(value, out, depth + 1)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(value, out, depth + 1)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.millis, value.timezone)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: Any) -> bytes:
    """Encode values back to back, as RTMP commands lay them out."""
    out = bytearray()
    for value in values:
        _encode(value, out, 0)
    return bytes(out)
