"""One stream, every node: the origin's relay endpoint and the edges that follow it.

A teacher publishes to one node, the origin. Every other node (an edge) copies the origin's
segments over HTTP and serves them with the origin's bytes, sequence numbers, durations,
program-date-times and discontinuities, so every node's media playlist is the same bytes at
the same media sequence (DESIGN.md §2 "One stream, every node"). That is what lets a viewer
fail over between nodes without a reload.

Origin endpoints (on the slave's app, signed with CLUSTER_KEY by `airclass.cluster.signing`
over method, path with query and an empty body; viewer tokens and sessions never work here)::

    GET /cluster/relay/<app>/<stream>/state
        JSON: the ring (one entry per servable segment, oldest first) and the stream's state.
    GET /cluster/relay/<app>/<stream>?after=<seq>&wait=<s>&ended=<0|1>
        Long poll. 200 with the first segment whose sequence is above `after` (the ring's
        oldest if `after` is older than the ring) as soon as it exists; body = the segment's
        exact bytes, metadata in `X-AIRClass-*` headers. 204 when `wait` seconds pass without
        one, or at once if the origin's ENDLIST state differs from the caller's `ended`.
        409 if `after` is ahead of the origin's newest segment (its numbering restarted).
        With `&part=<n>` (an LL-HLS edge holding parts 0..n-1 of segment after+1), a part of
        the origin's open segment is an answer too: 200 with the part's bytes and
        `X-AIRClass-Part` (its index) as soon as part n exists. A finished segment's reply
        lists its parts (`X-AIRClass-Parts`: duration/size/independent each, in order; the
        body is their bytes joined), so an edge that joined late serves the same parts.

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
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web
from yarl import URL

from airclass.cluster.link import ClusterView, Peer, StreamOrigin
from airclass.cluster.signing import ReplayCache, SignatureError, sign, verify
from airclass.hls.packager import HlsPackager
from airclass.hls.ring import Part, RingError, Segment
from airclass.tls import client_context
from airclass.web.http import HttpError, json_response
from airclass.web.streams import LiveStream, StreamTable

log = logging.getLogger(__name__)

RELAY_PREFIX: Final = "/cluster/relay"
DEFAULT_WAIT: Final = 10.0
"""Seconds a long poll waits for the next segment before a 204."""
MAX_WAIT: Final = 20.0
MAX_STATE_BYTES: Final = 64 * 1024
BACKOFF_MIN: Final = 0.2
BACKOFF_MAX: Final = 5.0
MAX_BACKUPS: Final = 2

H_SEQUENCE: Final = "X-AIRClass-Sequence"
H_DURATION: Final = "X-AIRClass-Duration"
H_PDT: Final = "X-AIRClass-Program-Date-Time"
H_DISCONTINUITY: Final = "X-AIRClass-Discontinuity"
H_DISC_SEQUENCE: Final = "X-AIRClass-Discontinuity-Sequence"
H_TARGET: Final = "X-AIRClass-Target-Duration"
H_ENDED: Final = "X-AIRClass-Ended"
H_NEWEST: Final = "X-AIRClass-Newest"
H_VIDEO_CODEC: Final = "X-AIRClass-Video-Codec"
H_AUDIO_CODEC: Final = "X-AIRClass-Audio-Codec"
H_RESOLUTION: Final = "X-AIRClass-Resolution"
H_NODE: Final = "X-AIRClass-Node"
H_PART: Final = "X-AIRClass-Part"
H_PART_DURATION: Final = "X-AIRClass-Part-Duration"
H_PART_INDEPENDENT: Final = "X-AIRClass-Part-Independent"
H_PARTS: Final = "X-AIRClass-Parts"
H_PART_TARGET: Final = "X-AIRClass-Part-Target"
MAX_PARTS: Final = 200

_NAME: Final = r"[A-Za-z0-9_-]{1,64}"
_PATH_RE: Final = re.compile(rf"{_NAME}/{_NAME}")
_CODEC_RE: Final = re.compile(r"[A-Za-z0-9.]{1,32}")
_STATUS_RANK: Final = {"healthy": 0, "warning": 1, "critical": 2}


class RelayError(Exception):
    """The origin's reply cannot be used; the follower reconnects."""


