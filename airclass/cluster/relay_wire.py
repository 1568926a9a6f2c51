"""The relay's wire format: one segment or part of a live stream, with its metadata, between
an origin and an edge (docs/design.md §2 "One stream, every node").

Pure: headers and bytes in, dataclasses out, and back; `parse_segment` and `parse_part` are the
inverses of `segment_headers` and `part_headers` (tests/cluster/test_relay_wire.py holds the
round trip) and raise `RelayError` on anything malformed.

Origin endpoints (on the slave's app, signed with CLUSTER_KEY by `airclass.cluster.signing`
over method, path with query and an empty body; viewer tokens and sessions never work here)::

    GET /cluster/relay/<app>/<stream>/state
        JSON: the ring (one entry per servable segment, oldest first) and the stream's state.
    GET /cluster/relay/<app>/<stream>?after=<seq>&wait=<s>&ended=<0|1>
        Long poll. 200 with the first segment whose sequence is above `after` (the ring's
        oldest if `after` is older than the ring) as soon as it exists; body = the segment's
        exact bytes, metadata in `X-AIRClass-*` headers. 204 when `wait` seconds pass without
        one, or at once if the origin's ENDLIST state differs from the caller's `ended`.
        409 if `after` is ahead of the origin's newest segment (its numbering restarted).
        With `&part=<n>` (an LL-HLS edge holding parts 0..n-1 of segment after+1), a part of
        the origin's open segment is an answer too: 200 with the part's bytes and
        `X-AIRClass-Part` (its index) as soon as part n exists. A finished segment's reply
        lists its parts (`X-AIRClass-Parts`: duration/size/independent each, in order; the
        body is their bytes joined), so an edge that joined late serves the same parts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from airclass.hls.ring import Part, Segment
from airclass.media.names import NAME

if TYPE_CHECKING:
    from airclass.streams import LiveStream

RELAY_PREFIX: Final = "/cluster/relay"
DEFAULT_WAIT: Final = 10.0
"""Seconds a long poll waits for the next segment before a 204."""
MAX_WAIT: Final = 20.0
ROUTE: Final = f"{RELAY_PREFIX}/{{app:{NAME}}}/{{stream:{NAME}}}"
"""The relay endpoints' route (aiohttp's form); `/state` after it for the ring."""

H_SEQUENCE: Final = "X-AIRClass-Sequence"
H_DURATION: Final = "X-AIRClass-Duration"
H_PDT: Final = "X-AIRClass-Program-Date-Time"
H_DISCONTINUITY: Final = "X-AIRClass-Discontinuity"
H_DISC_SEQUENCE: Final = "X-AIRClass-Discontinuity-Sequence"
H_TARGET: Final = "X-AIRClass-Target-Duration"
H_ENDED: Final = "X-AIRClass-Ended"
H_NEWEST: Final = "X-AIRClass-Newest"
H_VIDEO_CODEC: Final = "X-AIRClass-Video-Codec"
H_AUDIO_CODEC: Final = "X-AIRClass-Audio-Codec"
H_RESOLUTION: Final = "X-AIRClass-Resolution"
H_NODE: Final = "X-AIRClass-Node"
H_PART: Final = "X-AIRClass-Part"
H_PART_DURATION: Final = "X-AIRClass-Part-Duration"
H_PART_INDEPENDENT: Final = "X-AIRClass-Part-Independent"
H_PARTS: Final = "X-AIRClass-Parts"
H_PART_TARGET: Final = "X-AIRClass-Part-Target"
MAX_PARTS: Final = 200

_CODEC_RE: Final = re.compile(r"[A-Za-z0-9.]{1,32}")


class RelayError(Exception):
    """The origin's reply cannot be used; the follower reconnects."""


@dataclass(frozen=True, slots=True)
class RelayedSegment:
    """One segment as the origin sent it, with the stream state that travels with it."""

    segment: Segment
    target_duration: int
    ended: bool
    video_codec: str | None
    audio_codec: str | None
    resolution: tuple[int, int] | None
    part_target: float | None = None


@dataclass(frozen=True, slots=True)
class RelayedPart:
    """One part of the origin's open segment, with that segment's metadata."""

    sequence: int
    index: int
    part: Part
    program_date_time: float
    discontinuity: bool
    target_duration: int
    part_target: float | None
    ended: bool


def part_headers(stream: LiveStream, index: int, part: Part, node_id: str) -> dict[str, str]:
    """Headers of a part reply: the part's own numbers and its open segment's."""
    packager = stream.packager
    open_segment = packager.open_segment()
    return {
        H_SEQUENCE: str(open_segment.sequence),
        H_PART: str(index),
        H_PART_DURATION: repr(part.duration),
        H_PART_INDEPENDENT: "1" if part.independent else "0",
        H_PDT: repr(open_segment.program_date_time),
        H_DISCONTINUITY: "1" if open_segment.discontinuity else "0",
        H_PART_TARGET: repr(packager.part_target),
        H_NODE: node_id,
        **state_headers(stream),
    }


def parse_part(headers: Mapping[str, str], body: bytes) -> RelayedPart:
    """The inverse of `part_headers`; raises RelayError on anything malformed."""
    duration = _header_float(headers, H_PART_DURATION)
    pdt = _header_float(headers, H_PDT)
    if duration < 0 or pdt < 0:
        raise RelayError("negative part duration or program date time")
    return RelayedPart(
        sequence=_header_int(headers, H_SEQUENCE),
        index=_header_int(headers, H_PART),
        part=Part(duration, body, headers.get(H_PART_INDEPENDENT) == "1"),
        program_date_time=pdt,
        discontinuity=headers.get(H_DISCONTINUITY) == "1",
        target_duration=max(1, _header_int(headers, H_TARGET)),
        part_target=_part_target(headers),
        ended=headers.get(H_ENDED) == "1",
    )


