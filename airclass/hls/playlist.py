"""HLS playlist text (RFC 8216). Pure.

Version 3 is enough: it is the version that allows decimal EXTINF durations, and nothing else
written here (PROGRAM-DATE-TIME, DISCONTINUITY, DISCONTINUITY-SEQUENCE, ENDLIST) needs more.

Every segment carries its own EXT-X-PROGRAM-DATE-TIME: the wall clock when its first frame
reached the ingest. A player dates the frame on screen from the tag of the segment it plays;
with one tag on the first segment only, it would add up the durations from there, and a
publisher catching up after falling behind (an encoder starting on a busy PC, a congested
uplink) sends media faster than real time: the dates added up run ahead of the clock, and the
glass-to-glass latency a student sees reads low, down to zero.

Target duration: RFC 8216 §4.3.3.1 requires every EXTINF, rounded to the nearest integer, to be
at most EXT-X-TARGETDURATION. `TargetDuration` keeps max(ceil(configured target), nearest-
integer rounding of the longest segment ever seen) and never lets it decrease. Rounding to
nearest rather than up keeps a 2.002-s segment (29.97 fps) under a target of 2, since players
pace their reloads and live edge on the target duration. The target only grows when a segment
longer than any before it appears (an encoder keyframe interval above the configured target).

Low-latency HLS (RFC 8216bis, `render_ll_media_playlist`): the same segments, plus EXT-X-PART
for the open segment and the segments of the last three target durations, a PRELOAD-HINT for
the next part, EXT-X-SERVER-CONTROL (blocking reload; delta updates with CAN-SKIP-UNTIL at six
target durations, the minimum the spec allows; PART-HOLD-BACK at three part targets) and, for
`_HLS_skip=YES`, a delta update whose EXT-X-SKIP replaces the oldest segments. Version 9: the
version that introduced EXT-X-SKIP; players that predate LL-HLS ignore the tags they do not
know and play the full segments. `block_decision` answers a blocking reload (`_HLS_msn`,
`_HLS_part`, §6.2.5.2) from the packager's position.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from airclass.hls.ring import Part, Segment

HLS_VERSION = 3
LL_HLS_VERSION = 9
PART_HOLD_BACK_PARTS = 3
"""PART-HOLD-BACK in part targets: the minimum RFC 8216bis §4.4.3.8 allows."""
SKIP_UNTIL_TARGETS = 6
"""CAN-SKIP-UNTIL in target durations: the minimum §4.4.3.8 allows."""
PART_LIST_TARGETS = 3
"""Parts stay listed for segments within this many target durations of the live edge."""
ADVANCE_PART_LIMIT = 3
"""A blocking request for a part this far beyond the newest one is refused (§6.2.5.2)."""

SegmentUri = Callable[[Segment], str] | str


def rounded_duration(seconds: float) -> int:
    """EXTINF rounded to the nearest integer, halves up, as §4.3.3.1 compares it."""
    return math.floor(seconds + 0.5)


class TargetDuration:
    """EXT-X-TARGETDURATION that covers every segment seen and never decreases."""

    __slots__ = ("value",)

    def __init__(self, configured: float) -> None:
        self.value = max(1, math.ceil(configured))

    def observe(self, duration: float) -> int:
        self.value = max(self.value, rounded_duration(duration))
        return self.value


@functools.lru_cache(maxsize=64)
def format_program_date_time(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-27T16:31:04.123Z. Cached: a playlist
    re-rendered for every segment (or part) dates the same few segments again."""
    millis = round(epoch * 1000)
    seconds, ms = divmod(millis, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms:03d}Z"


def _uri_maker(segment_uri: SegmentUri) -> Callable[[Segment], str]:
    if not isinstance(segment_uri, str):
        return segment_uri
    template = segment_uri
    return lambda segment: template.format(sequence=segment.sequence)


