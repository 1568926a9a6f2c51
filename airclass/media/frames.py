"""The frames that travel from ingest to packaging.

These are the only types the RTMP side and the HLS side share. Timestamps are integer
milliseconds on the publisher's clock (RTMP's unit), already reassembled into absolute values;
they are not yet unwrapped or checked for jumps: that is the packager's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MediaKind = Literal["video", "audio"]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A video decoder configuration, sent before the first frame and again when it changes."""

    codec: str
    """Codec name as PyAV/FFmpeg spells it: "h264" (AVC) is the one we package."""
    record: bytes
    """The codec's configuration record as sent by the publisher: for H.264 the
    AVCDecoderConfigurationRecord (avcC) with the SPS and PPS."""


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """An audio decoder configuration, sent before the first frame."""

    codec: str
    """Codec name as PyAV/FFmpeg spells it: "aac" is the one we package."""
    record: bytes
    """For AAC the AudioSpecificConfig (ISO 14496-3), two or more bytes."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One coded access unit: a video picture or an audio frame."""

    kind: MediaKind
    dts: int
    """Decode time in milliseconds (the RTMP message timestamp)."""
    pts: int
    """Presentation time in milliseconds (dts + composition time offset for video)."""
    keyframe: bool
    """True for an IDR picture (video); always True for audio frames."""
    data: bytes
    """Video: AVCC, length-prefixed NAL units, as in FLV. Audio: one raw AAC frame, no ADTS."""


@dataclass(frozen=True, slots=True)
class KeyframeComing:
    """A video keyframe's first bytes are in, the rest is on its way: its timestamps are known
    (the segment it closes can be closed now). A hint; the Frame follows when complete."""

    dts: int
    pts: int


MediaEvent = VideoConfig | AudioConfig | Frame | KeyframeComing
