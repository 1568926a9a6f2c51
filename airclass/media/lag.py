"""How far behind real time a publisher's media arrives. Pure: timestamps and a monotonic clock
come in as arguments.

A publisher that keeps up delivers each frame a constant time after its timestamp: the
encoder's and the network's delay. The least `arrival - timestamp` seen on a track is that
delay at its best; how much later than that a frame arrives is how far the publisher has fallen
behind real time: an encoder that cannot keep up on a busy PC, a congested uplink, Wi-Fi that
drops out for a moment. Every viewer's player holds about its latency in buffer (~1 s in LL-HLS),
so a publisher that far behind stalls every viewer whatever the server does: the slave's log,
its metrics and the teacher's page say so, and the school's IT person looks at the teacher's PC
and uplink rather than at the server.

- Per track: an encoder sends audio and video with a constant offset between them.
- A timestamp that goes back (a new publish, a 32-bit wrap, an encoder restart) starts its
  track's reckoning again.
- The two clocks are two PCs' and drift apart by tens of parts per million; the best delay may
  rise by `drift` seconds per second, so hours of a publisher's slow clock never read as lag,
  while a fall behind of half a second in half a second reads in full.
- A fall behind of `late_after` seconds or more counts once, until the lag is back under half
  of that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from airclass.media.frames import MediaKind

LATE_AFTER: Final = 0.5
"""Seconds behind real time at which the publisher counts as late: half of an LL-HLS viewer's
buffer, a quarter of a plain one's."""
DRIFT: Final = 0.001
"""Seconds per second the best delay may rise by (1,000 ppm, ten times two PCs' clock drift)."""

Change = Literal["late", "caught_up"]


@dataclass(slots=True)
class _Track:
    best: float
    """The least arrival - timestamp seen (seconds), risen by the allowed drift since."""
    dts: int
    at: float


@dataclass(slots=True)
class IngestLag:
    """A publisher's lag behind real time, fed each frame's timestamp and arrival."""

    late_after: float = LATE_AFTER
    drift: float = DRIFT
    current: float = 0.0
    """Seconds the latest frame arrived behind real time."""
    worst: float = 0.0
    """The most seconds behind since the publish started."""
    falls: int = 0
    """Times the lag reached `late_after`."""
    late: bool = False
    """Whether the publisher is behind: from `late_after` until back under half of it."""
    peak: float = 0.0
    """The most seconds behind in the latest fall."""
    _tracks: dict[MediaKind, _Track] = field(default_factory=dict)

    def observe(self, kind: MediaKind, dts: int, now: float) -> Change | None:
        """A frame of `kind` stamped `dts` ms arrived at `now` (monotonic seconds). Returns
        "late" when the publisher has just fallen `late_after` behind, "caught_up" when it has
        just come back under half of that, else None."""
        offset = now - dts / 1000
        track = self._tracks.get(kind)
        if track is None or dts < track.dts:
            track = self._tracks[kind] = _Track(offset, dts, now)
        else:
            track.best = min(offset, track.best + self.drift * (now - track.at))
            track.dts, track.at = dts, now
        lag = self.current = offset - track.best
        self.worst = max(self.worst, lag)
        if self.late:
            self.peak = max(self.peak, lag)
        elif lag >= self.late_after:
            self.late = True
            self.falls += 1
            self.peak = lag
            return "late"
        if self.late and lag < self.late_after / 2:
            self.late = False
            return "caught_up"
        return None

    def reset(self) -> None:
        """A new publish: its timestamps start afresh (the falls counted so far stay)."""
        self._tracks.clear()
        self.current = self.worst = self.peak = 0.0
        self.late = False
