"""The fast path's request parser: exact verdicts, and never more lenient than aiohttp's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import http_parser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airclass.web.head import MAX_HEAD, Kind, Request, parse_head, parse_query

SID = "AbCdEfGh12345678"
BASE = f"GET /live/math/{SID}/12.3.ts HTTP/1.1\r\nHost: 10.0.0.5:8888".encode()


def test_a_plain_part_request() -> None:
    assert parse_head(BASE) == Request(
        Kind.PART, "live/math", SID, 12, 3, {}, False, None, False
    )


def test_each_route_and_what_it_carries() -> None:
    head = (
        b"GET /live/math/index.m3u8?jwt=a.b.c&x=1&jwt=second HTTP/1.1\r\n"
        b"host: a\r\nAccept-Encoding: br, gzip\r\nConnection: keep-alive, close\r\n"
        b"Authorization:  Bearer t0k \t\r\nAuthorization: Bearer other"
    )
    assert parse_head(head) == Request(
        Kind.ENTRY, "live/math", "", -1, -1, {"jwt": "a.b.c", "x": "1"}, True,
        "Bearer t0k", True,
    )
    playlist = parse_head(
        f"GET /live/math/{SID}/media.m3u8?_HLS_msn=4&_HLS_part=1 HTTP/1.1\r\nHost: a".encode()
    )
    assert playlist == Request(
        Kind.PLAYLIST, "live/math", SID, -1, -1, {"_HLS_msn": "4", "_HLS_part": "1"}, False,
        None, False,
    )
    segment = parse_head(f"GET /live/math/{SID}/7.ts HTTP/1.1\r\nHost: a".encode())
    assert segment == Request(Kind.SEGMENT, "live/math", SID, 7, -1, {}, False, None, False)


@pytest.mark.parametrize(
    "head",
    [
        BASE.replace(b"GET", b"HEAD"),
        BASE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        BASE.replace(b"12.3.ts", b"12.3.mp4"),
        BASE.replace(b"/live/", b"/live%2F/"),
        BASE.replace(b".ts ", b".ts?jwt=a%20b "),
        BASE.replace(b".ts ", b".ts?q=a+b "),
        BASE.replace(b"Host: 10.0.0.5:8888", b"X-Other: 1"),  # no Host
        BASE + b"\r\nHost: again",  # two Hosts
        BASE + b"\r\nX-A: 1\nX-B: 2",  # a bare LF inside the head
        BASE + b"\r\nX-A: 1\rX-B: 2",  # a bare CR
        BASE.replace(b"\r\n", b"\n"),
        BASE + b"\r\nX A: 1",  # a name that is not a token
        BASE + b"\r\n X-A: 1",  # obsolete line folding
        BASE + b"\r\nX-A : 1",
        BASE + b"\r\nX-A: \x01",  # a control character in a value
        BASE + b"\r\nX-A: caf\xc3\xa9",  # obs-text
        BASE + b"\r\nX-A",
        BASE + b"\r\n: 1",
        BASE + b"\r\nContent-Length: 0",
        BASE + b"\r\nTransfer-Encoding: chunked",
        BASE + b"\r\nRange: bytes=0-1",
        BASE + b"\r\nExpect: 100-continue",
        BASE + b"\r\nUpgrade: websocket",
        BASE + b"\r\nConnection: Upgrade",
        BASE.replace(b"GET ", b"GET  "),
        BASE + b"\r\nX-Pad: " + b"a" * MAX_HEAD,
        b"",
    ],
)
def test_anything_unusual_is_handed_off(head: bytes) -> None:
    assert parse_head(head) is None


def test_query_needs_no_decoding_or_is_refused() -> None:
    assert parse_query(b"") == {}
    assert parse_query(b"a=1&&b&a=2&c=x=y") == {"a": "1", "b": "", "c": "x=y"}
    assert parse_query(b"a=%41") is None
    assert parse_query(b"a=b+c") is None
    assert parse_query(b"a=\x7f") is None


# -- against aiohttp's own parsers ----------------------------------------------------------

PARSERS = [http_parser.HttpRequestParserPy]
if http_parser.HttpRequestParserC is not None:  # llhttp, what the slave runs with
    PARSERS.append(http_parser.HttpRequestParserC)


class _Protocol:
    transport = None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def aiohttp_verdicts(
    loop: asyncio.AbstractEventLoop, head: bytes
) -> list[http_parser.RawRequestMessage | None]:
    """What each of aiohttp's parsers makes of `head` (None: refused)."""
    verdicts: list[http_parser.RawRequestMessage | None] = []
    for parser_type in PARSERS:
        parser = parser_type(_Protocol(), loop, 2**16, max_line_size=8190, max_field_size=8190)
        try:
            messages, upgraded, tail = parser.feed_data(head + b"\r\n\r\n")
        except http_parser.BadHttpMessage:
            verdicts.append(None)
            continue
        if len(messages) != 1 or upgraded or tail:
            verdicts.append(None)
            continue
        verdicts.append(messages[0][0])
    return verdicts


NAMES = st.sampled_from(
    [b"Accept", b"Accept-Encoding", b"Connection", b"Authorization", b"User-Agent", b"X-Y",
     b"Host", b"Content-Length", b"Transfer-Encoding", b"Range"]
)
VALUES = st.one_of(
    st.sampled_from([b" a", b" gzip, br", b" close", b"keep-alive", b" Bearer x.y.z ", b""]),
    st.binary(max_size=12),
)
TARGETS = st.sampled_from(
    [f"/live/math/{SID}/12.3.ts", f"/live/math/{SID}/12.ts", f"/live/math/{SID}/media.m3u8",
     "/live/math/index.m3u8", "/live/math/index.m3u8?jwt=a.b.c", "/other"]
).map(str.encode)


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Mostly well-formed heads of our routes: a Host first, then a few other headers."""
    method = draw(st.sampled_from([b"GET"] * 6 + [b"POST", b"get"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"]))
    lines = [b" ".join((method, draw(TARGETS), version))]
    if draw(st.integers(0, 9)):
        lines.append(b"Host: 10.0.0.5:8888")
    lines += [n + b":" + v for n, v in draw(st.lists(st.tuples(NAMES, VALUES), max_size=4))]
    return b"\r\n".join(lines)


HEADS = heads()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A head with a few bytes inserted, removed or replaced anywhere."""
    head = bytearray(draw(HEADS))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(head)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 34, 58, 127, 128, 255])
                    | st.integers(0, 255))
        if action == "insert":
            head.insert(at, byte)
        elif at < len(head):
            if action == "delete":
                del head[at]
            else:
                head[at] = byte
    return bytes(head)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(HEADS, mutated()))
@example(BASE + b"\r\nX-A: 1\nX-B: 2")
@example(BASE.replace(b"Host: 10.0.0.5:8888", b"Host:"))
def test_whatever_aiohttp_refuses_is_handed_off(
    loop: asyncio.AbstractEventLoop, head: bytes
) -> None:
    ours = parse_head(head)
    if ours is None:
        return
    for theirs in aiohttp_verdicts(loop, head):
        assert theirs is not None, "answered a request aiohttp refuses"
        assert theirs.method == "GET"
        assert theirs.version == (1, 1)
        assert theirs.path.partition("?")[0].strip("/").startswith(ours.path)
        assert len(theirs.headers.getall("Host")) == 1
        authorization = theirs.headers.get("Authorization")
        assert ours.authorization == (None if authorization is None else authorization.strip())
        assert not theirs.should_close or ours.close