class Resync(RelayError):
    """The edge's ring does not continue the origin's: read the origin's state again."""


# -- the master's directory (pure) -----------------------------------------------------------


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
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) < 512


# -- the wire format (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayedSegment:
    """One segment as the origin sent it, with the stream state that travels with it."""

    segment: Segment
    target_duration: int
    ended: bool
    video_codec: str | None
    audio_codec: str | None
    resolution: tuple[int, int] | None
    part_target: float | None = None


@dataclass(frozen=True, slots=True)
class RelayedPart:
    """One part of the origin's open segment, with that segment's metadata."""

    sequence: int
    index: int
    part: Part
    program_date_time: float
    discontinuity: bool
    target_duration: int
    part_target: float | None
    ended: bool


def part_headers(stream: LiveStream, index: int, part: Part, node_id: str) -> dict[str, str]:
    """Headers of a part reply: the part's own numbers and its open segment's."""
    packager = stream.packager
    open_segment = packager.open_segment()
    return {
        H_SEQUENCE: str(open_segment.sequence),
        H_PART: str(index),
        H_PART_DURATION: repr(part.duration),
        H_PART_INDEPENDENT: "1" if part.independent else "0",
        H_PDT: repr(open_segment.program_date_time),
        H_DISCONTINUITY: "1" if open_segment.discontinuity else "0",
        H_PART_TARGET: repr(packager.part_target),
        H_NODE: node_id,
        **state_headers(stream),
    }


def parse_part(headers: Mapping[str, str], body: bytes) -> RelayedPart:
    """The inverse of `part_headers`; raises RelayError on anything malformed."""
    duration = _header_float(headers, H_PART_DURATION)
    pdt = _header_float(headers, H_PDT)
    if duration < 0 or pdt < 0:
        raise RelayError("negative part duration or program date time")
    return RelayedPart(
        sequence=_header_int(headers, H_SEQUENCE),
        index=_header_int(headers, H_PART),
        part=Part(duration, body, headers.get(H_PART_INDEPENDENT) == "1"),
        program_date_time=pdt,
        discontinuity=headers.get(H_DISCONTINUITY) == "1",
        target_duration=max(1, _header_int(headers, H_TARGET)),
        part_target=_part_target(headers),
        ended=headers.get(H_ENDED) == "1",
    )


def _part_target(headers: Mapping[str, str]) -> float | None:
    if H_PART_TARGET not in headers:
        return None
    value = _header_float(headers, H_PART_TARGET)
    if not 0 < value <= 60:
        raise RelayError(f"bad {H_PART_TARGET}")
    return value


def _parts_header(parts: tuple[Part, ...]) -> str:
    return ",".join(
        f"{part.duration!r}/{len(part.data)}/{int(part.independent)}" for part in parts
    )


def _split_parts(value: str, body: bytes) -> tuple[Part, ...]:
    """A segment's parts from `X-AIRClass-Parts` and the segment bytes (their join)."""
    if not value:
        return ()
    entries = value.split(",")
    if len(entries) > MAX_PARTS:
        raise RelayError(f"more than {MAX_PARTS} parts")
    parts: list[Part] = []
    offset = 0
    for entry in entries:
        fields = entry.split("/")
        if len(fields) != 3 or not fields[1].isdigit() or fields[2] not in ("0", "1"):
            raise RelayError(f"bad {H_PARTS}")
        try:
            duration = float(fields[0])
        except ValueError:
            raise RelayError(f"bad {H_PARTS}") from None
        if not 0 <= duration < 1e6:
            raise RelayError(f"bad {H_PARTS}")
        size = int(fields[1])
        parts.append(Part(duration, body[offset : offset + size], fields[2] == "1"))
        offset += size
    if offset != len(body):
        raise RelayError(f"{H_PARTS} sizes add up to {offset}, not {len(body)}")
    return tuple(parts)


