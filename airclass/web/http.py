"""Shared HTTP edges: JSON errors, CORS, bounded JSON bodies.

Every error a client sees is `{"error": "..."}` with a 4xx/5xx status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from airclass.cluster.signing import REPLY_SIGNATURE_HEADER, sign_reply
from airclass.tls import is_tls

log = logging.getLogger(__name__)

MAX_JSON_BODY = 16 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Retry-After, X-AIRClass-Node",
}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


class HttpError(Exception):
    """An error with a status and a message safe to show to the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


async def handle_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Call `handler`, turning every failure into a JSON error with CORS headers."""
    try:
        response = await handler(request)
    except HttpError as exc:
        response = json_error(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if isinstance(exc, web.HTTPMethodNotAllowed) and exc.allowed_methods <= {"OPTIONS"}:
            # Only the catch-all CORS preflight route matched: the path does not exist.
            exc = web.HTTPNotFound()
        message = exc.reason or "error"
        # Keep headers such as Allow or Retry-After; the body and its type become ours.
        headers = {
            key: value
            for key, value in exc.headers.items()
            if key.lower() not in ("content-type", "content-length")
        }
        response = json_error(exc.status, message.lower(), headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_error(500, "internal error")
    if not response.prepared:
        for key, value in CORS_HEADERS.items():
            response.headers.setdefault(key, value)
    return response


error_middleware = web.middleware(handle_errors)
"""`handle_errors` as a middleware, for apps without metrics (the metrics middleware calls
`handle_errors` itself)."""


def signed_reply(response: web.Response, cluster_key: str, nonce: str) -> web.Response:
    """`response`, signed for the cluster request with `nonce` (`signing.sign_reply`): a node
    acting on a reply can tell it came from the node it asked, for this very request."""
    body = b"" if response.body is None else response.body
    assert isinstance(body, bytes), "signed replies are built from bytes"
    response.headers[REPLY_SIGNATURE_HEADER] = sign_reply(
        cluster_key, nonce, response.status, response.headers, body
    )
    return response


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: the student page on the master calls slaves and APIs cross-origin."""
    return web.Response(status=204, headers=PREFLIGHT_HEADERS)


