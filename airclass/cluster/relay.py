"""One stream, every node: the edges that follow a live stream from its origin.

A teacher publishes to one node, the origin. Every other node (an edge) copies the origin's
segments over HTTP and serves them with the origin's bytes, sequence numbers, durations,
program-date-times and discontinuities, so every node's media playlist is the same bytes at
the same media sequence (docs/design.md §2 "One stream, every node"). That is what lets a viewer
fail over between nodes without a reload.

Edge: `RelayManager.follow(path, origin)` runs one task per followed path. The task reads the
origin's state once (join: it copies every segment still in the origin's ring, so its
playlist matches at once), then long-polls for each next segment and appends it to the
path's packager. A segment is on the edge one HTTP round trip after the origin made it; no
polling interval is involved. Errors reconnect with exponential backoff (0.2 s to 5 s).
In LL-HLS mode the long poll also asks for the next part, so a part is on the edge one round
trip after the origin made it, and the edge's blocking playlist reloads and preload-hint part
requests wake when it arrives, exactly as on the origin. Origin and edges must agree on
--low-latency; the edge adopts the origin's PART-TARGET.

Who follows what comes from the master: its register and heartbeat replies carry
`{"streams": {path: {"origin", "origin_hls", "origin_api"}}, "peers": [...]}`; `apply`
follows every listed stream whose origin is another node and unfollows the rest. A node
never follows itself, and a node whose local publisher is live is the origin of that path.
When the teacher reconnects to another node, the edges switch to it: that node's packager
already holds the relayed ring, so its own next segment continues the numbering with a
discontinuity, and the edges carry on from the sequence they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from yarl import URL

from airclass.cluster.relay_wire import (
    DEFAULT_WAIT,
    H_ENDED,
    H_NEWEST,
    H_PART,
    MAX_WAIT,
    RELAY_PREFIX,
    RelayedPart,
    RelayError,
    parse_part,
    parse_segment,
)
from airclass.cluster.signing import NONCE_HEADER, SignatureError, sign, verify_reply
from airclass.cluster.wire import ClusterView, Peer, StreamOrigin, WireError, node_url
from airclass.hls.packager import HlsPackager
from airclass.hls.ring import RingError
from airclass.media.names import PATH_RE
from airclass.streams import LiveStream, StreamTable
from airclass.tls import client_context

log = logging.getLogger(__name__)

MAX_STATE_BYTES: Final = 64 * 1024
BACKOFF_MIN: Final = 0.2
BACKOFF_MAX: Final = 5.0
MAX_BACKUPS: Final = 2
_STATUS_RANK: Final = {"healthy": 0, "warning": 1, "critical": 2}


class Resync(RelayError):
    """The edge's ring does not continue the origin's: read the origin's state again."""


def choose_backups(
    peers: Sequence[Peer], self_id: str, limit: int = MAX_BACKUPS
) -> list[tuple[str, str]]:
    """(node_id, hls_url) of the peers a viewer's playlist lists as redundant variants:
    serving ones only, healthy before warning before critical, then the least loaded."""
    usable = [
        p for p in peers
        if p.node_id != self_id and p.status in _STATUS_RANK and _is_http(p.hls_url)
    ]
    usable.sort(key=lambda p: (_STATUS_RANK[p.status], p.load_percentage, p.node_id))
    return [(p.node_id, p.hls_url.rstrip("/")) for p in usable[: max(limit, 0)]]


def _is_http(value: object) -> bool:
    try:
        node_url(value)
    except WireError:
        return False
    return True


@dataclass(slots=True)
class FollowerStats:
    """What a follower has done, for /api/stats and the benchmark."""

    origin: str
    segments: int = 0
    bytes: int = 0
    errors: int = 0
    resyncs: int = 0
    parts: int = 0
    connected: bool = False
    last_error: str = ""
    lag: float = 0.0
    """Seconds from the end of the newest relayed segment (its program date time plus its
    duration, on the origin's ingest clock) to the moment this edge listed it."""


