"""HLS playlist text (RFC 8216). Pure.

Version 3 is enough: it is the version that allows decimal EXTINF durations, and nothing else
written here (PROGRAM-DATE-TIME, DISCONTINUITY, DISCONTINUITY-SEQUENCE, ENDLIST) needs more.

Target duration: RFC 8216 §4.3.3.1 requires every EXTINF, rounded to the nearest integer, to be
at most EXT-X-TARGETDURATION. `TargetDuration` keeps max(ceil(configured target), nearest-
integer rounding of the longest segment ever seen) and never lets it decrease. Rounding to
nearest rather than up keeps a 2.002-s segment (29.97 fps) under a target of 2, since players
pace their reloads and live edge on the target duration. The target only grows when a segment
longer than any before it appears (an encoder keyframe interval above the configured target).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from airclass.hls.ring import Segment

HLS_VERSION = 3

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


def format_program_date_time(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-27T16:31:04.123Z."""
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
    uri = _uri_maker(segment_uri)
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
    for index, segment in enumerate(segments):
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if index == 0 or segment.discontinuity:
            lines.append(
                f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.program_date_time)}"
            )
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(uri(segment))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


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