def render_media_playlist(
    segments: Sequence[Segment],
    *,
    target_duration: int,
    ended: bool,
    segment_uri: SegmentUri = "{sequence}.ts",
) -> str:
    """A live (or, when `ended`, finished) media playlist listing `segments` in order.

    The media and discontinuity sequences come from the first listed segment, so the same
    segments give the same text on every node. `segment_uri` is a callable or a format string
    with `{sequence}`.
    """
    lines = _media_head(segments, target_duration)
    _segment_lines(lines, segments, _uri_maker(segment_uri))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _media_head(segments: Sequence[Segment], target_duration: int) -> list[str]:
    first = segments[0] if segments else None
    media_sequence = first.sequence if first else 0
    discontinuity_sequence = (
        first.discontinuity_sequence - (1 if first.discontinuity else 0) if first else 0
    )
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    return lines


def _segment_lines(
    lines: list[str], segments: Sequence[Segment], uri: Callable[[Segment], str]
) -> None:
    for segment in segments:
        _date_lines(lines, segment)
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(uri(segment))


def _date_lines(lines: list[str], segment: Segment) -> None:
    if segment.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.program_date_time)}")


@dataclass(frozen=True, slots=True)
class PlaylistDraft:
    """The live playlist that will list the open segment, written while it is open: all but
    its duration, which is known only when the keyframe that closes it comes. Completing it
    then is one format and one concatenation instead of a whole render, on the path from
    that keyframe to the playlist that lists the segment."""

    upcoming: Segment
    """The open segment as it will be listed, with a duration of 0."""
    target_duration: int
    head: str
    """The text up to the open segment's EXTINF."""
    uri: str

    def fits(self, segment: Segment, target_duration: int) -> bool:
        """Whether `segment`, now closed, is the one drafted, under the same target duration
        (a longer segment can raise it)."""
        upcoming = self.upcoming
        return (
            target_duration == self.target_duration
            and segment.sequence == upcoming.sequence
            and segment.program_date_time == upcoming.program_date_time
            and segment.discontinuity == upcoming.discontinuity
            and segment.discontinuity_sequence == upcoming.discontinuity_sequence
        )

    def complete(self, duration: float) -> str:
        """`render_media_playlist` of the drafted segments, the last one `duration` long."""
        return f"{self.head}#EXTINF:{duration:.3f},\n{self.uri}\n"


def draft_media_playlist(
    listed: Sequence[Segment],
    upcoming: Segment,
    *,
    target_duration: int,
    segment_uri: SegmentUri = "{sequence}.ts",
) -> PlaylistDraft:
    """The draft of the live playlist listing `listed`, then `upcoming` (the open segment,
    its duration to come)."""
    upcoming = replace(upcoming, duration=0.0, data=b"", parts=())
    uri = _uri_maker(segment_uri)
    lines = _media_head([*listed, upcoming], target_duration)
    _segment_lines(lines, listed, uri)
    _date_lines(lines, upcoming)
    return PlaylistDraft(upcoming, target_duration, "\n".join(lines) + "\n", uri(upcoming))


class Variant(NamedTuple):
    """One EXT-X-STREAM-INF entry of a multivariant playlist."""

    uri: str
    bandwidth: int
    """Peak bits per second."""
    codecs: str
    """RFC 6381 codec strings joined by commas, e.g. "avc1.64001f,mp4a.40.2"."""
    resolution: tuple[int, int] | None


VariantLike = Variant | tuple[str, int, str, tuple[int, int] | None]


