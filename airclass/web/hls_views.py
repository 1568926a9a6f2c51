"""HLS endpoints of a slave.

    GET /<app>/<stream>/index.m3u8?jwt=…      entry: JWT checked once, viewer gets a session
    GET /<app>/<stream>/<sid>/media.m3u8      media playlist (identical bytes for everyone)
    GET /<app>/<stream>/<sid>/<seq>.ts        segment (shared bytes, no copy per viewer)
    GET /<app>/<stream>/<sid>/<seq>.<n>.ts    LL-HLS partial segment n of segment seq

The entry reply is a multivariant playlist whose variant URI carries the viewer's session id
in the path, so relative segment URIs resolve to session-bearing URLs without a query string
and the media playlist is the same bytes for every viewer (docs/design.md §2).

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
import math
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Final, cast

from aiohttp import web

from airclass.auth.authorize import extract_token, verify_and_authorize
from airclass.auth.errors import AuthError
from airclass.auth.sessions import SessionSigner, SessionTable, token_key
from airclass.auth.tokens import TokenIssuer
from airclass.hls.packager import HlsPackager
from airclass.hls.playlist import Variant, block_decision, render_multivariant_playlist
from airclass.hls.ring import Part, Segment
from airclass.logtext import printable
from airclass.media.names import NAME
from airclass.streams import LiveStream, StreamTable
from airclass.web.http import CORS_HEADERS, HttpError, SharedFiles, send_shared
from airclass.web.ratelimit import TokenBucket

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
        self.files = SharedFiles(still_served=self._still_served)
        """Memory files of the segments and parts being served, for sendfile."""
        self.clock = clock
        """Wall clock for token expiry and session windows; tests replace it to move time."""
        self.max_block: float | None = None
        """Seconds a blocking playlist reload or a hinted part request may wait; None: three
        target durations (what RFC 8216bis tells clients to allow for)."""
        self.entry_limiter = TokenBucket()
        """Entry requests per token (see `entry_body`)."""

    def _still_served(self, key: Hashable, data: bytes) -> bool:
        """Whether `data` is still what a request for `key`, (path, sequence, part index or
        None), gets."""
        path, sequence, index = cast(tuple[str, int, int | None], key)
        stream = self.streams.get(path)
        if stream is None:
            return False
        if index is None:
            found: Segment | Part | None = stream.packager.segment(sequence)
        else:
            found = stream.packager.part(sequence, index)
        return found is not None and found.data is data

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
    token = extract_token(request.query, request.headers.get("Authorization"))
    body = entry_body(ctx, _path(request), token)
    return web.Response(body=body, content_type=M3U8, headers={"Cache-Control": ENTRY_CACHE})


def entry_body(ctx: HlsContext, path: str, token: str | None) -> bytes:
    """The multivariant playlist for a viewer of `path` presenting `token`: this node's
    variant and each backup node's, under new session ids (else an HttpError).

    Each reply mints sessions, so a token's entries are rate-limited (`ctx.entry_limiter`)
    and refused while the token holds as many active sessions here as `SessionTable.per_token`
    allows. Only an entry that would mint is charged: a player polling for a lecture that has
    not started (404/503) is not, as that costs no more than a refused forged token."""
    now = ctx.clock()
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
    key = token_key(claims.jti, claims.user_id)
    wait = ctx.entry_limiter.take(key, now)
    if wait > 0:
        log.info("node %s: entries of %s's token to %s rate-limited", ctx.node_id,
                 printable(claims.user_id), path)
        raise entry_rate_error(wait)
    if sessions.token_full(key, now):
        raise token_cap_error(sessions)
    # The session counts as a viewer from its first media request, not from here: a client
    # that only polls the entry URL is not watching.
    sid = ctx.signer.mint(path, claims.exp, claims.user_id, token=key)
    packager = stream.packager
    variant = Variant(
        uri=f"{sid}/media.m3u8",
        bandwidth=packager.bandwidth or FALLBACK_BANDWIDTH,
        codecs=packager.codecs,
        resolution=packager.resolution,
    )
    variants = [variant]
    for node_id, hls_base in ctx.backups:
        # The backup's sid carries the token too, but counts only on the backup node, and
        # only once a player (on failover, or ffmpeg and VLC at once) uses it there.
        backup_sid = ctx.signer.mint(
            path, claims.exp + BACKUP_SESSION_GRACE, claims.user_id, node_id=node_id, token=key
        )
        variants.append(variant._replace(uri=f"{hls_base}/{path}/{backup_sid}/media.m3u8"))
    return render_multivariant_playlist(variants).encode()


def entry_rate_error(wait: float) -> HttpError:
    """429 for a token whose entry requests came faster than its allowance."""
    seconds = max(1, math.ceil(wait))
    return HttpError(
        429,
        f"too many requests with this link; try again in {seconds} s",
        {"Retry-After": str(seconds)},
    )


def token_cap_error(sessions: SessionTable) -> HttpError:
    """429 for a token that already holds its share of sessions: the student has the lecture
    open in that many players. A closed player stops counting one viewer window after its
    last request, hence the Retry-After."""
    seconds = max(1, math.ceil(sessions.window))
    return HttpError(
        429,
        f"this link is already playing in the most players allowed ({sessions.per_token}); "
        f"close one and try again in {seconds} s",
        {"Retry-After": str(seconds)},
    )


def check_session(ctx: HlsContext, sid: str, path: str, now: float) -> None:
    """Pass if `sid` is genuine for `path` and admitted (else an HttpError)."""
    if ctx.sessions.touch_active(sid, path, now):
        return
    info = ctx.signer.check(sid, path)
    if info is None:
        raise HttpError(403, "invalid session for this node and stream")
    if not ctx.sessions.admit(info, now):
        # admit() refuses a sid that expired while inactive, or a new one over a limit.
        if info.expires_at <= now:
            raise HttpError(403, "session expired; reload the player", {"Retry-After": "5"})
        if ctx.sessions.token_full(info.token, now):
            raise token_cap_error(ctx.sessions)
        raise HttpError(503, "this node is full; ask the master for another", {"Retry-After": "5"})


def _directive(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise HttpError(400, f"{name} must be a non-negative integer")
    return int(raw)


class PlaylistRequest:
    """A checked media playlist request: what to send, and whether it must wait first."""

    __slots__ = ("delta", "msn", "part", "stream")

    def __init__(self, ctx: HlsContext, path: str, sid: str, query: Mapping[str, str]) -> None:
        now = ctx.clock()
        stream = ctx.streams.get(path)
        check_session(ctx, sid, path, now)
        if stream is None:
            raise HttpError(404, "no such stream")
        self.stream = stream
        self.msn: int | None = None
        self.part: int | None = None
        self.delta = False
        if stream.packager.low_latency:
            self.msn = _directive(query, "_HLS_msn")
            self.part = _directive(query, "_HLS_part")
            if self.part is not None and self.msn is None:
                raise HttpError(400, "_HLS_part needs _HLS_msn")
            self.delta = query.get("_HLS_skip") in ("YES", "v2")

    def ready(self) -> bool:
        """True if the reply can go now (else `wait` first); HttpError(400) if it never can."""
        if self.msn is None:
            return True
        packager = self.stream.packager
        decision = block_decision(
            self.msn,
            self.part,
            next_sequence=packager.next_sequence,
            open_parts=packager.open_parts,
            ended=packager.state == "ended",
        )
        if decision == "bad":
            raise HttpError(
                400,
                f"_HLS_msn={self.msn} _HLS_part={self.part} is too far ahead of the live edge "
                f"({packager.next_sequence}.{packager.open_parts})",
            )
        return decision == "ready"

    async def wait(self, ctx: HlsContext) -> None:
        """Wait until `ready`, the stream ends, or the bound passes (a blocking reload)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.block_bound(self.stream.packager)
        path = self.stream.path
        while not self.ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self.stream.wait_change(remaining)
            current = ctx.streams.get(path)
            if current is None:
                raise HttpError(404, "no such stream")
            self.stream = current

    def body(self, gzip: bool) -> tuple[bytes, bool]:
        """The reply's body and whether it is gzipped: when the client accepts gzip and the
        packager made one (not for short playlists)."""
        packager = self.stream.packager
        if gzip:
            packed = packager.delta_gzip if self.delta else packager.playlist_gzip
            if packed:
                return packed, True
        return packager.delta_bytes if self.delta else packager.playlist_bytes, False


