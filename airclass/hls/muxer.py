"""MPEG-TS muxing with PyAV: the only module of the HLS side that imports av.

Remux only: frames are converted to their in-band forms in Python (Annex-B with SPS/PPS before
keyframes, ADTS-framed AAC) and handed to FFmpeg's MPEG-TS muxer as packets. Timestamps are
the publisher's milliseconds, unshifted (`mpegts_copyts`), so that consecutive segments muxed
by separate containers form one continuous timeline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from fractions import Fraction

import av

from airclass.hls.mpegts import TS_PACKET_SIZE, FreshCounters, TsContinuity, TsError
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

TAKE_AT = 64 * 1024
"""Bytes of muxed output finished at a time while a segment grows (stripped of its SDT and
given its continuity counters, `FreshCounters`): each time has a fixed cost however little it
finishes (numpy calls), and the close finishes what is left, up to this much."""

# FFmpeg's own logging stays at PyAV's default (off): muxing problems surface as exceptions.
_TS_OPTIONS = {"mpegts_copyts": "1"}


class MuxError(Exception):
    """A segment could not be muxed."""


def mux_segment(
    frames: Iterable[Frame],
    video: AvcInfo | None,
    audio: AacInfo | None,
    continuity: TsContinuity | None = None,
) -> bytes:
    """One self-contained MPEG-TS segment (PAT and PMT first) holding `frames`.

    Frames of a kind whose info is None are skipped. Counters in the result start at 0, or
    carry on from `continuity` (which is then advanced past the segment).
    """
    muxer = SegmentMuxer(video, audio, continuity)
    try:
        for frame in frames:
            muxer.add(frame)
    except MuxError:
        muxer.abandon()
        raise
    data = muxer.finish()
    if continuity is not None:
        continuity.take(muxer.continuity)
    return data


class _Sink:
    """Where FFmpeg writes the segment: its output, unread so far."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class SegmentMuxer:
    """`mux_segment` a frame at a time: frames can be muxed as they arrive, so that closing
    the segment costs only its last few frames. The bytes are those `mux_segment` makes of the
    same frames (FFmpeg's MPEG-TS muxer writes as it goes), and so is the rest of the work:
    whole packets are stripped of the SDT and given their continuity counters as FFmpeg
    writes them.

    Counters carry on from `continuity` as it is now: `continuity` itself is left alone, and
    `self.continuity` is the state after what was muxed (`started_from`, before).
    `add` and `finish` raise MuxError; after one, or instead of `finish`, call `abandon`.
    """

    __slots__ = (
        "_chunks", "_counters", "_last_dts", "_out", "_sink", "_streams", "audio", "continuity",
        "frames", "started_from", "video",
    )

    def __init__(
        self,
        video: AvcInfo | None,
        audio: AacInfo | None,
        continuity: TsContinuity | None = None,
    ) -> None:
        if video is None and audio is None:
            raise MuxError("a segment needs a video or an audio track")
        self.video = video
        self.audio = audio
        self.frames: list[Frame] = []
        """What was added, in order (frames of a track without info included)."""
        self.started_from = continuity.copy() if continuity is not None else TsContinuity()
        self._counters = FreshCounters(self.started_from)
        self.continuity = self._counters.state
        self._sink = _Sink()
        self._chunks: list[bytes] = []
        """The segment's finished bytes so far."""
        self._last_dts: dict[str, int] = {}
        try:
            self._out = av.open(self._sink, "w", format="mpegts", options=_TS_OPTIONS)
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
        self._take_packets()

    def finish(self) -> bytes:
        """Close the segment; its bytes."""
        try:
            self._out.close()
        except av.FFmpegError as exc:
            raise MuxError(str(exc)) from exc
        self._take_packets(least=0)
        if self._sink.data:
            raise MuxError(f"{len(self._sink.data)} bytes of a TS packet left at the end")
        return self.finished_bytes()

    def finished_bytes(self) -> bytes:
        """The whole packets finished so far (what a failed segment can still keep)."""
        return b"".join(self._chunks)

    def abandon(self) -> None:
        """Close the container and drop what it made."""
        with contextlib.suppress(av.FFmpegError):
            self._out.close()

    def _take_packets(self, least: int = TAKE_AT) -> None:
        """Finish the whole packets FFmpeg has written, once there are `least` bytes of them
        (FFmpeg writes each frame as it is muxed)."""
        pending = self._sink.data
        if len(pending) < max(least, TS_PACKET_SIZE):
            return
        end = len(pending) - len(pending) % TS_PACKET_SIZE
        try:
            self._chunks.append(self._counters.take(pending, end))
        except TsError as exc:
            raise MuxError(str(exc)) from exc
        del pending[:end]


def _payload(frame: Frame, video: AvcInfo | None, audio: AacInfo | None) -> bytes:
    """The frame in its MPEG-TS form: Annex-B (SPS/PPS before keyframes) or ADTS-framed AAC."""
    if frame.kind == "video":
        assert video is not None
        parameter_sets = video.parameter_sets if frame.keyframe else ()
        return avcc_to_annexb(frame.data, video.nal_length_size, parameter_sets)
    assert audio is not None
    return adts_header(audio, len(frame.data)) + frame.data
