"""MPEG-TS muxing with PyAV: the only module of the HLS side that imports av.

Remux only: frames are converted to their in-band forms in Python (Annex-B with SPS/PPS before
keyframes, ADTS-framed AAC) and handed to FFmpeg's MPEG-TS muxer as packets. Timestamps are
the publisher's milliseconds, unshifted (`mpegts_copyts`), so that consecutive segments muxed
by separate containers form one continuous timeline.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable
from fractions import Fraction

import av

from airclass.hls.mpegts import TsError, strip_pids
from airclass.media.bitstream import (
    AacInfo,
    AvcInfo,
    BitstreamError,
    adts_header,
    avcc_to_annexb,
)
from airclass.media.frames import Frame

log = logging.getLogger(__name__)

MILLISECONDS = Fraction(1, 1000)

# FFmpeg's own logging stays at PyAV's default (off): muxing problems surface as exceptions.
_TS_OPTIONS = {"mpegts_copyts": "1"}


class MuxError(Exception):
    """A segment could not be muxed."""


def mux_segment(
    frames: Iterable[Frame], video: AvcInfo | None, audio: AacInfo | None
) -> bytes:
    """One self-contained MPEG-TS segment (PAT and PMT first) holding `frames`.

    Frames of a kind whose info is None are skipped. Counters in the result start at 0: run it
    through `TsContinuity.rewrite` to splice it after a previous segment.
    """
    muxer = SegmentMuxer(video, audio)
    try:
        for frame in frames:
            muxer.add(frame)
    except MuxError:
        muxer.abandon()
        raise
    return muxer.finish()


class SegmentMuxer:
    """`mux_segment` a frame at a time: frames can be muxed as they arrive, so that closing
    the segment costs only its last few frames. The bytes are those `mux_segment` makes of the
    same frames (FFmpeg's MPEG-TS muxer writes as it goes).

    `add` and `finish` raise MuxError; after one, or instead of `finish`, call `abandon`.
    """

    __slots__ = ("_buf", "_last_dts", "_out", "_streams", "audio", "frames", "video")

    def __init__(self, video: AvcInfo | None, audio: AacInfo | None) -> None:
        if video is None and audio is None:
            raise MuxError("a segment needs a video or an audio track")
        self.video = video
        self.audio = audio
        self.frames: list[Frame] = []
        """What was added, in order (frames of a track without info included)."""
        self._buf = io.BytesIO()
        self._last_dts: dict[str, int] = {}
        try:
            self._out = av.open(self._buf, "w", format="mpegts", options=_TS_OPTIONS)
        except av.FFmpegError as exc:
            raise MuxError(str(exc)) from exc
        try:
            self._streams = {
                "video": self._out.add_mux_stream("h264") if video is not None else None,
                "audio": (
                    self._out.add_mux_stream("aac", rate=audio.sample_rate)
                    if audio is not None
                    else None
                ),
            }
        except av.FFmpegError as exc:
            self.abandon()
            raise MuxError(str(exc)) from exc

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)
        stream = self._streams[frame.kind]
        if stream is None:
            return
        try:
            payload = _payload(frame, self.video, self.audio)
        except BitstreamError as exc:
            log.warning("skipping a %s frame at dts %d: %s", frame.kind, frame.dts, exc)
            return
        # FFmpeg rejects a whole segment over one repeated dts or a pts before its dts
        # (millisecond rounding, negative composition offsets): nudge by 1 ms instead.
        dts = frame.dts
        previous = self._last_dts.get(frame.kind)
        if previous is not None and dts <= previous:
            dts = previous + 1
        self._last_dts[frame.kind] = dts
        packet = av.Packet(payload)
        packet.stream = stream
        packet.time_base = MILLISECONDS
        packet.dts = dts
        packet.pts = max(frame.pts, dts)
        packet.is_keyframe = frame.keyframe
        try:
            self._out.mux(packet)
        except av.FFmpegError as exc:
            raise MuxError(str(exc)) from exc

    def finish(self) -> bytes:
        """Close the segment; its bytes."""
        try:
            self._out.close()
            return strip_pids(self._buf.getvalue())
        except (av.FFmpegError, TsError) as exc:
            raise MuxError(str(exc)) from exc

    def abandon(self) -> None:
        """Close the container and drop what it made."""
        with contextlib.suppress(av.FFmpegError):
            self._out.close()


def _payload(frame: Frame, video: AvcInfo | None, audio: AacInfo | None) -> bytes:
    """The frame in its MPEG-TS form: Annex-B (SPS/PPS before keyframes) or ADTS-framed AAC."""
    if frame.kind == "video":
        assert video is not None
        parameter_sets = video.parameter_sets if frame.keyframe else ()
        return avcc_to_annexb(frame.data, video.nal_length_size, parameter_sets)
    assert audio is not None
    return adts_header(audio, len(frame.data)) + frame.data
