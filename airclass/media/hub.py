"""The stream hub: which paths are live, who publishes them, and where their frames go.

The RTMP server asks the hub for a `Publication` when a publisher is authorised, then pushes
media events into it. The hub hands every event to the path's `MediaSink` (the HLS packager,
wired in by the slave). A path keeps its sink across publisher reconnects so the packager can
continue its sequence numbers with a discontinuity.

Ownership: a path has at most one publisher. The same owner (the same teacher, or the holder of
the static stream key) may take over its own stream, which is what an OBS reconnect looks like
when the old TCP connection has not yet timed out; anybody else is refused with `StreamBusy`.
A publisher can also be evicted (`StreamHub.evict`): in a cluster, when the path turns out to
be live on another node first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from airclass.media.frames import AudioConfig, Frame, MediaEvent, VideoConfig

log = logging.getLogger(__name__)


class StreamBusy(Exception):
    """The path is being published by somebody else."""


class MediaSink(Protocol):
    """What consumes one path's media (the HLS packager)."""

    def on_publish_start(self) -> None:
        """A publisher started (first one or a reconnect: the sink decides on discontinuity)."""

    def on_event(self, event: MediaEvent) -> None:
        """A configuration record or a frame."""

    def on_publish_stop(self) -> None:
        """The publisher left (cleanly or not)."""


class Publication:
    """One publisher's handle on a path, valid until `close()` or until taken over."""

    __slots__ = ("_hub", "_on_takeover", "bytes_in", "closed", "frames_in", "owner", "path")

    def __init__(self, hub: StreamHub, path: str, owner: str) -> None:
        self._hub = hub
        self.path = path
        self.owner = owner
        self.closed = False
        self.frames_in = 0
        self.bytes_in = 0
        self._on_takeover: Callable[[str], None] | None = None

    def on_takeover(self, callback: Callable[[str], None]) -> None:
        """Called (once, with the reason to give the publisher) if the same owner publishes
        the path again from another connection, or if the publication is evicted."""
        self._on_takeover = callback

    def send(self, event: MediaEvent) -> None:
        if self.closed:
            return
        if isinstance(event, Frame):
            self.frames_in += 1
            self.bytes_in += len(event.data)
        self._hub._sink(self.path).on_event(event)

    def send_video_config(self, config: VideoConfig) -> None:
        self.send(config)

    def send_audio_config(self, config: AudioConfig) -> None:
        self.send(config)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._hub._release(self)


class StreamHub:
    """Maps live paths to their publisher and sink."""

    def __init__(self, sink_factory: Callable[[str], MediaSink]) -> None:
        self._sink_factory = sink_factory
        self._sinks: dict[str, MediaSink] = {}
        self._publishers: dict[str, Publication] = {}

    def publish(self, path: str, owner: str) -> Publication:
        """Start publishing `path` as `owner`; raises StreamBusy if someone else holds it."""
        current = self._publishers.get(path)
        if current is not None:
            if current.owner != owner:
                raise StreamBusy(path)
            log.info("stream %s: publisher %s takes over its own stream", path, owner)
            self._end(current, "Stream taken over by a newer connection.")
        pub = Publication(self, path, owner)
        self._publishers[path] = pub
        self._sink(path).on_publish_start()
        return pub

    def evict(self, path: str, reason: str) -> bool:
        """Stop the publisher of `path`, telling it `reason`; False if none."""
        current = self._publishers.get(path)
        if current is None:
            return False
        log.warning("stream %s: publisher %s stopped: %s", path, current.owner, reason)
        self._end(current, reason)
        return True

    def _end(self, pub: Publication, reason: str) -> None:
        callback = pub._on_takeover
        pub._on_takeover = None
        pub.close()
        if callback is not None:
            callback(reason)

    def publisher(self, path: str) -> Publication | None:
        return self._publishers.get(path)

    def live_paths(self) -> list[str]:
        return sorted(self._publishers)

    def forget(self, path: str) -> None:
        """Drop a path's sink (after its grace period), unless it is being published again."""
        if path not in self._publishers:
            self._sinks.pop(path, None)

    def _sink(self, path: str) -> MediaSink:
        sink = self._sinks.get(path)
        if sink is None:
            sink = self._sinks[path] = self._sink_factory(path)
        return sink

    def _release(self, pub: Publication) -> None:
        if self._publishers.get(pub.path) is pub:
            del self._publishers[pub.path]
            self._sink(pub.path).on_publish_stop()