class _Follower:
    """One followed path: join the origin's ring, then long-poll each next segment."""

    def __init__(self, manager: RelayManager, path: str, origin: StreamOrigin) -> None:
        self.manager = manager
        self.path = path
        self.origin = origin
        self.stats = FollowerStats(origin.node_id)
        self.task: asyncio.Task[None] | None = None
        self._ended = False

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        resynced_at: int | None = None
        while True:
            stream = self.manager.streams.get(self.path)
            if stream is not None and stream.publishing:
                log.info("relay %s: publisher is here, this node is the origin", self.path)
                return
            try:
                after = await self._join()
                self.stats.connected = True
                backoff = BACKOFF_MIN
                while after is not None:
                    after = await self._poll(after)
                log.info("relay %s: publisher is here, this node is the origin", self.path)
                return
            except asyncio.CancelledError:
                raise
            except Resync as exc:
                self.stats.resyncs += 1
                log.info("relay %s from %s: %s; joining again", self.path, self.origin.node_id,
                         exc)
                # Join again at once, unless the last join led to nothing but this resync.
                if resynced_at != self.stats.segments:
                    resynced_at = self.stats.segments
                    continue
            except (aiohttp.ClientError, TimeoutError, RelayError, RingError) as exc:
                self.stats.errors += 1
                self.stats.connected = False
                self.stats.last_error = str(exc) or type(exc).__name__
                log.warning("relay %s from %s failed (%s); retrying in %.1f s", self.path,
                            self.origin.node_id, self.stats.last_error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _get(self, path_qs: str, timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        manager = self.manager
        headers = sign(manager.cluster_key, "GET", path_qs, b"", manager.clock())
        nonce = headers[NONCE_HEADER]
        session = manager.client()
        url = URL(self.origin.api_url.rstrip("/") + path_qs, encoded=True)
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout, connect=3.0)
        ) as resp:
            limit = manager.max_body
            if resp.content_length is not None and resp.content_length > limit:
                raise RelayError(f"reply of {resp.content_length} bytes is over {limit}")
            # StreamReader.read(n) returns what has arrived so far, not n bytes: read to EOF.
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise RelayError(f"reply over {limit} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            if resp.content_length is not None and size != resp.content_length:
                raise RelayError(f"reply cut short ({size} of {resp.content_length} bytes)")
            try:
                verify_reply(manager.cluster_key, nonce, resp.status, resp.headers, body)
            except SignatureError as exc:
                manager.bad_replies += 1
                raise RelayError(
                    f"HTTP {resp.status} from {self.origin.api_url} refused: {exc.reason}"
                ) from None
            return resp.status, resp.headers, body

    async def _join(self) -> int | None:
        """Read the origin's ring; return the sequence to poll after (None: a local
        publisher owns the path now)."""
        status, _, body = await self._get(f"{RELAY_PREFIX}/{self.path}/state", 10.0)
        if status != 200:
            raise RelayError(f"state: HTTP {status} {body[:200]!r}")
        try:
            state = json.loads(body)
            ring = [
                (int(s["sequence"]), float(s["duration"]), float(s["program_date_time"]),
                 bool(s["discontinuity"]), int(s["discontinuity_sequence"]), int(s["size"]))
                for s in state["segments"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise RelayError(f"state reply malformed: {exc}") from None
        stream = self._stream()
        if stream is None:
            return None
        packager = stream.packager
        # Tell the origin what our playlist says, so that it answers at once if it differs.
        self._ended = packager.state == "ended"
        local = packager.newest_sequence
        if not ring:
            return -1 if local is None else local
        first, newest = ring[0][0], ring[-1][0]
        if local is None or local < first - 1:
            return first - 1
        by_sequence = {entry[0]: entry for entry in ring}
        mine = packager.segment(local)
        if local == first - 1 or (
            local in by_sequence
            and mine is not None
            and by_sequence[local] == (
                mine.sequence, mine.duration, mine.program_date_time, mine.discontinuity,
                mine.discontinuity_sequence, len(mine.data),
            )
        ):
            return local
        if local <= newest:
            log.warning("relay %s: segment %d differs on %s; taking the origin's ring",
                        self.path, local, self.origin.node_id)
        else:
            log.warning("relay %s: %s restarted its numbering (%d after our %d); starting over",
                        self.path, self.origin.node_id, newest, local)
        packager.reset()
        self._ended = False
        return first - 1

    def _stream(self) -> LiveStream | None:
        """The path's stream, created if needed, or None once a local publisher owns it."""
        stream = self.manager.streams.sink(self.path)
        if stream.publishing:
            return None
        stream.stopped_at = None
        return stream

    async def _poll(self, after: int) -> int | None:
        manager = self.manager
        wait = manager.wait
        query = f"?after={after}&wait={wait:g}&ended={int(self._ended)}"
        local = self.manager.streams.get(self.path)
        if local is not None and local.packager.low_latency:
            packager = local.packager
            held = packager.open_parts if packager.next_sequence == after + 1 else 0
            query += f"&part={held}"
        status, headers, body = await self._get(f"{RELAY_PREFIX}/{self.path}{query}", wait + 10)
        stream = self._stream()
        if stream is None:
            return None
        packager = stream.packager
        if status == 204:
            self._ended = headers.get(H_ENDED) == "1"
            newest = headers.get(H_NEWEST, "")
            if self._ended and packager.state != "ended" and newest == str(after):
                packager.end()
            return after
        if status == 409:
            raise Resync("this edge is ahead of the origin")
        if status != 200:
            raise RelayError(f"HTTP {status} {body[:200]!r}")
        if H_PART in headers:
            return self._take_part(packager, after, parse_part(headers, body))
        relayed = parse_segment(headers, body)
        if relayed.part_target is not None:
            packager.part_target = relayed.part_target
        segment = relayed.segment
        if segment.sequence <= after:
            raise Resync(f"origin sent segment {segment.sequence} after {after}")
        packager.adopt_media_info(
            video_codec=relayed.video_codec,
            audio_codec=relayed.audio_codec,
            resolution=relayed.resolution,
        )
        try:
            packager.append_segment(
                segment, target_duration=relayed.target_duration, ended=relayed.ended
            )
        except RingError as exc:
            raise Resync(str(exc)) from None
        self._ended = relayed.ended
        self.stats.lag = max(0.0, time.time() - segment.program_date_time - segment.duration)
        self.stats.segments += 1
        self.stats.bytes += len(segment.data)
        manager.segments_relayed += 1
        return segment.sequence


    def _take_part(self, packager: HlsPackager, after: int, relayed: RelayedPart) -> int:
        """Serve the origin's newest part; the edge still holds `after` as its newest
        finished segment."""
        if relayed.sequence != after + 1:
            raise Resync(f"origin sent part {relayed.sequence}.{relayed.index} after {after}")
        try:
            packager.append_part(
                relayed.sequence,
                relayed.index,
                relayed.part,
                program_date_time=relayed.program_date_time,
                discontinuity=relayed.discontinuity,
                target_duration=relayed.target_duration,
                part_target=relayed.part_target,
            )
        except RingError as exc:
            packager.discard_open_parts()
            raise Resync(str(exc)) from None
        self._ended = relayed.ended
        self.stats.parts += 1
        self.stats.bytes += len(relayed.part.data)
        return after


class RelayManager:
    """Follows the streams whose origin is another node (one task per path)."""

    def __init__(
        self,
        node_id: str,
        streams: StreamTable,
        cluster_key: str,
        *,
        wait: float = DEFAULT_WAIT,
        clock: Callable[[], float] = time.time,
        on_backups: Callable[[list[tuple[str, str]]], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 0 < wait <= MAX_WAIT:
            raise ValueError(f"wait must be in (0, {MAX_WAIT}]")
        self.node_id = node_id
        self.streams = streams
        self.cluster_key = cluster_key
        self.wait = wait
        self.clock = clock
        self.on_backups = on_backups
        """Receives the failover peers (node_id, hls_url) chosen from each master reply."""
        self.max_body = streams.packager_config.max_segment_bytes + MAX_STATE_BYTES
        self.segments_relayed = 0
        self.bad_replies = 0
        """Origin replies refused for a missing or wrong signature."""
        self._followers: dict[str, _Follower] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context if ssl_context is not None else client_context()
        """Trust for https origins: the system's roots plus the node's --tls-ca."""
        self._closed = False

    @property
    def following(self) -> dict[str, StreamOrigin]:
        """Path → origin of every path this node relays now."""
        return {
            path: f.origin
            for path, f in self._followers.items()
            if f.task is not None and not f.task.done()
        }

    def client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, ssl=self._ssl),
                auto_decompress=False,
            )
        return self._session

    def follow(self, path: str, origin: StreamOrigin) -> bool:
        """Relay `path` from `origin` (switching if it followed another); False if this node
        is the origin (named so, or its local publisher is live)."""
        if self._closed:
            return False
        if not PATH_RE.fullmatch(path) or not _is_http(origin.api_url):
            log.warning("relay: ignoring %r from %r", path[:80], origin.api_url[:80])
            return False
        if not self.cluster_key:
            log.warning("relay %s: no cluster key, cannot follow %s", path, origin.node_id)
            return False
        stream = self.streams.get(path)
        if origin.node_id == self.node_id or (stream is not None and stream.publishing):
            self.unfollow(path)
            return False
        current = self._followers.get(path)
        if current is not None and current.task is not None and not current.task.done():
            if current.origin == origin:
                return True
            log.info("relay %s: origin moves from %s to %s", path, current.origin.node_id,
                     origin.node_id)
            current.task.cancel()
        else:
            log.info("relay %s: following %s", path, origin.node_id)
        follower = _Follower(self, path, origin)
        follower.task = asyncio.create_task(follower.run(), name=f"relay {path}")
        self._followers[path] = follower
        return True

    def unfollow(self, path: str) -> None:
        """Stop relaying `path`. A relayed stream nobody publishes any more is then closed by
        the stream table's timers (ENDLIST after the reconnect grace, removal after linger)."""
        follower = self._followers.pop(path, None)
        if follower is None:
            return
        if follower.task is not None:
            follower.task.cancel()
        stream = self.streams.get(path)
        if stream is not None and not stream.publishing and stream.stopped_at is None:
            stream.stopped_at = self.clock()
        log.info("relay %s: no longer following %s", path, follower.origin.node_id)

    def apply(self, view: ClusterView) -> None:
        """Follow what the master says is live elsewhere; drop what it no longer lists.
        The listener `MasterLink` calls after every register/heartbeat reply."""
        for path, origin in view.streams.items():
            self.follow(path.strip("/"), origin)
        for path in list(self._followers):
            if path not in view.streams:
                self.unfollow(path)
        if self.on_backups is not None:
            self.on_backups(choose_backups(view.peers, self.node_id))

    def stats(self) -> dict[str, Any]:
        return {
            "segments_relayed": self.segments_relayed,
            "bad_replies": self.bad_replies,
            "following": {
                path: {
                    "origin": f.stats.origin,
                    "connected": f.stats.connected,
                    "segments": f.stats.segments,
                    "bytes": f.stats.bytes,
                    "errors": f.stats.errors,
                    "resyncs": f.stats.resyncs,
                    "parts": f.stats.parts,
                    "lag": round(f.stats.lag, 3),
                }
                for path, f in sorted(self._followers.items())
            },
        }

    async def close(self) -> None:
        self._closed = True
        tasks = [f.task for f in self._followers.values() if f.task is not None]
        self._followers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["FollowerStats", "RelayManager", "Resync", "choose_backups"]