def segment_headers(segment: Segment, stream: LiveStream, node_id: str) -> dict[str, str]:
    """Headers carrying a segment's metadata; floats in repr() so they round-trip exactly."""
    packager = stream.packager
    headers = {
        H_SEQUENCE: str(segment.sequence),
        H_DURATION: repr(segment.duration),
        H_PDT: repr(segment.program_date_time),
        H_DISCONTINUITY: "1" if segment.discontinuity else "0",
        H_DISC_SEQUENCE: str(segment.discontinuity_sequence),
        H_NODE: node_id,
        **state_headers(stream),
    }
    if packager.video_codec:
        headers[H_VIDEO_CODEC] = packager.video_codec
    if packager.audio_codec:
        headers[H_AUDIO_CODEC] = packager.audio_codec
    if packager.resolution:
        headers[H_RESOLUTION] = f"{packager.resolution[0]}x{packager.resolution[1]}"
    if segment.parts:
        headers[H_PARTS] = _parts_header(segment.parts)
    if packager.low_latency:
        headers[H_PART_TARGET] = repr(packager.part_target)
    return headers


def state_headers(stream: LiveStream) -> dict[str, str]:
    packager = stream.packager
    newest = packager.newest_sequence
    return {
        H_TARGET: str(packager.target_duration),
        H_ENDED: "1" if packager.state == "ended" else "0",
        H_NEWEST: "" if newest is None else str(newest),
    }


def parse_segment(headers: Mapping[str, str], body: bytes) -> RelayedSegment:
    """The inverse of `segment_headers`; raises RelayError on anything malformed."""
    sequence = _header_int(headers, H_SEQUENCE)
    disc_sequence = _header_int(headers, H_DISC_SEQUENCE)
    duration = _header_float(headers, H_DURATION)
    pdt = _header_float(headers, H_PDT)
    if duration < 0 or pdt < 0:
        raise RelayError("negative duration or program date time")
    disc = headers.get(H_DISCONTINUITY)
    if disc not in ("0", "1"):
        raise RelayError(f"bad {H_DISCONTINUITY}")
    return RelayedSegment(
        segment=Segment(
            sequence=sequence,
            duration=duration,
            data=body,
            program_date_time=pdt,
            discontinuity=disc == "1",
            discontinuity_sequence=disc_sequence,
            parts=_split_parts(headers.get(H_PARTS, ""), body),
        ),
        target_duration=max(1, _header_int(headers, H_TARGET)),
        ended=headers.get(H_ENDED) == "1",
        video_codec=_codec(headers.get(H_VIDEO_CODEC)),
        audio_codec=_codec(headers.get(H_AUDIO_CODEC)),
        resolution=_resolution(headers.get(H_RESOLUTION)),
        part_target=_part_target(headers),
    )


def _header_int(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name, "")
    if not value.isdigit() or len(value) > 15:
        raise RelayError(f"bad {name}")
    return int(value)


def _header_float(headers: Mapping[str, str], name: str) -> float:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        raise RelayError(f"bad {name}") from None
    if not math.isfinite(value):
        raise RelayError(f"bad {name}")
    return value


def _codec(value: str | None) -> str | None:
    return value if value and _CODEC_RE.fullmatch(value) else None


