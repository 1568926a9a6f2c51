"""The viewers' hot path: media playlists, segments and parts answered on the connection's own
protocol, without aiohttp's request machinery.

Every viewer asks for the playlist every target duration (every part, in LL-HLS) and for every
segment or part: these three requests are nearly all of a slave's traffic. The entry playlist is
answered here too: it is a player's first request, on the connection it then keeps using, which
would otherwise be aiohttp's for good. Through aiohttp each runs
Python before our handler does (request and header objects, routing, the middleware, the
response object) that costs more than the work itself. Here a protocol parses just what
these requests need, calls the same request logic as the aiohttp handlers (`hls_views`), and
writes the reply itself: a segment's headers by one `send` that holds them for the body's first
packet (MSG_MORE), its body by `sendfile` from the shared memory file (`SharedFiles`). (Headers
sent in a packet of their own make the reader receive one more packet per reply, which showed
in `benchmarks/compare_nginx.py`'s "wrk CPU" row; nginx holds them with TCP_NOPUSH.)

Anything else, or anything unusual, goes to aiohttp: the first request that is not a plain
HTTP/1.1 GET of one of these routes (another path or method, a percent-encoded or oversized
request, a body, a Range, an Upgrade) hands the connection over, with the bytes not yet
answered, to aiohttp's own protocol, which serves it from there as if it had had it from the
start. The replies are the same bytes either way (tests/web/test_fastpath.py compares them),
and the requests are counted in the same metrics.

Used on uvloop, whose transports keep a reference to what they are given: the part of a body
the socket does not take at once is queued without a copy. asyncio's transports copy it, so
there every connection goes to aiohttp, whose path (`send_shared`) slices large bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, cast

from aiohttp import http as aiohttp_http
from aiohttp.tcp_helpers import tcp_keepalive

from airclass.auth.authorize import extract_token
from airclass.tls import is_tls
from airclass.web.head import MAX_HEAD, Kind, Request, parse_head
from airclass.web.hls_views import (
    ENTRY_CACHE,
    M3U8,
    PLAYLIST_CACHE,
    SEGMENT_HEADERS,
    HlsContext,
    PartRequest,
    PlaylistRequest,
    entry_body,
    find_segment,
)
from airclass.web.http import CORS_HEADERS, SHARED_CHUNK, HttpError
from airclass.web.metrics import HttpMetrics, LatencyHistogram

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

MAX_PENDING: Final = 64 * 1024
"""Bytes of unanswered requests a connection may hold while it waits (a held reply, or a
client that does not read its replies): past this nothing more is read from it until the
requests already in are answered, as aiohttp pauses at a bound on its queue of pipelined
requests. Without it, a client that pipelines and never reads grows the buffer at line rate."""

ENTRY_ROUTE: Final = "/{app}/{stream}/index.m3u8"
PLAYLIST_ROUTE: Final = "/{app}/{stream}/{sid}/media.m3u8"
SEGMENT_ROUTE: Final = "/{app}/{stream}/{sid}/{seq}.ts"
PART_ROUTE: Final = "/{app}/{stream}/{sid}/{seq}.{part}.ts"
"""Their names in the request metrics (aiohttp's canonical form of the routes)."""

def _block(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


PLAYLIST_BLOCK: Final = _block(
    {"Content-Type": M3U8, "Cache-Control": PLAYLIST_CACHE, "Vary": "Accept-Encoding",
     **CORS_HEADERS}
)
PLAYLIST_GZIP_BLOCK: Final = _block(
    {
        "Content-Type": M3U8,
        "Cache-Control": PLAYLIST_CACHE,
        "Content-Encoding": "gzip",
        "Vary": "Accept-Encoding",
        **CORS_HEADERS,
    }
)
SEGMENT_BLOCK: Final = _block(SEGMENT_HEADERS)
ENTRY_BLOCK: Final = _block({"Content-Type": M3U8, "Cache-Control": ENTRY_CACHE, **CORS_HEADERS})


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


def _error_reply(exc: HttpError) -> tuple[int, bytes, bytes]:
    """What aiohttp's error handling (`http.handle_errors`) sends for `exc`."""
    body = json.dumps({"error": exc.message}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", **exc.headers}
    for name, value in CORS_HEADERS.items():
        headers.setdefault(name, value)
    return exc.status, _block(headers), body


class FastPath:
    """The hot path for one slave: its HLS context, its metrics, its open connections."""

    def __init__(
        self,
        ctx: HlsContext,
        metrics: HttpMetrics | None = None,
        keepalive_timeout: float = 15.0,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[FastProtocol] = set()
        self.handed_off = 0
        """Connections given to aiohttp (a statistic for tests and benchmarks)."""
        self._date_second = -1
        self._date_line = b""
        self._sweeper: asyncio.Task[None] | None = None
        self._status_lines = {status: _status_line(status) for status in (200, 400, 403, 404)}
        self._series: dict[
            tuple[str, int], tuple[tuple[str, str, str], LatencyHistogram | None]
        ] = {}
        """(route, status) -> (request counter key, latency histogram): few, built once."""

    def wrap(self, fallback: ProtocolFactory) -> ProtocolFactory:
        """A protocol factory for a listening socket: the hot path in front of `fallback`
        (aiohttp's `web.Server`)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

        def factory() -> asyncio.BaseProtocol:
            return FastProtocol(self, fallback)

        return factory

    def close(self) -> None:
        """Close every connection still on the hot path, and stop the idle sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()

    async def _sweep(self) -> None:
        """Close connections idle for `keepalive_timeout` (or that never finish a request),
        as aiohttp does with its own."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.5, self.keepalive_timeout / 3))
            horizon = loop.time() - self.keepalive_timeout
            for conn in list(self.connections):
                if conn.idle_since is not None and conn.idle_since < horizon:
                    conn.close()

    def date_line(self) -> bytes:
        """`Date` and `Server` as aiohttp sends them, formatted once a second."""
        now = time.time()
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date_line = (
                f"Server: {aiohttp_http.SERVER_SOFTWARE}\r\n"
                f"Date: {formatdate(second, usegmt=True)}\r\n"
            ).encode()
        return self._date_line

    def status_line(self, status: int) -> bytes:
        line = self._status_lines.get(status)
        if line is None:
            line = self._status_lines[status] = _status_line(status)
        return line

    def record(self, route: str, status: int, seconds: float) -> None:
        """Count and time a request as the aiohttp metrics middleware does."""
        metrics = self.metrics
        if metrics is None:
            return
        found = self._series.get((route, status))
        if found is None:
            found = self._series[route, status] = (
                (route, "GET", str(status)), metrics.histogram_for(route)
            )
        key, histogram = found
        metrics.requests[key] = metrics.requests.get(key, 0) + 1
        if histogram is not None:
            histogram.observe(seconds)


class FastProtocol(asyncio.Protocol):
    """One client connection while it stays on the hot path.

    Requests are answered in order, one at a time: while one waits (a blocking playlist
    reload, a hinted part), later pipelined requests wait in `_buffer`, and while the transport
    is over its high-water mark nothing more is read from `_buffer`. Either way, once
    `_buffer` holds more than `MAX_PENDING`, the socket is not read until it drains.
    """

    def __init__(self, fast: FastPath, fallback: ProtocolFactory) -> None:
        self.fast = fast
        self.fallback = fallback
        self.transport: asyncio.Transport | None = None
        self.idle_since: float | None = None
        """Loop time since which the connection has had nothing to answer; None while busy."""
        self._loop = asyncio.get_running_loop()
        self._fileno = -1
        self._buffer = bytearray()
        self._busy = False
        self._paused = False
        self._reading_paused = False
        self._closing = False
        self._closing_after = False
        """The client asked to close the connection after this reply (Connection: close)."""
        self._task: asyncio.Task[None] | None = None
        self._out: socket.socket | None = None
        """A duplicate of the connection's socket, to send a head with MSG_MORE; made with
        the first segment or part sent by file."""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        # A TLS transport still has the TCP socket underneath: what this path writes there
        # (send, sendfile) would bypass the encryption, so TLS connections are aiohttp's.
        if (
            sock is None
            or not type(transport).__module__.startswith("uvloop")
            or is_tls(transport)
        ):
            self._hand_off()
            return
        self._fileno = sock.fileno()
        tcp_keepalive(self.transport)  # as aiohttp does: dead peers are found by the kernel
        self.fast.connections.add(self)
        self.idle_since = self._loop.time()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fast.connections.discard(self)
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._close_out()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._serve()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # Requests

    def _serve(self) -> None:
        """Answer the complete requests in the buffer, in order, while nothing holds us; stop
        reading from a client whose unanswered requests pass `MAX_PENDING` meanwhile."""
        buffer = self._buffer
        while buffer and not (self._busy or self._paused or self._closing):
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD or b"\n\n" in buffer:  # too long, or bare LFs
                    self._hand_off()
                return
            request = parse_head(bytes(buffer[:end])) if end <= MAX_HEAD else None
            if request is None:
                self._hand_off()
                return
            del buffer[: end + 4]
            self._request(request)
        if self._busy or self._paused:
            if len(buffer) > MAX_PENDING and not self._reading_paused:
                self._reading_paused = True
                self._pause_reading()
            return
        if self._reading_paused:
            self._reading_paused = False
            self._resume_reading()
        self.idle_since = self._loop.time()

    def _pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _request(self, request: Request) -> None:
        """Answer one request of ours."""
        started = time.perf_counter()
        self._closing_after = self._closing_after or request.close
        kind = request.kind
        if kind is Kind.ENTRY:
            self._entry(request, started)
        elif kind is Kind.PLAYLIST:
            self._playlist(request.path, request.sid, request.query, request.gzip, started)
        elif kind is Kind.SEGMENT:
            self._segment(request.path, request.sid, request.sequence, started)
        else:
            self._part(request.path, request.sid, request.sequence, request.part, started)

    def _entry(self, request: Request, started: float) -> None:
        try:
            body = entry_body(
                self.fast.ctx, request.path, extract_token(request.query, request.authorization)
            )
        except HttpError as exc:
            self._send_error(exc, ENTRY_ROUTE, started)
            return
        self._send(200, ENTRY_BLOCK, body, None)
        self.fast.record(ENTRY_ROUTE, 200, time.perf_counter() - started)

    def _playlist(
        self, path: str, sid: str, query: dict[str, str], gzip: bool, started: float
    ) -> None:
        ctx = self.fast.ctx
        try:
            request = PlaylistRequest(ctx, path, sid, query)
            if not request.ready():
                self._wait(lambda: self._playlist_after_wait(request, gzip, started))
                return
        except HttpError as exc:
            self._send_error(exc, PLAYLIST_ROUTE, started)
            return
        self._send_playlist(request, gzip, started)

    async def _playlist_after_wait(
        self, request: PlaylistRequest, gzip: bool, started: float
    ) -> None:
        try:
            await request.wait(self.fast.ctx)
        except HttpError as exc:
            self._send_error(exc, PLAYLIST_ROUTE, started)
            return
        self._send_playlist(request, gzip, started)

    def _send_playlist(self, request: PlaylistRequest, gzip: bool, started: float) -> None:
        body, gzipped = request.body(gzip)
        self._send(200, PLAYLIST_GZIP_BLOCK if gzipped else PLAYLIST_BLOCK, body, None)
        self.fast.record(PLAYLIST_ROUTE, 200, time.perf_counter() - started)

    def _segment(self, path: str, sid: str, sequence: int, started: float) -> None:
        try:
            data, fd = find_segment(self.fast.ctx, path, sid, sequence)
        except HttpError as exc:
            self._send_error(exc, SEGMENT_ROUTE, started)
            return
        self._send(200, SEGMENT_BLOCK, data, fd)
        self.fast.record(SEGMENT_ROUTE, 200, time.perf_counter() - started)

    def _part(self, path: str, sid: str, sequence: int, index: int, started: float) -> None:
        try:
            request = PartRequest(self.fast.ctx, path, sid, sequence, index)
        except HttpError as exc:
            self._send_error(exc, PART_ROUTE, started)
            return
        if request.ready():
            self._send_part(request, started)
        else:
            self._wait(lambda: self._part_after_wait(request, started))

    async def _part_after_wait(self, request: PartRequest, started: float) -> None:
        await request.wait()
        self._send_part(request, started)

    def _send_part(self, request: PartRequest, started: float) -> None:
        try:
            data, fd = request.body()
        except HttpError as exc:
            self._send_error(exc, PART_ROUTE, started)
            return
        self._send(200, SEGMENT_BLOCK, data, fd)
        self.fast.record(PART_ROUTE, 200, time.perf_counter() - started)

    def _send_error(self, exc: HttpError, route: str, started: float) -> None:
        status, block, body = _error_reply(exc)
        self._send(status, block, body, None)
        self.fast.record(route, status, time.perf_counter() - started)

    # Waiting

    def _wait(self, reply: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Answer the current request when `reply()` is done; hold the next ones until then."""
        self._busy = True
        self.idle_since = None
        self._task = self._loop.create_task(self._waited(reply))

    async def _waited(self, reply: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await reply()
        except Exception:
            log.exception("unhandled error answering a held request")
            self.close()
            return
        finally:
            self._task = None
        self._busy = False
        self._serve()

    # Writing

    def _send(self, status: int, block: bytes, body: bytes, fd: int | None) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        close = self._closing_after
        head = b"".join(
            (
                self.fast.status_line(status),
                self.fast.date_line(),
                block,
                b"Content-Length: %d\r\n" % len(body),
                b"Connection: close\r\n\r\n" if close else b"\r\n",
            )
        )
        if fd is None or len(body) <= SHARED_CHUNK:
            transport.write(head + body)
        else:
            self._send_file(transport, head, body, fd)
        if close:
            self.close()

    def _send_file(self, transport: asyncio.Transport, head: bytes, body: bytes, fd: int) -> None:
        """The head by one send held for the body (MSG_MORE) and the body by sendfile, straight
        to the socket as far as it takes them at once (only when nothing is queued in the
        transport, so the order on the wire holds); the rest through the transport, from the
        shared bytes (uvloop keeps a reference, not a copy)."""
        sent = 0
        if not transport.get_write_buffer_size():
            out = self._out or self._duplicate()
            try:
                if out is not None:
                    written = out.send(head, socket.MSG_MORE)
                else:
                    written = os.write(self._fileno, head)
                if written == len(head):
                    sent = os.sendfile(self._fileno, fd, 0, len(body))
                head = head[written:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                transport.abort()  # the peer is gone; connection_lost follows
                return
        if head:
            transport.write(head)
        if sent < len(body):
            transport.write(memoryview(body)[sent:])

    def _duplicate(self) -> socket.socket | None:
        """The transport owns the socket's descriptor; a duplicate can send with flags."""
        try:
            self._out = socket.socket(fileno=os.dup(self._fileno))
        except OSError as exc:  # out of descriptors: the head goes by a plain write
            log.warning("could not duplicate a viewer's socket: %s", exc)
        return self._out

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    # Handing over

    def _hand_off(self) -> None:
        """Give the connection, and what it sent that was not answered, to aiohttp."""
        transport = self.transport
        self.fast.connections.discard(self)
        if transport is None or transport.is_closing():
            return
        self.fast.handed_off += 1
        self._close_out()
        if self._reading_paused:  # aiohttp applies its own bound from here on
            self._reading_paused = False
            transport.resume_reading()
        protocol = self.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            protocol.pause_writing()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            cast(asyncio.Protocol, protocol).data_received(data)
