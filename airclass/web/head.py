"""The fast path's request parsing: one request head in, a request of ours or a hand-off out.

Pure: no I/O, no state. The fast path answers only what this function returns; anything it
does not recognise, or recognises but finds unusual, goes to aiohttp, whose parser (llhttp)
then decides. So the rule here is strict on purpose: whatever aiohttp would refuse must be
handed off, never answered (a request one parser accepts and the other refuses is how requests
are smuggled past a proxy). `tests/web/test_head.py` holds this against aiohttp's own parsers
on random and mutated heads.

Handed off, besides unknown routes: any method but GET, any version but HTTP/1.1, a missing
`Host`, a repeated `Host` or other single-valued header, a bare CR or LF anywhere, a header
name that is not an RFC 9110 token, a value with control characters or bytes over 0x7E, a
query that needs percent-decoding, and the headers that make a request more than a plain GET
(a body, a range, an upgrade).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final, NamedTuple

from airclass.media.names import NAME

MAX_HEAD: Final = 8 * 1024
"""A request head larger than this goes to aiohttp (which refuses heads over its limits)."""

_NAME: Final = f"({NAME})".encode()
ROUTE: Final = re.compile(
    rb"/" + _NAME + rb"/" + _NAME + rb"/([A-Za-z0-9_-]{8,96})/"
    rb"(?:media\.m3u8|([0-9]{1,12})(?:\.([0-9]{1,4}))?\.ts)"
)
"""The routes `hls_views.add_routes` gives the media playlist, segments and parts."""

ENTRY: Final = re.compile(rb"/" + _NAME + rb"/" + _NAME + rb"/index\.m3u8")
"""The entry playlist's route: a player's first request, usually on the connection it keeps
using for the rest."""

QUERY: Final = re.compile(rb"[A-Za-z0-9._~!$&'()*,;=:@/?-]*")
"""Query bytes taken as they are: RFC 3986 query characters without percent-encoding and `+`
(either needs aiohttp's decoding to mean the same thing)."""

_FIELD: Final = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*"
FIELDS: Final = re.compile(_FIELD + rb"(?:\r\n" + _FIELD + rb")*")
"""The header lines, checked in one pass: each name an RFC 9110 token, each value visible ASCII,
spaces and tabs (no obs-text, no control characters, so no bare CR or LF)."""

HANDED_OFF_HEADERS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"range"}
)
"""A request with any of these is not a plain GET: aiohttp serves it."""

SINGLETON_HEADERS: Final = frozenset(
    {b"host", b"content-location", b"content-range", b"content-type", b"etag",
     b"max-forwards", b"server", b"user-agent"}
)
"""Headers a request may carry once (RFC 9110; aiohttp refuses a second one)."""


class Kind(Enum):
    ENTRY = "entry"
    PLAYLIST = "playlist"
    SEGMENT = "segment"
    PART = "part"


class Request(NamedTuple):
    """A request the fast path answers (a tuple: built per request, so built cheaply)."""

    kind: Kind
    path: str
    """The stream path, `app/stream`."""
    sid: str
    """The viewer session id from the URL; empty for the entry playlist."""
    sequence: int
    """The segment's media sequence number (segments and parts; -1 otherwise)."""
    part: int
    """The part's index in its segment (parts; -1 otherwise)."""
    query: dict[str, str]
    """The query's first value for each name (entry and media playlists)."""
    gzip: bool
    """The client accepts a gzip-encoded body."""
    authorization: str | None
    """The first `Authorization` header's value, stripped."""
    close: bool
    """The client asked to close the connection after the reply (`Connection: close`)."""


def parse_query(raw: bytes) -> dict[str, str] | None:
    """A query string's first value for each name; None if it needs decoding (aiohttp's)."""
    if not QUERY.fullmatch(raw):
        return None
    query: dict[str, str] = {}
    for field in raw.decode("ascii").split("&"):
        if field:
            name, _, value = field.partition("=")
            query.setdefault(name, value)
    return query


def parse_head(head: bytes) -> Request | None:
    """The request in `head` (without its final CRLF CRLF), or None to hand it to aiohttp."""
    if len(head) > MAX_HEAD:
        return None
    line_end = head.find(b"\r\n")
    if line_end < 0 or not FIELDS.fullmatch(head, line_end + 2):
        return None
    request_line = head[:line_end].split(b" ")
    if len(request_line) != 3:
        return None
    method, target, version = request_line
    if method != b"GET" or version != b"HTTP/1.1":
        return None
    raw_path, _, raw_query = target.partition(b"?")
    match = ROUTE.fullmatch(raw_path)
    entry = ENTRY.fullmatch(raw_path) if match is None else None
    if match is None and entry is None:
        return None
    query = parse_query(raw_query) if raw_query else {}
    if query is None:
        return None
    gzip = close = False
    singletons: set[bytes] = set()
    authorization: str | None = None
    for line in head[line_end + 2 :].split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in SINGLETON_HEADERS:
            if name in singletons:
                return None
            singletons.add(name)
        elif name in HANDED_OFF_HEADERS:
            return None
        elif name == b"accept-encoding":
            gzip = gzip or b"gzip" in value
        elif name == b"connection":
            tokens = value.lower()
            if b"upgrade" in tokens:
                return None
            close = close or b"close" in tokens
        elif name == b"authorization" and authorization is None:
            authorization = value.strip(b" \t").decode("ascii")
    if b"host" not in singletons:
        return None
    if entry is not None:
        app, stream = entry.groups()
        return Request(
            Kind.ENTRY, f"{app.decode()}/{stream.decode()}", "", -1, -1, query, gzip,
            authorization, close,
        )
    assert match is not None
    app, stream, sid, seq, part = match.groups()
    path = f"{app.decode()}/{stream.decode()}"
    if seq is None:
        kind, sequence, index = Kind.PLAYLIST, -1, -1
    elif part is None:
        kind, sequence, index = Kind.SEGMENT, int(seq), -1
    else:
        kind, sequence, index = Kind.PART, int(seq), int(part)
    return Request(kind, path, sid.decode(), sequence, index, query, gzip, authorization, close)
