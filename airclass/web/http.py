"""Shared HTTP edges: JSON errors, CORS, bounded JSON bodies.

Every error a client sees is `{"error": "..."}` with a 4xx/5xx status, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error with CORS headers."""
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
"""Slice size for `send_shared`: aiohttp drains after 64 KiB written, so a slow reader holds at
most about three slices (two written, plus the transport's low-water mark) of its own."""


async def send_shared(
    request: web.Request, data: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send bytes that every viewer shares (a segment) without a per-client copy of them.

    One `write` of the whole body makes asyncio (Python < 3.12) copy whatever the socket does
    not take at once into the connection's own buffer, so each viewer reading at 1 KB/s would
    keep its own copy of a segment. Writing memoryview slices, which aiohttp drains between,
    bounds what one client buffers to a few slices, whatever its speed and the segment size.
    """
    if len(data) <= SHARED_CHUNK or request.method == "HEAD":
        return web.Response(body=data, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    view = memoryview(data)
    try:
        await response.prepare(request)
        for start in range(0, len(data), SHARED_CHUNK):
            await response.write(view[start : start + SHARED_CHUNK])
        await response.write_eof()
    except ConnectionError:
        # The viewer went away mid-segment (closed the tab, switched node): not our error.
        log.debug("client %s left during %s", client_address(request), request.path)
    return response


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"