async def media_playlist(request: web.Request) -> web.Response:
    ctx = request.app[HLS_CONTEXT]
    reply = PlaylistRequest(ctx, _path(request), request.match_info["sid"], request.query)
    if not reply.ready():
        await reply.wait(ctx)
    body, gzipped = reply.body("gzip" in request.headers.get("Accept-Encoding", ""))
    headers = {"Cache-Control": PLAYLIST_CACHE}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    headers["Vary"] = "Accept-Encoding"
    return web.Response(body=body, content_type=M3U8, headers=headers)


def find_segment(ctx: HlsContext, path: str, sid: str, sequence: int) -> tuple[bytes, int | None]:
    """A checked segment request's body and its memory file (else an HttpError)."""
    check_session(ctx, sid, path, ctx.clock())
    stream = ctx.streams.get(path)
    seg = stream.packager.segment(sequence) if stream else None
    if seg is None:
        raise HttpError(404, "no such segment (too old or not yet made)")
    ctx.sessions.add_bytes(sid, len(seg.data))
    return seg.data, ctx.files.fd((path, sequence, None), seg.data)


async def segment(request: web.Request) -> web.StreamResponse:
    ctx = request.app[HLS_CONTEXT]
    data, fd = find_segment(
        ctx, _path(request), request.match_info["sid"], int(request.match_info["seq"])
    )
    return await send_shared(request, data, SEGMENT_HEADERS, fd)


