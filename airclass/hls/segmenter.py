"""Where to cut a live stream into HLS segments. Pure: frames and the wall clock come in as
arguments, closed segments come out.

Rules:
- A segment starts at a cut point: a video keyframe when the stream has video, any audio frame
  otherwise. Frames before the first cut point (and after a flush or a timestamp jump) are
  dropped: a player cannot decode them.
- A segment is closed before the first cut point at which it has reached the target duration.
- Audio frames already received whose dts is at or after the cutting keyframe move to the new
  segment, so each segment's audio covers the same time span as its video.
- Bounded: a segment that reaches `max_bytes` or `max_duration` (a publisher that stops sending
  keyframes) is force-cut at the next frame, which then starts a segment without a keyframe.
- RTMP timestamps are 32-bit milliseconds that wrap, and encoders glitch: a dts that goes
  backwards within its track, or jumps more than `max_jump` seconds from the stream's latest,
  closes the segment and starts the next one with `discontinuity=True`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from airclass.media.frames import Frame, MediaKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingSegment:
    """A closed segment's frames, before muxing."""

    frames: tuple[Frame, ...]
    start_dts: int
    """Dts (ms) of the frame that started the segment."""
    duration: float
    """Seconds from this segment's start dts to the next one's (estimated for the last one)."""
    program_date_time: float
    """Wall clock (epoch seconds) when the segment's first frame arrived."""
    discontinuity: bool
    """Timestamps or codec parameters do not continue from the previous segment."""

    @property
    def size(self) -> int:
        return sum(len(frame.data) for frame in self.frames)