def _resolution(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    width, _, height = value.partition("x")
    if not (width.isdigit() and height.isdigit() and len(width) <= 5 and len(height) <= 5):
        return None
    return int(width), int(height)


def segment_summary(segment: Segment) -> dict[str, Any]:
    """A ring entry in the state reply: enough to tell whether two nodes hold the same one."""
    return {
        "sequence": segment.sequence,
        "duration": segment.duration,
        "program_date_time": segment.program_date_time,
        "discontinuity": segment.discontinuity,
        "discontinuity_sequence": segment.discontinuity_sequence,
        "size": len(segment.data),
    }


# -- origin side -----------------------------------------------------------------------------


class RelayOrigin:
    """Serves this node's streams to edges; mounted on the slave's app."""

    def __init__(
        self,
        node_id: str,
        streams: StreamTable,
        cluster_key: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.streams = streams
        self.cluster_key = cluster_key
        self.clock = clock
        self.replay = ReplayCache()
        self.requests = 0
        self.segments_sent = 0
        self.parts_sent = 0
        self.refused = 0

    def add_routes(self, app: web.Application) -> None:
        base = f"{RELAY_PREFIX}/{{app:{_NAME}}}/{{stream:{_NAME}}}"
        app.router.add_get(f"{base}/state", self.state)
        app.router.add_get(base, self.next_segment)

    def _authenticate(self, request: web.Request) -> None:
        if not self.cluster_key:
            self.refused += 1
            raise HttpError(401, "relay is disabled on a node without a cluster key")
        try:
            verify(
                self.cluster_key, request.method, request.raw_path, b"", request.headers,
                self.clock(), replay=self.replay,
            )
        except SignatureError as exc:
            self.refused += 1
            log.warning("relay request from %s refused: %s", request.remote, exc.reason)
            raise HttpError(401, f"relay needs a cluster signature ({exc.reason})") from None
        self.requests += 1

    def _stream(self, request: web.Request) -> LiveStream:
        path = f"{request.match_info['app']}/{request.match_info['stream']}"
        stream = self.streams.get(path)
        if stream is None:
            raise HttpError(404, f"stream {path} is not on node {self.node_id}")
        return stream

    async def state(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        stream = self._stream(request)
        packager = stream.packager
        return json_response(
            {
                "node_id": self.node_id,
                "path": stream.path,
                "state": packager.state,
                "publishing": stream.publishing,
                "ended": packager.state == "ended",
                "target_duration": packager.target_duration,
                "video_codec": packager.video_codec,
                "audio_codec": packager.audio_codec,
                "resolution": list(packager.resolution) if packager.resolution else None,
                "bandwidth": packager.bandwidth,
                "segments": [segment_summary(s) for s in packager.segments()],
            }
        )

    async def next_segment(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        after = _query_int(request, "after", -1, minimum=-1)
        wait = _query_float(request, "wait", DEFAULT_WAIT, maximum=MAX_WAIT)
        caller_ended = request.query.get("ended", "0") == "1"
        have_parts = (
            _query_int(request, "part", 0, minimum=0) if "part" in request.query else None
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            stream = self._stream(request)
            segment = _next_after(stream, after)
            if segment is not None:
                self.segments_sent += 1
                return web.Response(
                    body=segment.data,
                    content_type="video/mp2t",
                    headers=segment_headers(segment, stream, self.node_id),
                )
            if have_parts is not None and stream.packager.next_sequence == after + 1:
                part = stream.packager.part(after + 1, have_parts)
                if part is not None:
                    self.parts_sent += 1
                    return web.Response(
                        body=part.data,
                        content_type="video/mp2t",
                        headers=part_headers(stream, have_parts, part, self.node_id),
                    )
            newest = stream.packager.newest_sequence
            if newest is not None and after > newest:
                raise HttpError(
                    409, f"segment {after} is ahead of this origin's newest ({newest})"
                )
            ended = stream.packager.state == "ended"
            remaining = deadline - loop.time()
            if ended != caller_ended or remaining <= 0:
                return web.Response(status=204, headers=state_headers(stream))
            await stream.wait_change(remaining)


def _next_after(stream: LiveStream, after: int) -> Segment | None:
    packager = stream.packager
    segment = packager.segment(after + 1)
    if segment is not None:
        return segment
    segments = packager.segments()
    if segments and segments[0].sequence > after:
        return segments[0]
    return None


def _query_int(request: web.Request, name: str, default: int, *, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    if value < minimum or value > 10**15:
        raise HttpError(400, f"{name} out of range")
    return value


def _query_float(request: web.Request, name: str, default: float, *, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None
    if not 0 <= value <= maximum:
        raise HttpError(400, f"{name} must be between 0 and {maximum:g}")
    return value


# -- edge side -------------------------------------------------------------------------------


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
        if not _PATH_RE.fullmatch(path) or not _is_http(origin.api_url):
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


__all__ = [
    "RELAY_PREFIX",
    "RelayError",
    "RelayManager",
    "RelayOrigin",
    "RelayedSegment",
    "choose_backups",
    "parse_segment",
    "segment_headers",
]