def _part_target(headers: Mapping[str, str]) -> float | None:
    if H_PART_TARGET not in headers:
        return None
    value = _header_float(headers, H_PART_TARGET)
    if not 0 < value <= 60:
        raise RelayError(f"bad {H_PART_TARGET}")
    return value


def _parts_header(parts: tuple[Part, ...]) -> str:
    return ",".join(
        f"{part.duration!r}/{len(part.data)}/{int(part.independent)}" for part in parts
    )


def _split_parts(value: str, body: bytes) -> tuple[Part, ...]:
    """A segment's parts from `X-AIRClass-Parts` and the segment bytes (their join)."""
    if not value:
        return ()
    entries = value.split(",")
    if len(entries) > MAX_PARTS:
        raise RelayError(f"more than {MAX_PARTS} parts")
    parts: list[Part] = []
    offset = 0
    for entry in entries:
        fields = entry.split("/")
        if len(fields) != 3 or not fields[1].isdigit() or fields[2] not in ("0", "1"):
            raise RelayError(f"bad {H_PARTS}")
        try:
            duration = float(fields[0])
        except ValueError:
            raise RelayError(f"bad {H_PARTS}") from None
        if not 0 <= duration < 1e6:
            raise RelayError(f"bad {H_PARTS}")
        size = int(fields[1])
        parts.append(Part(duration, body[offset : offset + size], fields[2] == "1"))
        offset += size
    if offset != len(body):
        raise RelayError(f"{H_PARTS} sizes add up to {offset}, not {len(body)}")
    return tuple(parts)


def segment_headers(segment: Segment, stream: LiveStream, node_id: str) -> dict[str, str]:
    """Headers carrying a segment's metadata; floats in repr() so they round-trip exactly."""
    packager = stream.packager
    headers = {
        H_SEQUENCE: str(segment.sequence),
        H_DURATION: repr(segment.duration),
        H_PDT: repr(segment.program_date_time),
        H_DISCONTINUITY: "1" if segment.discontinuity else "0",
        H_DISC_SEQUENCE: str(segment.discontinuity_sequence),
        H_NODE: node_id,
        **state_headers(stream),
    }
    if packager.video_codec:
        headers[H_VIDEO_CODEC] = packager.video_codec
    if packager.audio_codec:
        headers[H_AUDIO_CODEC] = packager.audio_codec
    if packager.resolution:
        headers[H_RESOLUTION] = f"{packager.resolution[0]}x{packager.resolution[1]}"
    if segment.parts:
        headers[H_PARTS] = _parts_header(segment.parts)
    if packager.low_latency:
        headers[H_PART_TARGET] = repr(packager.part_target)
    return headers


def state_headers(stream: LiveStream) -> dict[str, str]:
    packager = stream.packager
    newest = packager.newest_sequence
    return {
        H_TARGET: str(packager.target_duration),
        H_ENDED: "1" if packager.state == "ended" else "0",
        H_NEWEST: "" if newest is None else str(newest),
    }


def parse_segment(headers: Mapping[str, str], body: bytes) -> RelayedSegment:
    """The inverse of `segment_headers`; raises RelayError on anything malformed."""
    sequence = _header_int(headers, H_SEQUENCE)
    disc_sequence = _header_int(headers, H_DISC_SEQUENCE)
    duration = _header_float(headers, H_DURATION)
    pdt = _header_float(headers, H_PDT)
    if duration < 0 or pdt < 0:
        raise RelayError("negative duration or program date time")
    disc = headers.get(H_DISCONTINUITY)
    if disc not in ("0", "1"):
        raise RelayError(f"bad {H_DISCONTINUITY}")
    return RelayedSegment(
        segment=Segment(
            sequence=sequence,
            duration=duration,
            data=body,
            program_date_time=pdt,
            discontinuity=disc == "1",
            discontinuity_sequence=disc_sequence,
            parts=_split_parts(headers.get(H_PARTS, ""), body),
        ),
        target_duration=max(1, _header_int(headers, H_TARGET)),
        ended=headers.get(H_ENDED) == "1",
        video_codec=_codec(headers.get(H_VIDEO_CODEC)),
        audio_codec=_codec(headers.get(H_AUDIO_CODEC)),
        resolution=_resolution(headers.get(H_RESOLUTION)),
        part_target=_part_target(headers),
    )


def _header_int(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name, "")
    if not value.isdigit() or len(value) > 15:
        raise RelayError(f"bad {name}")
    return int(value)


def _header_float(headers: Mapping[str, str], name: str) -> float:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        raise RelayError(f"bad {name}") from None
    if not math.isfinite(value):
        raise RelayError(f"bad {name}")
    return value


def _codec(value: str | None) -> str | None:
    return value if value and _CODEC_RE.fullmatch(value) else None


def _resolution(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    width, _, height = value.partition("x")
    if not (width.isdigit() and height.isdigit() and len(width) <= 5 and len(height) <= 5):
        return None
    return int(width), int(height)


def segment_summary(segment: Segment) -> dict[str, Any]:
    """A ring entry in the state reply: enough to tell whether two nodes hold the same one."""
    return {
        "sequence": segment.sequence,
        "duration": segment.duration,
        "program_date_time": segment.program_date_time,
        "discontinuity": segment.discontinuity,
        "discontinuity_sequence": segment.discontinuity_sequence,
        "size": len(segment.data),
    }
