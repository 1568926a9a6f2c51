"""Realistic media for HLS tests: a test pattern encoded the way OBS does it (H.264 High with
B-frames, fixed GOP, AAC-LC 48 kHz stereo), muxed to FLV in memory and read back, so frames are
exactly what an RTMP publisher sends: AVCC video, raw AAC, millisecond timestamps."""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av
import numpy as np

from airclass.media.frames import AudioConfig, Frame, MediaKind, VideoConfig

SAMPLE_RATE = 48000
AAC_FRAME_SAMPLES = 1024


def make_test_frames(
    seconds: float,
    fps: int = 25,
    gop: int = 50,
    width: int = 320,
    height: int = 240,
    *,
    bframes: int = 2,
) -> tuple[VideoConfig, AudioConfig, list[Frame]]:
    """`seconds` of video and audio as an RTMP publisher would send them (FLV order)."""
    video, audio, frames = _encode(seconds, fps, gop, width, height, bframes)
    return video, audio, list(frames)


@functools.lru_cache(maxsize=16)
def _encode(
    seconds: float, fps: int, gop: int, width: int, height: int, bframes: int
) -> tuple[VideoConfig, AudioConfig, tuple[Frame, ...]]:
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        vstream = out.add_stream("libx264", rate=fps)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        vstream.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}",
        }
        astream = out.add_stream("aac", rate=SAMPLE_RATE)
        astream.layout = "stereo"
        n_video = round(seconds * fps)
        n_audio = round(seconds * SAMPLE_RATE / AAC_FRAME_SAMPLES)
        ramp_x = np.arange(width, dtype=np.uint16)
        ramp_y = (np.arange(height, dtype=np.uint16) * 2 % 256).astype(np.uint8)
        t = np.arange(AAC_FRAME_SAMPLES)
        vi = ai = 0
        while vi < n_video or ai < n_audio:
            if vi < n_video and (ai >= n_audio or vi / fps <= ai * AAC_FRAME_SAMPLES / SAMPLE_RATE):
                img = np.empty((height, width, 3), np.uint8)
                img[:, :, 0] = ((ramp_x + vi * 4) % 256).astype(np.uint8)
                img[:, :, 1] = ramp_y[:, None]
                img[:, :, 2] = vi % 256
                vframe = av.VideoFrame.from_ndarray(img, format="rgb24")
                vframe.pts = vi
                vframe.time_base = Fraction(1, fps)
                out.mux(vstream.encode(vframe))
                vi += 1
            else:
                phase = (t + ai * AAC_FRAME_SAMPLES) / SAMPLE_RATE
                tone = (0.2 * np.sin(2 * np.pi * 440 * phase)).astype(np.float32)
                aframe = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]), format="fltp", layout="stereo"
                )
                aframe.sample_rate = SAMPLE_RATE
                aframe.pts = ai * AAC_FRAME_SAMPLES
                aframe.time_base = Fraction(1, SAMPLE_RATE)
                out.mux(astream.encode(aframe))
                ai += 1
        out.mux(vstream.encode(None))
        out.mux(astream.encode(None))
    buf.seek(0)
    frames: list[Frame] = []
    with av.open(buf, "r", format="flv") as inp:
        video = VideoConfig("h264", bytes(inp.streams.video[0].codec_context.extradata or b""))
        audio = AudioConfig("aac", bytes(inp.streams.audio[0].codec_context.extradata or b""))
        for packet in inp.demux():
            if packet.size == 0 or packet.dts is None or packet.pts is None:
                continue
            kind: MediaKind = "video" if packet.stream.type == "video" else "audio"
            frames.append(
                Frame(
                    kind=kind,
                    dts=int(packet.dts),
                    pts=int(packet.pts),
                    keyframe=bool(packet.is_keyframe) or kind == "audio",
                    data=bytes(packet),
                )
            )
    return video, audio, tuple(frames)


def shifted(frames: list[Frame], offset_ms: int) -> list[Frame]:
    """The same frames `offset_ms` later (a stream that has been running for a while)."""
    return [
        Frame(f.kind, f.dts + offset_ms, f.pts + offset_ms, f.keyframe, f.data) for f in frames
    ]