def render_multivariant_playlist(variants: Iterable[VariantLike]) -> str:
    """A multivariant playlist; identical variants on several nodes are redundant streams
    (RFC 8216 §6.3.2) that players fail over between."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}"]
    for uri, bandwidth, codecs, resolution in variants:
        attributes = [f"BANDWIDTH={int(bandwidth)}"]
        if codecs:
            attributes.append(f'CODECS="{codecs}"')
        if resolution is not None:
            attributes.append(f"RESOLUTION={resolution[0]}x{resolution[1]}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(uri)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """The segment being made in low-latency mode: the parts it has so far."""

    sequence: int
    parts: tuple[Part, ...]
    program_date_time: float
    discontinuity: bool
    discontinuity_sequence: int


def _decimal(seconds: float) -> str:
    return f"{seconds:.3f}"


def skipped_segments(segments: Sequence[Segment], skip_until: float) -> int:
    """How many of the oldest segments a delta update replaces with EXT-X-SKIP: each one
    followed by at least `skip_until` seconds of segments."""
    remaining = sum(segment.duration for segment in segments)
    count = 0
    for segment in segments:
        remaining -= segment.duration
        if remaining < skip_until:
            break
        count += 1
    return count


def render_ll_media_playlist(
    segments: Sequence[Segment],
    *,
    open_segment: OpenSegment | None,
    target_duration: int,
    part_target: float,
    ended: bool,
    skip: bool = False,
    segment_uri: str = "{sequence}.ts",
    part_uri: str = "{sequence}.{part}.ts",
) -> str:
    """A low-latency media playlist (`skip`: its delta update). Deterministic in its inputs,
    so every node holding the same segments and parts writes the same bytes."""
    skip_until = SKIP_UNTIL_TARGETS * target_duration
    first_sequence = segments[0].sequence if segments else None
    if first_sequence is not None:
        first = segments[0]
        media_sequence = first_sequence
        discontinuity_sequence = first.discontinuity_sequence - int(first.discontinuity)
    elif open_segment is not None:
        media_sequence = open_segment.sequence
        discontinuity_sequence = open_segment.discontinuity_sequence - int(
            open_segment.discontinuity
        )
    else:
        media_sequence = discontinuity_sequence = 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{LL_HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={_decimal(skip_until)},"
        f"PART-HOLD-BACK={_decimal(PART_HOLD_BACK_PARTS * part_target)}",
        f"#EXT-X-PART-INF:PART-TARGET={_decimal(part_target)}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    skipped = skipped_segments(segments, skip_until) if skip else 0
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

    # Parts are listed for the newest segments only (§4.4.4.9: older ones SHOULD be removed).
    with_parts = len(segments)
    tail = 0.0
    for index in range(len(segments) - 1, -1, -1):
        if tail >= PART_LIST_TARGETS * target_duration:
            break
        with_parts = index
        tail += segments[index].duration

    def add_parts(sequence: int, parts: Sequence[Part]) -> None:
        for number, part in enumerate(parts):
            uri = part_uri.format(sequence=sequence, part=number)
            independent = ",INDEPENDENT=YES" if part.independent else ""
            lines.append(
                f'#EXT-X-PART:DURATION={_decimal(part.duration)},URI="{uri}"{independent}'
            )

    listed = segments[skipped:]
    for offset, segment in enumerate(listed):
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(
            f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.program_date_time)}"
        )
        if skipped + offset >= with_parts:
            add_parts(segment.sequence, segment.parts)
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(segment_uri.format(sequence=segment.sequence))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    elif open_segment is not None:
        if open_segment.parts:
            if open_segment.discontinuity and listed:
                lines.append("#EXT-X-DISCONTINUITY")
            pdt = format_program_date_time(open_segment.program_date_time)
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt}")
            add_parts(open_segment.sequence, open_segment.parts)
        hint = part_uri.format(sequence=open_segment.sequence, part=len(open_segment.parts))
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    return "\n".join(lines) + "\n"


BlockDecision = Literal["ready", "wait", "bad"]


def block_decision(
    msn: int, part: int | None, *, next_sequence: int, open_parts: int, ended: bool
) -> BlockDecision:
    """Whether a blocking playlist reload for segment `msn` (part `part`) can be answered.

    `next_sequence` is the open segment (the one after the newest complete segment) and
    `open_parts` how many parts it has. Ready once the playlist holds the segment, or that part
    of it, or anything later; "bad" (400) when it is further ahead than the spec lets a client
    ask: two segments past the newest complete one, or ADVANCE_PART_LIMIT parts past the newest
    part.
    """
    if ended or msn < next_sequence:
        return "ready"
    if msn > next_sequence + 1:
        return "bad"
    if msn == next_sequence and part is not None:
        if part < open_parts:
            return "ready"
        if part >= open_parts + ADVANCE_PART_LIMIT:
            return "bad"
    return "wait"
