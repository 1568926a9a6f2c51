"""The origin's relay endpoints, on the slave's app: an edge reads a live stream's ring and
long-polls for its next segment or part (the protocol is in `airclass.cluster.relay_wire`).

Every request must be signed with CLUSTER_KEY (`airclass.cluster.signing`) over method, path
with query and an empty body (viewer tokens and sessions never work here), and every reply to
one is signed for it, errors included: an edge acts on a 404 or a 409 too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from airclass.cluster.relay_wire import (
    DEFAULT_WAIT,
    MAX_WAIT,
    ROUTE,
    part_headers,
    segment_headers,
    segment_summary,
    state_headers,
)
from airclass.cluster.signing import (
    ReplayCache,
    SignatureError,
    request_nonce,
    verify,
)
from airclass.hls.ring import Segment
from airclass.logtext import ThrottledWarnings
from airclass.streams import LiveStream, StreamTable
from airclass.web.http import HttpError, json_error, json_response, signed_reply

log = logging.getLogger(__name__)
refusals = ThrottledWarnings(log)
"""Refused relay requests, logged at most once per 10 s."""


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
        base = ROUTE
        app.router.add_get(f"{base}/state", self._signed(self.state))
        app.router.add_get(base, self._signed(self.next_segment))

    def _signed(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """`handler` with every reply to an authenticated request signed for that request
        (errors included: an edge acts on a 404 or 409 too)."""

        async def signed(request: web.Request) -> web.Response:
            self._authenticate(request)
            try:
                response = await handler(request)
            except HttpError as exc:
                response = json_error(exc.status, exc.message, exc.headers)
            return signed_reply(response, self.cluster_key, request_nonce(request.headers))

        return signed

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
            refusals.warning("signature", "relay request from %s refused: %s", request.remote,
                             exc.reason)
            raise HttpError(401, f"relay needs a cluster signature ({exc.reason})") from None
        self.requests += 1

    def _stream(self, request: web.Request) -> LiveStream:
        path = f"{request.match_info['app']}/{request.match_info['stream']}"
        stream = self.streams.get(path)
        if stream is None:
            raise HttpError(404, f"stream {path} is not on node {self.node_id}")
        return stream

    async def state(self, request: web.Request) -> web.Response:
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


__all__ = ["RelayOrigin"]
