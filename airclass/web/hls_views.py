"""HLS endpoints of a slave.

    GET /<app>/<stream>/index.m3u8?jwt=…      entry: JWT checked once, viewer gets a session
    GET /<app>/<stream>/<sid>/media.m3u8      media playlist (identical bytes for everyone)
    GET /<app>/<stream>/<sid>/<seq>.ts        segment (shared bytes, no copy per viewer)
    GET /<app>/<stream>/<sid>/<seq>.<n>.ts    LL-HLS partial segment n of segment seq

The entry reply is a multivariant playlist whose variant URI carries the viewer's session id
in the path, so relative segment URIs resolve to session-bearing URLs without a query string
and the media playlist is the same bytes for every viewer (DESIGN.md §2).

LL-HLS (RFC 8216bis §6.2.5): the media playlist takes the delivery directives `_HLS_msn`,
`_HLS_part` (blocking reload: the reply waits until that part or segment is in the playlist,
at most `HlsContext.max_block`, then sends what there is) and `_HLS_skip=YES` (the delta
update). A directive selects one of the packager's prepared bodies and never changes them, so
every viewer still gets the same bytes for the same state. A request for the hinted next part
(EXT-X-PRELOAD-HINT) waits for it the same way. Plain mode ignores the directives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from airclass.auth.authorize import extract_token, verify_and_authorize
from airclass.auth.errors import AuthError
from airclass.auth.sessions import SessionSigner, SessionTable
from airclass.auth.tokens import TokenIssuer
from airclass.hls.packager import HlsPackager
from airclass.hls.playlist import Variant, block_decision, render_multivariant_playlist
from airclass.web.http import CORS_HEADERS, HttpError, SharedFiles, send_shared
from airclass.web.streams import LiveStream, StreamTable

log = logging.getLogger(__name__)

M3U8: Final = "application/vnd.apple.mpegurl"
MPEGTS: Final = "video/mp2t"
SEGMENT_CACHE: Final = "public, max-age=3600, immutable"
PLAYLIST_CACHE: Final = "no-cache"
ENTRY_CACHE: Final = "private, no-store"
FALLBACK_BANDWIDTH: Final = 2_500_000
SEGMENT_HEADERS: Final = {
    "Content-Type": MPEGTS,
    "Cache-Control": SEGMENT_CACHE,
    **CORS_HEADERS,
}
BACKUP_SESSION_GRACE: Final = 6 * 3600.0
"""A backup node first sees a viewer's sid when the viewer fails over to it, possibly hours
into the lecture and after the viewer's JWT expired (students get 1 h). Backup sids therefore
expire at the token's expiry plus this bound on a lecture's length; the primary sid keeps the
token's expiry (an active session outlives it anyway, see SessionTable.admit)."""


