"""HLS packaging costs per segment: run with
`python -m pytest benchmarks/bench_hls.py --benchmark-only` from the repository root.

Test-pattern video compresses to almost nothing, so frames are padded with H.264 filler-data
NAL units (what OBS sends in CBR mode) to the bitrate of a real 720p classroom stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airclass.hls.mpegts import PID_SDT, SYNC_BYTE, TS_PACKET_SIZE, FreshCounters, TsContinuity
from airclass.hls.muxer import mux_segment
from airclass.hls.packager import HlsPackager, PackagerConfig
from airclass.hls.playlist import render_media_playlist
from airclass.hls.ring import Segment
from airclass.media.bitstream import parse_asc, parse_avcc
from airclass.media.frames import Frame, KeyframeComing
from tests.hls.conftest import make_test_frames, shifted

FPS = 25
NAL_FILLER = 12


def pad_to_bitrate(frames: list[Frame], bits_per_second: int | None) -> list[Frame]:
    if bits_per_second is None:
        return frames
    per_frame = bits_per_second // 8 // FPS
    out = []
    for f in frames:
        missing = per_frame - len(f.data) - 5
        if f.kind == "video" and missing > 0:
            filler = bytes([NAL_FILLER]) + b"\xff" * (missing - 1) + b"\x80"
            f = Frame(f.kind, f.dts, f.pts, f.keyframe, f.data + len(filler).to_bytes(4, "big")
                      + filler)
        out.append(f)
    return out


def segment_720p(bits_per_second: int | None) -> tuple[Any, Any, list[Frame]]:
    """The first 2-s GOP of a 720p stream with AAC, as the segmenter hands it over."""
    video, audio, frames = make_test_frames(2.2, fps=FPS, gop=50, width=1280, height=720)
    keys = [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe]
    frames = pad_to_bitrate(frames[keys[0] : keys[1]], bits_per_second)
    return parse_avcc(video.record), parse_asc(audio.record), frames


@pytest.mark.parametrize("bitrate", [None, 2_500_000, 6_000_000], ids=["pattern", "2.5M", "6M"])
def test_mux_segment_720p_2s(benchmark: Any, bitrate: int | None) -> None:
    video, audio, frames = segment_720p(bitrate)
    data = benchmark(mux_segment, frames, video, audio)
    benchmark.extra_info["segment_bytes"] = len(data)
    benchmark.extra_info["frames"] = len(frames)


def test_continuity_rewrite_720p_2s(benchmark: Any) -> None:
    video, audio, frames = segment_720p(2_500_000)
    data = mux_segment(frames, video, audio)
    state = TsContinuity()
    out = benchmark(state.rewrite, data)
    assert len(out) == len(data)


def test_fresh_counters_720p_2s(benchmark: Any) -> None:
    """What `SegmentMuxer` does 64 KiB at a time as FFmpeg writes (`FreshCounters`): drop the
    SDT and carry the counters on, here over a whole 2 s segment at once (compare with
    `test_continuity_rewrite_720p_2s`)."""
    video, audio, frames = segment_720p(2_500_000)
    data = mux_segment(frames, video, audio)
    sdt = bytes([SYNC_BYTE, PID_SDT >> 8, PID_SDT & 0xFF, 0x10]).ljust(TS_PACKET_SIZE, b"\xff")
    carried = TsContinuity()
    carried.rewrite(data)

    def take() -> bytes:
        raw = bytearray(sdt + data)
        return FreshCounters(carried).take(raw, len(raw))

    out = benchmark(take)
    assert out == carried.copy().rewrite(data)


def test_render_media_playlist(benchmark: Any) -> None:
    segments = [
        Segment(1000 + i, 2.0, b"", 1_800_000_000.0 + 2 * i, i == 3, 5 + (i >= 3))
        for i in range(6)
    ]
    text = benchmark(render_media_playlist, segments, target_duration=2, ended=False)
    assert "#EXT-X-DISCONTINUITY" in text


def test_packager_per_segment_720p(benchmark: Any) -> None:
    """Everything one segment costs the ingest path: segmenter, mux, continuity, ring,
    playlist and gzip."""
    video_config, audio_config, frames = make_test_frames(
        4.0, fps=FPS, gop=50, width=1280, height=720
    )
    frames = pad_to_bitrate(frames, 2_500_000)
    packager = HlsPackager(PackagerConfig(), lambda: 1_800_000_000.0)
    packager.on_publish_start()
    packager.on_event(video_config)
    packager.on_event(audio_config)
    rounds = iter(range(10**6))

    def one_round() -> None:
        # two GOPs per round: the second keyframe closes one segment
        offset = next(rounds) * 4000
        for frame in shifted(frames, offset):
            packager.on_event(frame)

    benchmark.pedantic(one_round, rounds=10, iterations=1)
    benchmark.extra_info["segments_made"] = packager.segments_made
    assert packager.mux_errors == 0


def _rounds_to_the_cut(
    keyframe_comes_later: bool,
) -> tuple[HlsPackager, Callable[[], Frame]]:
    """A plain-HLS packager some segments into a 720p stream, and a function that feeds it the
    next round's frames (two GOPs a round) up to the keyframe that closes a segment, and
    returns that keyframe. With `keyframe_comes_later`, the keyframe itself is fed with the
    next round (the round measured only announces it)."""
    video_config, audio_config, frames = make_test_frames(
        4.0, fps=FPS, gop=50, width=1280, height=720
    )
    frames = pad_to_bitrate([f for f in frames if f.dts < 4000], 2_500_000)
    keyframe = [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe][1]
    packager = HlsPackager(PackagerConfig(), lambda: 1_800_000_000.0)
    packager.on_publish_start()
    packager.on_event(video_config)
    packager.on_event(audio_config)
    for frame in frames:
        packager.on_event(frame)
    rounds = iter(range(1, 10**6))
    after_the_cut: list[Frame] = []

    def next_cut() -> Frame:
        round_frames = list(shifted(frames, next(rounds) * 4000))
        for frame in [*after_the_cut, *round_frames[:keyframe]]:
            packager.on_event(frame)
        after_the_cut[:] = round_frames[keyframe if keyframe_comes_later else keyframe + 1 :]
        return round_frames[keyframe]

    return packager, next_cut


def test_packager_cut_720p(benchmark: Any) -> None:
    """The keyframe that closes a plain-HLS segment: what stands between the publisher's
    frame and the playlist that lists the segment (the rest was muxed as it arrived)."""
    packager, next_cut = _rounds_to_the_cut(keyframe_comes_later=False)

    def cut(frame: Frame) -> None:
        made = packager.segments_made
        packager.on_event(frame)
        assert packager.segments_made == made + 1

    benchmark.pedantic(cut, setup=lambda: ((next_cut(),), {}), rounds=20, iterations=1)
    assert packager.segments_muxed_ahead == packager.segments_made
    assert packager.mux_errors == 0


def test_packager_announced_cut_720p(benchmark: Any) -> None:
    """The first chunk of the keyframe that closes a plain-HLS segment: from its announcement
    to the playlist that lists the segment (drafted while the segment was open)."""
    packager, next_cut = _rounds_to_the_cut(keyframe_comes_later=True)

    def setup() -> tuple[tuple[KeyframeComing], dict[str, Any]]:
        closing = next_cut()
        return (KeyframeComing(closing.dts, closing.pts),), {}

    def announce(coming: KeyframeComing) -> None:
        made = packager.segments_made
        packager.on_event(coming)
        assert packager.segments_made == made + 1

    benchmark.pedantic(announce, setup=setup, rounds=20, iterations=1)
    assert packager.playlists_drafted == packager.segments_made
    assert packager.mux_errors == 0