async def read_body(request: web.Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The whole request body, at most `limit` bytes, or HttpError(413).

    `content.read(n)` returns what has arrived so far, which for a body split across TCP
    segments is only its start: read to the end, bounded.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise HttpError(413, f"request body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
    return bytes(body)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object from `body`, or HttpError(400)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HttpError(400, "body is not valid JSON") from None
    except RecursionError:
        # 16 KiB of '[' nests deeper than the decoder's stack: the client's fault, not ours.
        raise HttpError(400, "body is nested too deeply") from None
    if not isinstance(data, dict):
        raise HttpError(400, "body must be a JSON object")
    return data


async def read_json(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """A JSON object body of at most `limit` bytes, or an HttpError (400/413)."""
    return parse_json_object(await read_body(request, limit))


SHARED_CHUNK = 64 * 1024
"""Bodies up to this size go out as one ordinary response. Larger ones are sent by
`send_shared`; on a loop whose transports copy what the socket does not take at once, in
slices of this size, between which aiohttp drains, so a slow reader holds at most about three
slices (two written, plus the transport's low-water mark) of its own."""


class SharedFiles:
    """Memory-file (memfd) copies of the bodies every viewer shares, at most `max_bytes` of
    them, least recently used evicted first.

    `os.sendfile` from such a file hands the socket the file's pages instead of copying the
    bytes into it: one system call and no user-space copy per viewer, where a write costs a copy
    into the kernel (and, through aiohttp on Python 3.11, a second one joining headers and
    body). The file is written once, on the first request for a body, keyed by what the body is
    (stream, sequence, part) and checked by identity, so a re-made body gets a new file.
    """

    def __init__(
        self,
        max_bytes: int = 64 * 1024 * 1024,
        still_served: Callable[[Hashable, bytes], bool] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.still_served = still_served
        """Whether a body is still served under its key: files of bodies that are not (a
        segment gone from the ring) are closed whenever a new file is made, so a live stream
        holds files for what it serves, not for `max_bytes` of its past."""
        self._files: OrderedDict[Hashable, tuple[bytes, int]] = OrderedDict()
        self.enabled = hasattr(os, "memfd_create") and hasattr(os, "sendfile")

    def __len__(self) -> int:
        return len(self._files)

    def fd(self, key: Hashable, data: bytes) -> int | None:
        """A file descriptor holding exactly `data`, or None (a small body, no memfd here, or
        out of file descriptors)."""
        if not self.enabled or len(data) <= SHARED_CHUNK or len(data) > self.max_bytes:
            return None  # small bodies go out with their headers in one write anyway
        entry = self._files.get(key)
        if entry is not None:
            if entry[0] is data:
                self._files.move_to_end(key)
                return entry[1]
            self._drop(key)
        self._retire()
        try:
            fd = os.memfd_create("airclass-body", os.MFD_CLOEXEC)
        except OSError as exc:
            log.warning("no memory file for a shared body (%s): sending it by copy", exc)
            return None
        try:
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += os.pwrite(fd, view[written:], written)
        except OSError as exc:
            os.close(fd)
            log.warning("could not fill a memory file (%s): sending by copy", exc)
            return None
        self._files[key] = (data, fd)
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._files)))
        return fd

    def _retire(self) -> None:
        still_served = self.still_served
        if still_served is None:
            return
        for key, (data, _fd) in list(self._files.items()):
            if not still_served(key, data):
                self._drop(key)

    def _drop(self, key: Hashable) -> None:
        data, fd = self._files.pop(key)
        self.bytes -= len(data)
        os.close(fd)

    def close(self) -> None:
        while self._files:
            self._drop(next(iter(self._files)))


def _transport_holds_references(transport: asyncio.BaseTransport) -> bool:
    """uvloop's transports keep a reference to what `write` is given until the socket took it;
    asyncio's selector transport copies the unsent rest into its own buffer (Python < 3.12)."""
    return type(transport).__module__.startswith("uvloop")


def _sendfile_now(transport: asyncio.Transport, fd: int, count: int) -> int:
    """Send what the socket takes at once of `fd`'s first `count` bytes.

    Only when nothing is queued in the transport (the headers went out), else the order on the
    wire would break; the caller writes whatever is left through the transport as usual. 0
    when the socket is full, the transport has no socket of its own, or it speaks TLS (the
    file's bytes would reach the viewer unencrypted, in the middle of the TLS stream).
    """
    sock = transport.get_extra_info("socket")
    if (
        sock is None
        or is_tls(transport)
        or transport.is_closing()
        or transport.get_write_buffer_size()
    ):
        return 0
    try:
        return os.sendfile(sock.fileno(), fd, 0, count)
    except (BlockingIOError, InterruptedError):
        return 0


async def send_shared(
    request: web.Request, data: bytes, headers: Mapping[str, str], fd: int | None = None
) -> web.StreamResponse:
    """Send bytes that every viewer shares (a segment) without a per-client copy of them.

    With `fd`, a memory file holding `data` (`SharedFiles`), the body goes out by sendfile as
    far as the socket takes it at once; the rest, or all of it without `fd`, is written from
    the shared bytes: whole on a loop whose transport keeps a reference to it, else in
    `SHARED_CHUNK` slices, because one `write` of the whole body makes asyncio (Python < 3.12)
    copy whatever the socket does not take at once into the connection's own buffer, and each
    viewer reading at 1 KB/s would keep its own copy of a segment.
    """
    if len(data) <= SHARED_CHUNK or request.method == "HEAD":
        return web.Response(body=data, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    try:
        writer = await response.prepare(request)
        if isinstance(writer, StreamWriter):
            # Headers on their own: aiohttp would join them with the first body write, a copy
            # of the body per viewer.
            writer.send_headers()
        transport = request.transport
        sent = 0
        if fd is not None and transport is not None:
            if transport.get_write_buffer_size():
                # uvloop queues writes until the end of the loop's turn: let the headers go.
                await asyncio.sleep(0)
            sent = _sendfile_now(transport, fd, len(data))
        view = memoryview(data)[sent:]
        if transport is not None and _transport_holds_references(transport):
            if view:
                await response.write(view)
        else:
            for start in range(0, len(view), SHARED_CHUNK):
                await response.write(view[start : start + SHARED_CHUNK])
        await response.write_eof()
    except ConnectionError:
        # The viewer went away mid-segment (closed the tab, switched node): not our error.
        log.debug("client %s left during %s", client_address(request), request.path)
    return response


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"