class HlsContext:
    """What the HLS handlers need, held in the app under one key."""

    def __init__(
        self,
        node_id: str,
        streams: StreamTable,
        issuer: TokenIssuer,
        signer: SessionSigner,
        sessions: SessionTable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.streams = streams
        self.issuer = issuer
        self.signer = signer
        self.sessions = sessions
        self.backups: list[tuple[str, str]] = []
        """(node_id, hls_base) of peers that also serve our streams, for failover variants."""
        self.files = SharedFiles()
        """Memory files of the segments and parts being served, for sendfile."""
        self.clock = clock
        """Wall clock for token expiry and session windows; tests replace it to move time."""
        self.max_block: float | None = None
        """Seconds a blocking playlist reload or a hinted part request may wait; None: three
        target durations (what RFC 8216bis tells clients to allow for)."""

    def block_bound(self, packager: HlsPackager) -> float:
        if self.max_block is not None:
            return self.max_block
        return 3.0 * packager.target_duration


HLS_CONTEXT: web.AppKey[HlsContext] = web.AppKey("hls_context", HlsContext)


def _path(request: web.Request) -> str:
    return f"{request.match_info['app']}/{request.match_info['stream']}"


def _stream_or_error(ctx: HlsContext, path: str) -> LiveStream:
    stream = ctx.streams.get(path)
    if stream is None:
        raise HttpError(404, "no such stream (is the teacher streaming?)")
    if stream.packager.state == "waiting":
        raise HttpError(503, "stream is starting", {"Retry-After": "1"})
    return stream


async def entry_playlist(request: web.Request) -> web.Response:
    ctx = request.app[HLS_CONTEXT]
    path = _path(request)
    now = ctx.clock()
    token = extract_token(request.query, request.headers.get("Authorization"))
    try:
        claims = verify_and_authorize(ctx.issuer, token, "read", path, ctx.node_id, now)
    except AuthError as exc:
        raise HttpError(exc.status, exc.reason) from None
    stream = _stream_or_error(ctx, path)
    sessions = ctx.sessions
    if (
        sessions.hard_limit
        and sessions.capacity is not None
        and sessions.count(now) >= sessions.capacity
    ):
        raise HttpError(503, "this node is full; ask the master for another", {"Retry-After": "5"})
    # The session counts as a viewer from its first media request, not from here: a client
    # that only polls the entry URL is not watching.
    sid = ctx.signer.mint(path, claims.exp, claims.user_id)
    packager = stream.packager
    variant = Variant(
        uri=f"{sid}/media.m3u8",
        bandwidth=packager.bandwidth or FALLBACK_BANDWIDTH,
        codecs=packager.codecs,
        resolution=packager.resolution,
    )
    variants = [variant]
    for node_id, hls_base in ctx.backups:
        backup_sid = ctx.signer.mint(
            path, claims.exp + BACKUP_SESSION_GRACE, claims.user_id, node_id=node_id
        )
        variants.append(variant._replace(uri=f"{hls_base}/{path}/{backup_sid}/media.m3u8"))
    body = render_multivariant_playlist(variants).encode()
    return web.Response(body=body, content_type=M3U8, headers={"Cache-Control": ENTRY_CACHE})


def _session(request: web.Request, ctx: HlsContext, path: str, now: float) -> str:
    """The request's session id, once it is known genuine and admitted (else an HttpError)."""
    sid = request.match_info["sid"]
    if ctx.sessions.touch_active(sid, path, now):
        return sid
    info = ctx.signer.check(sid, path)
    if info is None:
        raise HttpError(403, "invalid session for this node and stream")
    if not ctx.sessions.admit(info, now):
        # admit() refuses a sid that expired while inactive, or a new one over a limit.
        if info.expires_at <= now:
            raise HttpError(403, "session expired; reload the player", {"Retry-After": "5"})
        raise HttpError(503, "this node is full; ask the master for another", {"Retry-After": "5"})
    return sid


def _directive(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise HttpError(400, f"{name} must be a non-negative integer")
    return int(raw)


async def _blocking_reload(
    ctx: HlsContext, path: str, stream: LiveStream, msn: int, part: int | None
) -> LiveStream:
    """Wait until the playlist holds segment `msn` (part `part`) or later, the stream ends,
    or the bound passes; 400 for a request further ahead than the spec allows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.block_bound(stream.packager)
    while True:
        packager = stream.packager
        decision = block_decision(
            msn,
            part,
            next_sequence=packager.next_sequence,
            open_parts=packager.open_parts,
            ended=packager.state == "ended",
        )
        if decision == "bad":
            raise HttpError(
                400,
                f"_HLS_msn={msn} _HLS_part={part} is too far ahead of the live edge "
                f"({packager.next_sequence}.{packager.open_parts})",
            )
        remaining = deadline - loop.time()
        if decision == "ready" or remaining <= 0:
            return stream
        await stream.wait_change(remaining)
        current = ctx.streams.get(path)
        if current is None:
            raise HttpError(404, "no such stream")
        stream = current


async def media_playlist(request: web.Request) -> web.Response:
    ctx = request.app[HLS_CONTEXT]
    path = _path(request)
    now = ctx.clock()
    stream = ctx.streams.get(path)
    _session(request, ctx, path, now)
    if stream is None:
        raise HttpError(404, "no such stream")
    delta = False
    if stream.packager.low_latency:
        query = request.query
        msn = _directive(query, "_HLS_msn")
        part = _directive(query, "_HLS_part")
        if part is not None and msn is None:
            raise HttpError(400, "_HLS_part needs _HLS_msn")
        if msn is not None:
            stream = await _blocking_reload(ctx, path, stream, msn, part)
        delta = query.get("_HLS_skip") in ("YES", "v2")
    packager = stream.packager
    headers = {"Cache-Control": PLAYLIST_CACHE}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        body = packager.delta_gzip if delta else packager.playlist_gzip
    else:
        body = packager.delta_bytes if delta else packager.playlist_bytes
    return web.Response(body=body, content_type=M3U8, headers=headers)


async def segment(request: web.Request) -> web.StreamResponse:
    ctx = request.app[HLS_CONTEXT]
    path = _path(request)
    now = ctx.clock()
    sid = _session(request, ctx, path, now)
    stream = ctx.streams.get(path)
    seg = stream.packager.segment(int(request.match_info["seq"])) if stream else None
    if seg is None:
        raise HttpError(404, "no such segment (too old or not yet made)")
    ctx.sessions.add_bytes(sid, len(seg.data))
    fd = ctx.files.fd((path, seg.sequence, None), seg.data)
    return await send_shared(request, seg.data, SEGMENT_HEADERS, fd)


async def part(request: web.Request) -> web.StreamResponse:
    ctx = request.app[HLS_CONTEXT]
    path = _path(request)
    now = ctx.clock()
    sid = _session(request, ctx, path, now)
    sequence, index = int(request.match_info["seq"]), int(request.match_info["part"])
    stream = ctx.streams.get(path)
    found = stream.packager.part(sequence, index) if stream else None
    if stream is not None and found is None:
        # The preload hint names the next part before it exists: hold the request for it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.block_bound(stream.packager)
        while found is None and stream is not None:
            packager = stream.packager
            hinted = sequence == packager.next_sequence and index == packager.open_parts
            remaining = deadline - loop.time()
            if not packager.low_latency or not hinted or remaining <= 0:
                break
            await stream.wait_change(remaining)
            stream = ctx.streams.get(path)
            found = stream.packager.part(sequence, index) if stream else None
    if found is None:
        raise HttpError(404, "no such part (too old or not yet made)")
    ctx.sessions.add_bytes(sid, len(found.data))
    fd = ctx.files.fd((path, sequence, index), found.data)
    return await send_shared(request, found.data, SEGMENT_HEADERS, fd)


def add_routes(app: web.Application) -> None:
    name = r"{%s:[A-Za-z0-9_-]{1,64}}"
    base = f"/{name % 'app'}/{name % 'stream'}"
    sid = r"{sid:[A-Za-z0-9_-]{8,96}}"
    app.router.add_get(f"{base}/index.m3u8", entry_playlist)
    app.router.add_get(f"{base}/{sid}/media.m3u8", media_playlist)
    app.router.add_get(f"{base}/{sid}/{{seq:[0-9]{{1,12}}}}.ts", segment)
    app.router.add_get(f"{base}/{sid}/{{seq:[0-9]{{1,12}}}}.{{part:[0-9]{{1,4}}}}.ts", part)
