"""Where to cut a live stream into HLS segments. Pure: frames and the wall clock come in as
arguments, closed segments come out.

Rules:
- A segment starts at a cut point: a video keyframe when the stream has video, any audio frame
  otherwise. Frames before the first cut point (and after a flush or a timestamp jump) are
  dropped: a player cannot decode them.
- A segment is closed before the first cut point at which it has reached the target duration.
- A segment's audio runs to where its video is presented to end: the cutting keyframe's
  presentation time, which B-frames put a reorder delay after its decode time. Audio frames
  already received that are stamped after that time move to the new segment.
- With partial segments (below) the cut also waits for the audio up to that time, which
  encoders send after the keyframe (at most `max_settle` seconds of video), and keeps the frame
  stamped at that very time (an AAC frame's true start is a fraction of a millisecond off its
  rounded RTMP stamp, so it may start just before). A player's buffered range is where both
  tracks are buffered: with the audio a few milliseconds short of the video, a complete segment
  looks unfinished to hls.js in low-latency mode, which then waits seconds before loading the
  next segment's first part. It costs the segment's last part the encoder's reorder delay;
  plain HLS players look past such a gap, so without parts a segment closes at its keyframe.
- Bounded: a segment that reaches `max_bytes` or `max_duration` (a publisher that stops sending
  keyframes) is force-cut at the next frame, which then starts a segment without a keyframe.
- RTMP timestamps are 32-bit milliseconds that wrap, and encoders glitch: a dts that goes
  backwards within its track, jumps more than `max_jump` seconds from the stream's latest, or
  moves forward within its track more than `max_gap` seconds beyond the wall-clock time since
  that track's previous frame, closes the segment and starts the next one with
  `discontinuity=True`. The last rule catches small forward jumps (which would otherwise stretch
  a segment by the jump and grow the target duration) without mistaking a real pause in a
  variable-frame-rate video, whose timestamps keep pace with the clock, for a jump; and it
  looks at one track only, so a constant audio/video offset is never a jump.

Announced keyframes (`announce_keyframe`, plain HLS only): the ingest knows a video keyframe's
timestamps from its first chunk, before the rest of the picture has crossed the network (a
720p keyframe is 25-150 KB: 2-12 ms on a 100 Mbit/s uplink). A keyframe that will close the
open segment closes it then; the keyframe itself starts the next segment when it arrives. Audio
that arrives in between goes to the next segment. Should a different frame come instead (the
publisher aborted the message, or a timestamp jumped), the announcement is forgotten and the
next segment starts at the next cut point, as after a flush.

Low-latency HLS (`part_target`): the open segment is also cut into partial segments as frames
arrive, at frame boundaries of the track that drives the cuts, so that each part lasts at most
`part_target` (RFC 8216bis §4.4.4.9). A segment's parts, in order, hold exactly its frames;
`feed` returns the parts and segments in the order they close (a segment's last part just before
the segment). Audio already sent in a part is never moved to the next segment.

One file, past the size of the others: every rule above decides on the same open segment and
the same clocks; split, each part would need all of that state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
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


@dataclass(frozen=True, slots=True)
class PendingPart:
    """A closed partial segment's frames, before muxing."""

    frames: tuple[Frame, ...]
    index: int
    """Position within its segment, from 0."""
    duration: float
    """Seconds from this part's first cut-track dts to the next part's."""
    independent: bool
    """Its first frame of the cut track is a keyframe: a player can start decoding here."""
    program_date_time: float
    """Its segment's program date time."""
    discontinuity: bool
    """Its segment's discontinuity flag."""


SegmenterEvent = PendingPart | PendingSegment


