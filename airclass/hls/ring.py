"""The bounded window of finished segments a node serves. Pure.

Segments carry their own sequence and discontinuity sequence numbers, so a ring filled by an
edge relaying an origin's segments serves the same numbers (and the same playlist) as the
origin. Sequence numbers in a ring are always consecutive, because a playlist can only say
where its window starts: appending after a gap (a relay that missed segments) empties the ring
first, and the playlist's media sequence jumps forward, which players handle like a window
that slid further than usual.

A segment may be listed before its bytes are made (`announce`): plain HLS lists a closed
segment as soon as its successor's keyframe arrives and finishes muxing it after the playlist
is out.
That state is explicit here: `pending` is such a segment (its `data` empty), it counts in the
ring's numbering and window (`newest`, `next_sequence`, `newest_segments`) but not in its
bytes, and the first read of it (`get`, iteration) or `complete()` makes its bytes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice

log = logging.getLogger(__name__)


class RingError(ValueError):
    """A segment that cannot follow the ring's newest one."""


@dataclass(frozen=True, slots=True)
class Part:
    """One partial segment (low-latency HLS), shared read-only by every viewer."""

    duration: float
    """Seconds (EXT-X-PART DURATION)."""
    data: bytes
    independent: bool
    """Starts with a keyframe (INDEPENDENT=YES)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished MPEG-TS segment, shared read-only by every viewer."""

    sequence: int
    """Media sequence number."""
    duration: float
    """Seconds (EXTINF)."""
    data: bytes
    program_date_time: float
    """Wall clock (epoch seconds) when its first frame reached the origin."""
    discontinuity: bool
    """An EXT-X-DISCONTINUITY tag precedes this segment."""
    discontinuity_sequence: int
    """Discontinuity tags from the start of the stream up to and including this segment's."""
    parts: tuple[Part, ...] = ()
    """Its partial segments in low-latency mode; their bytes, joined, are `data`."""

    def part(self, index: int) -> Part | None:
        return self.parts[index] if 0 <= index < len(self.parts) else None


class SegmentRing:
    """The newest segments, bounded by count and total bytes (the newest one always stays)."""

    __slots__ = (
        "_by_sequence", "_finish", "_segments", "max_bytes", "max_segments", "pending",
        "total_bytes",
    )

    def __init__(self, max_segments: int = 8, max_bytes: int = 64 << 20) -> None:
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self.total_bytes = 0
        """Bytes of the finished segments (a pending one's are not made yet)."""
        self.pending: Segment | None = None
        """The newest segment when it is listed but its bytes are still to make."""
        self._finish: Callable[[], bytes] | None = None
        self._segments: deque[Segment] = deque()
        self._by_sequence: dict[int, Segment] = {}

    def __len__(self) -> int:
        return len(self._segments) + (self.pending is not None)

    def __iter__(self) -> Iterator[Segment]:
        """The segments, oldest first, every one with its bytes."""
        self.complete()
        return iter(self._segments)

    @property
    def newest(self) -> Segment | None:
        """The newest segment, the pending one included (without its bytes)."""
        if self.pending is not None:
            return self.pending
        return self._segments[-1] if self._segments else None

    @property
    def next_sequence(self) -> int:
        """The sequence number the next locally made segment gets."""
        newest = self.pending or (self._segments[-1] if self._segments else None)
        return newest.sequence + 1 if newest is not None else 0

    @property
    def next_discontinuity_sequence(self) -> int:
        """Discontinuity sequence of a next segment that is not itself a discontinuity."""
        newest = self.pending or (self._segments[-1] if self._segments else None)
        return newest.discontinuity_sequence if newest is not None else 0

    def get(self, sequence: int) -> Segment | None:
        """Segment `sequence` with its bytes (made now if it is the pending one)."""
        if self.pending is not None and sequence == self.pending.sequence:
            self.complete()
        return self._by_sequence.get(sequence)

    def newest_segments(self, count: int) -> list[Segment]:
        """The `count` newest segments, oldest first (the playlist window): what a playlist
        lists, so a pending segment is among them, without its bytes."""
        if count < 1:
            return []
        if self.pending is None:
            skip = max(0, len(self._segments) - count)
            return list(islice(self._segments, skip, None))
        skip = max(0, len(self._segments) - count + 1)
        return [*islice(self._segments, skip, None), self.pending]

    def announce(self, segment: Segment, finish: Callable[[], bytes]) -> list[Segment]:
        """Add the newest segment before its bytes: `finish()` makes them, once, when they are
        first needed. Returns the segments evicted (a gap restarts the window). Nothing is
        evicted for room until the bytes are made: that is work the listing need not wait for,
        so meanwhile the ring holds one segment over `max_segments`."""
        evicted = self.complete() if self.pending is not None else []
        if not self._follows(segment):
            evicted += self.clear()
        if segment.data or segment.parts:
            segment = replace(segment, data=b"", parts=())
        self.pending, self._finish = segment, finish
        return evicted

    def complete(self) -> list[Segment]:
        """Make the pending segment's bytes, if there is one; returns the segments the byte
        cap evicted for them."""
        pending, finish = self.pending, self._finish
        if pending is None or finish is None:
            return []
        self.pending = self._finish = None
        return self._append(replace(pending, data=finish()))

    def append(self, segment: Segment) -> list[Segment]:
        """Add the newest segment; returns the segments evicted to make room."""
        evicted = self.complete()
        return evicted + self._append(segment)

    def _follows(self, segment: Segment) -> bool:
        """Whether `segment` follows the newest one; False when it leaves a gap (the window
        restarts). Raises RingError if it cannot follow at all."""
        newest = self.pending or (self._segments[-1] if self._segments else None)
        if newest is None:
            return True
        if segment.sequence <= newest.sequence:
            raise RingError(f"segment {segment.sequence} does not follow segment {newest.sequence}")
        if segment.sequence == newest.sequence + 1:
            expected = newest.discontinuity_sequence + (1 if segment.discontinuity else 0)
            if segment.discontinuity_sequence != expected:
                raise RingError(
                    f"segment {segment.sequence} has discontinuity sequence "
                    f"{segment.discontinuity_sequence}, expected {expected}"
                )
            return True
        if segment.discontinuity_sequence < newest.discontinuity_sequence:
            raise RingError(f"segment {segment.sequence} goes back in discontinuities")
        log.warning(
            "segments %d..%d are missing: restarting the window at %d",
            newest.sequence + 1, segment.sequence - 1, segment.sequence,
        )
        return False

    def _append(self, segment: Segment) -> list[Segment]:
        evicted = [] if self._follows(segment) else self.clear()
        self._segments.append(segment)
        self._by_sequence[segment.sequence] = segment
        self.total_bytes += _size(segment)
        while len(self._segments) > 1 and (
            len(self._segments) > self.max_segments or self.total_bytes > self.max_bytes
        ):
            evicted.append(self._evict())
        return evicted

    def clear(self) -> list[Segment]:
        """Drop every segment (a pending one without making its bytes); returns them."""
        self.pending = self._finish = None
        evicted = list(self._segments)
        self._segments.clear()
        self._by_sequence.clear()
        self.total_bytes = 0
        return evicted

    def _evict(self) -> Segment:
        old = self._segments.popleft()
        del self._by_sequence[old.sequence]
        self.total_bytes -= _size(old)
        return old


def _size(segment: Segment) -> int:
    """Bytes a segment holds, its parts included."""
    return len(segment.data) + sum(len(part.data) for part in segment.parts)
