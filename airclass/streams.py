"""The slave's live streams: one HLS packager per path, and its lifecycle.

The hub asks `StreamTable.sink(path)` for a path's packager when a publisher appears. When the
publisher goes away the packager keeps the stream open (no ENDLIST) for `reconnect_grace`
seconds, because OBS on flaky Wi-Fi reconnects and viewers must keep playing through that with
only a discontinuity; after the grace the playlist ends (#EXT-X-ENDLIST), and `linger` seconds
later the stream is removed and its memory returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from airclass.hls.packager import HlsPackager, PackagerConfig
from airclass.media.frames import Frame, MediaEvent
from airclass.media.hub import StreamHub
from airclass.media.lag import IngestLag

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    reconnect_grace: float = 10.0
    """Seconds a stream stays open, without ENDLIST, waiting for its publisher to return."""
    linger: float = 30.0
    """Seconds an ended stream stays servable (so players read ENDLIST) before removal."""


PRUNE_WAITERS: Final = 256
"""Waiters of a stream at which those already done are dropped (no change came for them)."""


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class LiveStream:
    """A path's packager plus the asyncio plumbing for requests that wait on it."""

    def __init__(
        self, path: str, packager: HlsPackager, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.packager = packager
        self.publishing = False
        self.stopped_at: float | None = None
        self.frames_in: dict[str, int] = {"video": 0, "audio": 0}
        self.bytes_in = 0
        self.lag = IngestLag()
        """How far behind real time the publisher's frames arrive."""
        self._monotonic = monotonic
        self._waiters: list[asyncio.Future[bool]] = []
        self._prune_at = PRUNE_WAITERS
        packager.add_listener(self._on_change)

    def _on_change(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait_change(self, timeout: float) -> bool:
        """Wait for the next segment, part or state change; False on timeout.

        A future and a timer per wait (`asyncio.wait_for` would add a task): an LL-HLS viewer
        waits like this about three times a second."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        waiters = self._waiters
        if len(waiters) >= self._prune_at:  # waits that timed out or were cancelled
            waiters[:] = [w for w in waiters if not w.done()]
            self._prune_at = max(PRUNE_WAITERS, 2 * len(waiters))
        waiters.append(waiter)
        timer = loop.call_later(timeout, _time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    # MediaSink: the packager does the work; we keep the publish timeline.
    def on_publish_start(self) -> None:
        self.publishing = True
        self.stopped_at = None
        self.lag.reset()
        self.packager.on_publish_start()

    def on_event(self, event: MediaEvent) -> None:
        if isinstance(event, Frame):
            self.frames_in[event.kind] += 1
            self.bytes_in += len(event.data)
            change = self.lag.observe(event.kind, event.dts, self._monotonic())
            if change == "late":
                log.warning(
                    "stream %s: the publisher is %.1f s behind real time, viewers may stall: "
                    "its PC or uplink is not keeping up (a lower bitrate or resolution in OBS "
                    "helps)", self.path, self.lag.current,
                )
            elif change == "caught_up":
                log.info("stream %s: the publisher caught up (it fell %.1f s behind)",
                         self.path, self.lag.peak)
        self.packager.on_event(event)

    def on_publish_stop(self) -> None:
        self.publishing = False
        self.stopped_at = time.time()
        self.packager.pause()


class StreamTable:
    """Paths → LiveStream, created on first publish and removed after the policy's timers."""

    def __init__(
        self,
        packager_config: PackagerConfig,
        policy: StreamPolicy = StreamPolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.packager_config = packager_config
        self.policy = policy
        self.clock = clock
        self.streams: dict[str, LiveStream] = {}
        self.hub = StreamHub(self.sink)

    def sink(self, path: str) -> LiveStream:
        stream = self.streams.get(path)
        if stream is None:
            packager = HlsPackager(self.packager_config, self.clock, path=path)
            stream = self.streams[path] = LiveStream(path, packager)
            log.info("stream %s: created", path)
        return stream

    def get(self, path: str) -> LiveStream | None:
        return self.streams.get(path)

    def sweep(self) -> None:
        """Remove streams whose publisher has been gone for grace + linger seconds."""
        now = self.clock()
        for path, stream in list(self.streams.items()):
            if stream.publishing or stream.stopped_at is None:
                continue
            if now - stream.stopped_at >= self.policy.reconnect_grace:
                stream.packager.end()
            if now - stream.stopped_at >= self.policy.reconnect_grace + self.policy.linger:
                log.info("stream %s: removed after its publisher left", path)
                del self.streams[path]
                self.hub.forget(path)
                stream._on_change()

    async def run_sweeper(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()