class PartRequest:
    """A checked partial segment request; a request for the hinted next part (the preload
    hint names it before it exists) waits for it."""

    __slots__ = ("ctx", "found", "index", "path", "sequence", "sid", "stream")

    def __init__(self, ctx: HlsContext, path: str, sid: str, sequence: int, index: int) -> None:
        check_session(ctx, sid, path, ctx.clock())
        self.ctx, self.path, self.sid = ctx, path, sid
        self.sequence, self.index = sequence, index
        self.stream = ctx.streams.get(path)
        self.found = self.stream.packager.part(sequence, index) if self.stream else None

    def ready(self) -> bool:
        return self.found is not None or self.stream is None

    async def wait(self) -> None:
        stream = self.stream
        if stream is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ctx.block_bound(stream.packager)
        while self.found is None and stream is not None:
            packager = stream.packager
            hinted = self.sequence == packager.next_sequence and self.index == packager.open_parts
            remaining = deadline - loop.time()
            if not packager.low_latency or not hinted or remaining <= 0:
                break
            await stream.wait_change(remaining)
            stream = self.ctx.streams.get(self.path)
            self.found = stream.packager.part(self.sequence, self.index) if stream else None

    def body(self) -> tuple[bytes, int | None]:
        """The part and its memory file (else HttpError 404)."""
        if self.found is None:
            raise HttpError(404, "no such part (too old or not yet made)")
        data = self.found.data
        self.ctx.sessions.add_bytes(self.sid, len(data))
        return data, self.ctx.files.fd((self.path, self.sequence, self.index), data)


async def part(request: web.Request) -> web.StreamResponse:
    ctx = request.app[HLS_CONTEXT]
    info = request.match_info
    wanted = PartRequest(ctx, _path(request), info["sid"], int(info["seq"]), int(info["part"]))
    if not wanted.ready():
        await wanted.wait()
    data, fd = wanted.body()
    return await send_shared(request, data, SEGMENT_HEADERS, fd)


def add_routes(app: web.Application) -> None:
    base = f"/{{app:{NAME}}}/{{stream:{NAME}}}"
    sid = r"{sid:[A-Za-z0-9_-]{8,96}}"
    app.router.add_get(f"{base}/index.m3u8", entry_playlist)
    app.router.add_get(f"{base}/{sid}/media.m3u8", media_playlist)
    app.router.add_get(f"{base}/{sid}/{{seq:[0-9]{{1,12}}}}.ts", segment)
    app.router.add_get(f"{base}/{sid}/{{seq:[0-9]{{1,12}}}}.{{part:[0-9]{{1,4}}}}.ts", part)