@dataclass(slots=True)
class _Announced:
    dts: int
    carried: list[Frame]
    """Audio for the segment the keyframe starts: moved at the cut, or come since."""


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
        max_gap: float = 1.0,
        name: str = "",
        part_target: float | None = None,
        max_settle: float = 0.5,
    ) -> None:
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if part_target is not None and not 0 < part_target <= target_duration:
            raise ValueError("part_target must be in (0, target_duration]")
        if max_duration <= target_duration:
            raise ValueError("max_duration must exceed target_duration")
        self.target_ms = round(target_duration * 1000)
        self.max_bytes = max_bytes
        self.max_ms = round(max_duration * 1000)
        self.max_jump_ms = round(max_jump * 1000)
        self.max_gap_ms = round(max_gap * 1000)
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
        self._last_wall: dict[MediaKind, float] = {}
        self._delta: dict[MediaKind, int] = {}
        self._max_dts: int | None = None
        self._last_keyframe_dts: int | None = None
        self.part_ms = round(part_target * 1000) if part_target is not None else None
        self._part_start = 0
        """Index in `_frames` of the open part's first frame (0 without parts)."""
        self._part_start_dts = 0
        self._part_index = 0
        self._events: list[SegmenterEvent] = []
        self.max_settle_ms = round(max_settle * 1000)
        self._cut_at: tuple[Frame, float] | None = None
        """The keyframe (and its arrival time) that closes the segment once the audio up to its
        presentation time is in."""
        self._held: list[tuple[Frame, float]] = []
        """Frames of the next segment that arrived while the cut settles."""
        self._announced: _Announced | None = None
        """The keyframe that closed the previous segment before it arrived in full."""
        self.announced_cuts = 0
        """Segments closed by an announced keyframe."""

    @property
    def pending_frames(self) -> int:
        announced = len(self._announced.carried) if self._announced is not None else 0
        return len(self._frames) + len(self._held) + (self._cut_at is not None) + announced

    @property
    def open_program_date_time(self) -> float:
        """The wall clock when the open segment's first frame arrived (its date to come)."""
        return self._start_wall

    @property
    def open_discontinuity(self) -> bool:
        """Whether the open segment will start a discontinuity."""
        return self._segment_discontinuity

    @property
    def open_frames(self) -> Sequence[Frame]:
        """The open segment's frames so far, in order (the live list: a new segment starts a
        new one). Read-only."""
        return self._frames

    def settled_frames(self, start: int = 0) -> int:
        """How many of `open_frames`, from the first, are sure to stay in this segment whatever
        comes next, given that the first `start` are: a cut moves to the next segment only
        audio stamped after the cutting keyframe's presentation time, which is after every
        video frame received so far, so audio up to the newest video frame stays. (Without
        parts; a settling cut, in part mode, changes nothing before it either.)"""
        frames = self._frames
        if not self.has_video:
            return len(frames)
        newest_video = self._last_dts.get("video")
        for i in range(start, len(frames)):
            frame = frames[i]
            if frame.kind == "audio" and (newest_video is None or frame.dts > newest_video):
                return i
        return len(frames)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the open segment (a settling cut's next-segment frames not counted)."""
        return self._bytes

    def mark_discontinuity(self) -> None:
        """The next segment does not continue the previous one (publisher reconnect, new
        codec parameters); timestamps are not compared across the break."""
        self._next_discontinuity = True
        self._reset_timeline()

    def flush(self) -> list[PendingSegment]:
        """Close the pending segment now (stream end, codec change), after the one a waiting
        cut closes; the next segment starts at a cut point again."""
        self._close()
        return [e for e in self._drain() if isinstance(e, PendingSegment)]

    def flush_events(self) -> list[SegmenterEvent]:
        """`flush` with the segment's last part before it (low-latency mode)."""
        self._close()
        return self._drain()

    def announce_keyframe(self, dts: int, pts: int) -> list[PendingSegment]:
        """A video keyframe stamped `dts`/`pts` is arriving (its first bytes are in): close
        the open segment now if that keyframe will close it. Returns the segment closed, if
        any. A hint: ignored in low-latency mode, while a cut settles, or when the timestamps
        would be a jump (the frame itself is checked when it comes)."""
        if (
            self.part_ms is not None
            or not self.has_video
            or not self._frames
            or self._cut_at is not None
            or self._announced is not None
            or dts - self._start_dts < self.target_ms
            or self._max_dts is None
            or abs(dts - self._max_dts) > self.max_jump_ms
        ):
            return []
        last_video = self._last_dts.get("video")
        if last_video is not None and dts <= last_video:
            return []
        self._announced = _Announced(dts, list(self._cut(dts, pts)))
        self.announced_cuts += 1
        return [e for e in self._drain() if isinstance(e, PendingSegment)]

    def is_announced(self, frame: Frame) -> bool:
        """Whether `frame` is the keyframe whose announcement closed the previous segment."""
        announced = self._announced
        return announced is not None and frame.keyframe and frame.dts == announced.dts

    def push(self, frame: Frame, now: float) -> list[PendingSegment]:
        """Add one frame that arrived at wall clock `now`; returns the segments it closed."""
        return [e for e in self.feed(frame, now) if isinstance(e, PendingSegment)]

    def feed(self, frame: Frame, now: float) -> list[SegmenterEvent]:
        """`push`, returning the parts it closed too, in order."""
        self._push(frame, now)
        return self._drain()

    def _drain(self) -> list[SegmenterEvent]:
        events, self._events = self._events, []
        return events

    def _push(self, frame: Frame, now: float) -> None:
        if self._is_jump(frame, now):
            log.warning(
                "stream %s: %s dts jumps from %s to %d ms, starting a discontinuity",
                self.name, frame.kind, self._last_dts.get(frame.kind, self._max_dts), frame.dts,
            )
            self.discontinuities += 1
            self._close()
            self.mark_discontinuity()
        self._track(frame, now)

        if len(frame.data) > self.max_bytes:
            self.dropped_frames += 1
            log.warning(
                "stream %s: dropping a %d-byte %s frame (segment cap %d bytes)",
                self.name, len(frame.data), frame.kind, self.max_bytes,
            )
            return

        self._place(frame, now)

    def _place(self, frame: Frame, now: float) -> None:
        """Put a checked frame in the open segment, or in the next one."""
        announced = self._announced
        if announced is not None:
            if frame.kind == "audio":
                announced.carried.append(frame)
                return
            self._announced = None
            if frame.keyframe and frame.dts == announced.dts:
                self._start(frame, now, tuple(announced.carried))
                return
            log.info("stream %s: the announced keyframe at %d ms did not come (got %d ms)",
                     self.name, announced.dts, frame.dts)
            self.dropped_frames += len(announced.carried)
        if self._cut_at is not None:
            self._settle_with(frame, now)
            return
        cut_point = frame.keyframe and (frame.kind == "video" or not self.has_video)
        if not self._frames:
            if cut_point:
                self._start(frame, now, ())
            else:
                self.dropped_frames += 1
            return

        elapsed = frame.dts - self._start_dts
        if cut_point and elapsed >= self.target_ms:
            audio_dts = self._last_dts.get("audio")
            settle = self.part_ms is not None and self.has_video
            if settle and audio_dts is not None and audio_dts < frame.pts:
                self._cut_at = (frame, now)
            else:
                self._finish_cut(frame, now)
        elif elapsed > self.max_ms or self._bytes + len(frame.data) > self.max_bytes:
            self.forced_cuts += 1
            log.warning(
                "stream %s: no cut point after %.1f s / %d bytes, forcing a cut "
                "(is the encoder's keyframe interval too long?)",
                self.name, elapsed / 1000, self._bytes,
            )
            self._segment(tuple(self._frames), frame.dts)
            self._start(frame, now, ())
        else:
            self._maybe_cut_part(frame)
            self._frames.append(frame)
            self._bytes += len(frame.data)

    def _settle_with(self, frame: Frame, now: float) -> None:
        """A frame that arrived while the cut at `_cut_at` waits for its audio: audio up to the
        keyframe's presentation time closes the segment; anything else waits for the next one,
        and audio at or after that time (or video `max_settle` past it) completes the cut."""
        assert self._cut_at is not None
        keyframe = self._cut_at[0]
        if frame.kind == "audio" and frame.dts <= keyframe.pts:
            self._frames.append(frame)
            self._bytes += len(frame.data)
            if frame.dts == keyframe.pts:
                self._settle()
            return
        self._held.append((frame, now))
        if frame.kind == "audio" or frame.dts >= keyframe.pts + self.max_settle_ms:
            self._settle()

    def _settle(self) -> None:
        """Complete the waiting cut with the audio that came in; then place the frames held
        for the next segment."""
        if self._cut_at is None:
            return
        (keyframe, wall), held = self._cut_at, self._held
        self._cut_at, self._held = None, []
        self._finish_cut(keyframe, wall)
        for frame, now in held:
            self._place(frame, now)

    def _finish_cut(self, keyframe: Frame, now: float) -> None:
        carried = self._cut(keyframe.dts, keyframe.pts)
        self._start(keyframe, now, carried)

    def _cut_kind(self) -> MediaKind:
        return "video" if self.has_video else "audio"

    def _maybe_cut_part(self, frame: Frame) -> None:
        """Close the open part before `frame` if one more frame would take it past the part
        target, so that parts stay within PART-TARGET."""
        if self.part_ms is None or frame.kind != self._cut_kind():
            return
        if len(self._frames) <= self._part_start:
            return
        elapsed = frame.dts - self._part_start_dts
        if elapsed <= 0:
            return
        goal = self._part_goal(self.part_ms)
        if elapsed >= goal or elapsed + self._delta.get(frame.kind, 0) > goal:
            self._emit_part(tuple(self._frames[self._part_start:]), frame.dts)
            self._part_start = len(self._frames)
            self._part_start_dts = frame.dts

    def _part_goal(self, part_ms: int) -> float:
        """The open part's length: the time left until the segment is expected to end (the
        first keyframe at or after the target, from the keyframe interval seen so far) split
        evenly into parts of at most `part_ms`. Even parts keep the last one from being a
        single frame (a 2 s GOP cut at 280 ms leaves 40 ms), which players handle badly."""
        span = self.target_ms
        if self.has_video and self.keyframe_interval:
            interval = max(1, round(self.keyframe_interval * 1000))
            span = interval * max(1, math.ceil(self.target_ms / interval))
        remaining = self._start_dts + span - self._part_start_dts
        if remaining <= part_ms:
            return part_ms
        return remaining / math.ceil(remaining / part_ms)

    def _emit_part(self, frames: tuple[Frame, ...], end_dts: int) -> None:
        kind = self._cut_kind()
        first = next((f for f in frames if f.kind == kind), None)
        self._events.append(
            PendingPart(
                frames=frames,
                index=self._part_index,
                duration=max(0, end_dts - self._part_start_dts) / 1000,
                independent=first is not None and first.keyframe,
                program_date_time=self._start_wall,
                discontinuity=self._segment_discontinuity,
            )
        )
        self._part_index += 1

    def _is_jump(self, frame: Frame, now: float) -> bool:
        if self._max_dts is None:
            return False
        last = self._last_dts.get(frame.kind)
        if last is not None:
            if frame.dts < last:
                return True
            elapsed_ms = max(0.0, now - self._last_wall[frame.kind]) * 1000
            if frame.dts - last - elapsed_ms > self.max_gap_ms:
                return True
        return abs(frame.dts - self._max_dts) > self.max_jump_ms

    def _track(self, frame: Frame, now: float) -> None:
        last = self._last_dts.get(frame.kind)
        if last is not None and frame.dts > last:
            self._delta[frame.kind] = frame.dts - last
        self._last_dts[frame.kind] = frame.dts
        self._last_wall[frame.kind] = now
        self._max_dts = frame.dts if self._max_dts is None else max(self._max_dts, frame.dts)
        if frame.kind == "video" and frame.keyframe:
            if self._last_keyframe_dts is not None and frame.dts > self._last_keyframe_dts:
                self.keyframe_interval = (frame.dts - self._last_keyframe_dts) / 1000
            self._last_keyframe_dts = frame.dts

    def _reset_timeline(self) -> None:
        self._last_dts.clear()
        self._last_wall.clear()
        self._max_dts = None
        self._last_keyframe_dts = None

    def _start(self, frame: Frame, now: float, carried: tuple[Frame, ...]) -> None:
        self._frames = [frame, *carried]
        self._bytes = sum(len(f.data) for f in self._frames)
        self._start_dts = frame.dts
        self._start_wall = now
        self._segment_discontinuity = self._next_discontinuity
        self._next_discontinuity = False
        self._part_start = 0
        self._part_start_dts = frame.dts
        self._part_index = 0

    def _cut(self, dts: int, pts: int) -> tuple[Frame, ...]:
        """Close the segment at a keyframe stamped `dts`/`pts`; returns the audio frames that
        move to the next (those presented from the keyframe on)."""
        # Audio dts never goes back within a segment (that is a jump, which cuts), so the
        # frames to move are among those after the newest audio frame that stays: look back
        # to it from the end instead of through the whole segment.
        frames = self._frames
        i = len(frames)
        while i > self._part_start:
            f = frames[i - 1]
            if f.kind == "audio" and f.dts <= pts:
                break
            i -= 1
        kept = frames[:i]
        carried: list[Frame] = []
        for f in frames[i:]:
            (carried if f.kind == "audio" and f.dts > pts else kept).append(f)
        self._segment(tuple(kept), dts)
        return tuple(carried)

    def _close(self) -> PendingSegment | None:
        """Close the pending segment with an estimated end (no next frame to measure to); a
        waiting cut completes first; an announced keyframe that has not come is forgotten."""
        self._settle()
        if self._announced is not None:
            self.dropped_frames += len(self._announced.carried)
            self._announced = None
        if not self._frames:
            return None
        return self._segment(tuple(self._frames), max(self._start_dts, self._estimated_end()))

    def _estimated_end(self) -> int:
        """Last frame's dts plus one frame interval, on the track that drives the cuts."""
        kind: MediaKind = "video" if self.has_video else "audio"
        dts = [f.dts for f in self._frames if f.kind == kind] or [f.dts for f in self._frames]
        return max(dts) + self._delta.get(kind, 0)

    def _segment(self, frames: tuple[Frame, ...], end_dts: int) -> PendingSegment:
        """Close the segment at `end_dts` (its open part first, with parts on)."""
        if self.part_ms is not None and len(frames) > self._part_start:
            self._emit_part(frames[self._part_start :], end_dts)
        self._frames = []
        self._bytes = 0
        self._part_start = 0
        segment = PendingSegment(
            frames=frames,
            start_dts=self._start_dts,
            duration=(end_dts - self._start_dts) / 1000,
            program_date_time=self._start_wall,
            discontinuity=self._segment_discontinuity,
        )
        self._events.append(segment)
        return segment