class Segmenter:
    """Cuts one stream's frames into segments; see the module docstring for the rules."""

    def __init__(
        self,
        target_duration: float = 2.0,
        *,
        has_video: bool = False,
        max_bytes: int = 16 << 20,
        max_duration: float = 15.0,
        max_jump: float = 5.0,
        name: str = "",
    ) -> None:
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if max_duration <= target_duration:
            raise ValueError("max_duration must exceed target_duration")
        self.target_ms = round(target_duration * 1000)
        self.max_bytes = max_bytes
        self.max_ms = round(max_duration * 1000)
        self.max_jump_ms = round(max_jump * 1000)
        self.has_video = has_video
        """Whether video keyframes are the cut points (set by the packager from the configs)."""
        self.name = name
        self.dropped_frames = 0
        """Frames discarded: before a first cut point, or too large for a segment."""
        self.forced_cuts = 0
        self.discontinuities = 0
        self.keyframe_interval: float | None = None
        """Seconds between the two latest video keyframes (None until two were seen)."""

        self._frames: list[Frame] = []
        self._bytes = 0
        self._start_dts = 0
        self._start_wall = 0.0
        self._segment_discontinuity = False
        self._next_discontinuity = False
        self._last_dts: dict[MediaKind, int] = {}
        self._delta: dict[MediaKind, int] = {}
        self._max_dts: int | None = None
        self._last_keyframe_dts: int | None = None

    @property
    def pending_frames(self) -> int:
        return len(self._frames)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def mark_discontinuity(self) -> None:
        """The next segment does not continue the previous one (publisher reconnect, new
        codec parameters); timestamps are not compared across the break."""
        self._next_discontinuity = True
        self._reset_timeline()

    def flush(self) -> PendingSegment | None:
        """Close the pending segment now (stream end, codec change); the next segment starts
        at a cut point again."""
        return self._close()

    def push(self, frame: Frame, now: float) -> list[PendingSegment]:
        """Add one frame that arrived at wall clock `now`; returns the segments it closed."""
        closed: list[PendingSegment] = []
        if self._is_jump(frame):
            log.warning(
                "stream %s: %s dts jumps from %s to %d ms, starting a discontinuity",
                self.name, frame.kind, self._last_dts.get(frame.kind, self._max_dts), frame.dts,
            )
            self.discontinuities += 1
            segment = self._close()
            if segment is not None:
                closed.append(segment)
            self.mark_discontinuity()
        self._track(frame)

        if len(frame.data) > self.max_bytes:
            self.dropped_frames += 1
            log.warning(
                "stream %s: dropping a %d-byte %s frame (segment cap %d bytes)",
                self.name, len(frame.data), frame.kind, self.max_bytes,
            )
            return closed

        cut_point = frame.keyframe and (frame.kind == "video" or not self.has_video)
        if not self._frames:
            if cut_point:
                self._start(frame, now, ())
            else:
                self.dropped_frames += 1
            return closed

        elapsed = frame.dts - self._start_dts
        if cut_point and elapsed >= self.target_ms:
            segment, carried = self._cut(frame.dts)
            closed.append(segment)
            self._start(frame, now, carried)
        elif elapsed > self.max_ms or self._bytes + len(frame.data) > self.max_bytes:
            self.forced_cuts += 1
            log.warning(
                "stream %s: no cut point after %.1f s / %d bytes, forcing a cut "
                "(is the encoder's keyframe interval too long?)",
                self.name, elapsed / 1000, self._bytes,
            )
            closed.append(self._segment(tuple(self._frames), elapsed / 1000))
            self._start(frame, now, ())
        else:
            self._frames.append(frame)
            self._bytes += len(frame.data)
        return closed

    def _is_jump(self, frame: Frame) -> bool:
        if self._max_dts is None:
            return False
        last = self._last_dts.get(frame.kind)
        if last is not None and frame.dts < last:
            return True
        return abs(frame.dts - self._max_dts) > self.max_jump_ms

    def _track(self, frame: Frame) -> None:
        last = self._last_dts.get(frame.kind)
        if last is not None and frame.dts > last:
            self._delta[frame.kind] = frame.dts - last
        self._last_dts[frame.kind] = frame.dts
        self._max_dts = frame.dts if self._max_dts is None else max(self._max_dts, frame.dts)
        if frame.kind == "video" and frame.keyframe:
            if self._last_keyframe_dts is not None and frame.dts > self._last_keyframe_dts:
                self.keyframe_interval = (frame.dts - self._last_keyframe_dts) / 1000
            self._last_keyframe_dts = frame.dts

    def _reset_timeline(self) -> None:
        self._last_dts.clear()
        self._max_dts = None
        self._last_keyframe_dts = None

    def _start(self, frame: Frame, now: float, carried: tuple[Frame, ...]) -> None:
        self._frames = [frame, *carried]
        self._bytes = sum(len(f.data) for f in self._frames)
        self._start_dts = frame.dts
        self._start_wall = now
        self._segment_discontinuity = self._next_discontinuity
        self._next_discontinuity = False

    def _cut(self, keyframe_dts: int) -> tuple[PendingSegment, tuple[Frame, ...]]:
        kept: list[Frame] = []
        carried: list[Frame] = []
        for f in self._frames:
            (carried if f.kind == "audio" and f.dts >= keyframe_dts else kept).append(f)
        segment = self._segment(tuple(kept), (keyframe_dts - self._start_dts) / 1000)
        return segment, tuple(carried)

    def _close(self) -> PendingSegment | None:
        """Close the pending segment with an estimated end (no next frame to measure to)."""
        if not self._frames:
            return None
        duration = max(0, self._estimated_end() - self._start_dts) / 1000
        return self._segment(tuple(self._frames), duration)

    def _estimated_end(self) -> int:
        """Last frame's dts plus one frame interval, on the track that drives the cuts."""
        kind: MediaKind = "video" if self.has_video else "audio"
        dts = [f.dts for f in self._frames if f.kind == kind] or [f.dts for f in self._frames]
        return max(dts) + self._delta.get(kind, 0)

    def _segment(self, frames: tuple[Frame, ...], duration: float) -> PendingSegment:
        self._frames = []
        self._bytes = 0
        return PendingSegment(
            frames=frames,
            start_dts=self._start_dts,
            duration=duration,
            program_date_time=self._start_wall,
            discontinuity=self._segment_discontinuity,
        )
