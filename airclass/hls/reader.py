"""Reading a media playlist as a player does: what the load tester and the benchmarks see.

Pure. Tolerant of tags it does not know (a player skips them); `ValueError` for text that is
not a playlist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Playlist:
    """A media playlist as read."""

    target: float
    media_sequence: int
    segments: list[tuple[int, float, str, float | None]]
    """(sequence, duration, uri, program date time of the segment start)"""
    ended: bool
    parts: list[tuple[int, int, float, str]] = field(default_factory=list)
    """LL-HLS EXT-X-PART entries: (segment sequence, part index, duration, uri)."""
    part_hold_back: float = 0.0


def parse_media_playlist(text: str) -> Playlist:
    """Segments with their sequence numbers, durations, URIs and dates; parts; ENDLIST."""
    if not text.startswith("#EXTM3U"):
        raise ValueError("not a playlist")
    target, sequence, ended = 0.0, 0, False
    segments: list[tuple[int, float, str, float | None]] = []
    duration = 0.0
    pdt: float | None = None
    parts: list[tuple[int, int, float, str]] = []
    hold_back = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            attrs = dict(a.split("=", 1) for a in line[12:].split(",") if "=" in a)
            owner = sequence + len(segments)
            index = sum(1 for p in parts if p[0] == owner)
            parts.append((owner, index, float(attrs["DURATION"]), attrs["URI"].strip('"')))
        elif line.startswith("#EXT-X-SERVER-CONTROL:") and "PART-HOLD-BACK=" in line:
            hold_back = float(line.split("PART-HOLD-BACK=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            stamp = line.split(":", 1)[1].replace("Z", "+00:00")
            pdt = datetime.fromisoformat(stamp).timestamp()
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#"):
            segments.append((sequence + len(segments), duration, line, pdt))
            if pdt is not None:
                pdt += duration
    return Playlist(target, sequence, segments, ended, parts, hold_back)
