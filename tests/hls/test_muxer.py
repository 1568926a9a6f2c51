from __future__ import annotations

import io
from dataclasses import dataclass

import av
import pytest

from airclass.hls import muxer as muxer_module
from airclass.hls.mpegts import TsContinuity
from airclass.hls.muxer import MuxError, SegmentMuxer, mux_segment
from airclass.media.bitstream import AacInfo, AvcInfo, parse_asc, parse_avcc
from airclass.media.frames import Frame
from tests.hls.conftest import make_test_frames, shifted
from tests.hls.tsutil import continuity_errors, packets, pes_timestamps

PID_PAT, PID_PMT, PID_VIDEO, PID_AUDIO = 0x0000, 0x1000, 0x0100, 0x0101


@dataclass
class Decoded:
    video: int = 0
    audio: int = 0
    corrupt: int = 0
    first_video_keyframe: bool | None = None


def decode(data: bytes) -> Decoded:
    result = Decoded()
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            result.corrupt += packet.is_corrupt
            if packet.stream.type == "video" and result.first_video_keyframe is None:
                result.first_video_keyframe = packet.is_keyframe
            for _ in packet.decode():
                if packet.stream.type == "video":
                    result.video += 1
                else:
                    result.audio += 1
        for stream in container.streams:
            for _ in stream.codec_context.decode(None):
                if stream.type == "video":
                    result.video += 1
                else:
                    result.audio += 1
    return result


def gops(seconds: float) -> tuple[AvcInfo, AacInfo, list[list[Frame]]]:
    """Fixture frames split at keyframes (2-s GOPs), as the segmenter would."""
    video, audio, frames = make_test_frames(seconds)
    keys = [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe]
    bounds = [*keys, len(frames)]
    chunks = [frames[bounds[i] : bounds[i + 1]] for i in range(len(keys))]
    return parse_avcc(video.record), parse_asc(audio.record), chunks


def count(frames: list[Frame], kind: str) -> int:
    return sum(f.kind == kind for f in frames)


def test_segment_starts_with_pat_pmt_and_a_keyframe_and_decodes_fully() -> None:
    video, audio, chunks = gops(4.0)
    frames = chunks[0]
    data = mux_segment(frames, video, audio)
    assert len(data) % 188 == 0
    pids = [p.pid for p in packets(data)]
    assert pids[:2] == [PID_PAT, PID_PMT]
    assert 0x11 not in pids  # no SDT
    first_pes = next(p.pid for p in packets(data) if p.pid in (PID_VIDEO, PID_AUDIO))
    assert first_pes == PID_VIDEO
    result = decode(data)
    assert result.first_video_keyframe is True
    assert result.corrupt == 0
    assert (result.video, result.audio) == (count(frames, "video"), count(frames, "audio"))
    assert result.video == 50 and result.audio > 80


def test_timestamps_are_the_publishers_in_every_segment() -> None:
    video, audio, chunks = gops(4.0)
    # The tenth segment of a stream (20 s in) must carry its timestamps with the same offset
    # (none) as the first.
    for frames in (chunks[0], shifted(chunks[1], 18_000)):
        data = mux_segment(frames, video, audio)
        expected_video = sorted((f.dts * 90, f.pts * 90) for f in frames if f.kind == "video")
        assert sorted(pes_timestamps(data, PID_VIDEO)) == expected_video
        audio_pes = pes_timestamps(data, PID_AUDIO)
        audio_dts = {f.dts * 90 for f in frames if f.kind == "audio"}
        # several AAC frames may share a PES: each PES starts at one of the frames
        assert audio_pes and {dts for dts, _ in audio_pes} <= audio_dts
        assert min(audio_pes)[0] == min(audio_dts)


def test_consecutive_segments_play_as_one_stream() -> None:
    video, audio, chunks = gops(6.0)
    raw = [mux_segment(frames, video, audio) for frames in chunks]
    state = TsContinuity()
    spliced = b"".join(state.rewrite(data) for data in raw)
    assert continuity_errors(b"".join(raw)) > 0  # what players would see without the rewrite
    assert continuity_errors(spliced) == 0
    all_frames = [f for frames in chunks for f in frames]
    result = decode(spliced)
    assert result.corrupt == 0
    assert (result.video, result.audio) == (count(all_frames, "video"), count(all_frames, "audio"))
    # one continuous timeline: video dts strictly increase across segment boundaries
    dts = [d for d, _ in pes_timestamps(spliced, PID_VIDEO)]
    assert dts == sorted(dts) and len(set(dts)) == len(dts) == count(all_frames, "video")


def test_audio_only_and_video_only_segments() -> None:
    video, audio, chunks = gops(2.0)
    frames = chunks[0]
    audio_only = decode(mux_segment([f for f in frames if f.kind == "audio"], None, audio))
    assert (audio_only.video, audio_only.audio) == (0, count(frames, "audio"))
    # frames of a kind without info are left out
    video_only = decode(mux_segment(frames, video, None))
    assert (video_only.video, video_only.audio) == (count(frames, "video"), 0)


def test_repeated_dts_does_not_lose_the_segment() -> None:
    _, audio, chunks = gops(2.0)
    frames = [f for f in chunks[0] if f.kind == "audio"][:10]
    frames[5] = Frame("audio", frames[4].dts, frames[4].dts, True, frames[5].data)
    result = decode(mux_segment(frames, None, audio))
    assert result.audio == 10


def test_a_corrupt_frame_is_skipped_not_fatal() -> None:
    video, audio, chunks = gops(2.0)
    frames = list(chunks[0])
    broken = next(i for i, f in enumerate(frames) if f.kind == "video" and not f.keyframe)
    f = frames[broken]
    frames[broken] = Frame("video", f.dts, f.pts, False, b"\x00\x00\xff\xff" + f.data)
    data = mux_segment(frames, video, audio)
    assert len(pes_timestamps(data, PID_VIDEO)) == count(frames, "video") - 1


def test_needs_a_track() -> None:
    with pytest.raises(MuxError):
        mux_segment([], None, None)


@pytest.mark.parametrize("take_at", [0, 4096, 10**9], ids=["every-frame", "4K", "at-finish"])
def test_packets_finished_as_they_come_are_the_packets_finished_at_the_end(
    monkeypatch: pytest.MonkeyPatch, take_at: int
) -> None:
    """SDT dropped and counters carried on as FFmpeg writes, in any pieces: the same bytes as
    doing both to the whole segment once it is closed."""
    video, audio, chunks = gops(6.0)
    monkeypatch.setattr(muxer_module, "TAKE_AT", 10**9)
    whole_state = TsContinuity()
    reference = [mux_segment(frames, video, audio, whole_state) for frames in chunks]
    monkeypatch.setattr(muxer_module, "TAKE_AT", take_at)
    state = TsContinuity()
    pieces = [mux_segment(frames, video, audio, state) for frames in chunks]
    assert pieces == reference and state == whole_state
    spliced = b"".join(pieces)
    assert continuity_errors(spliced) == 0
    assert {p.pid for p in packets(spliced)} == {PID_PAT, PID_PMT, PID_VIDEO, PID_AUDIO}


def test_a_segment_muxer_leaves_the_given_continuity_alone() -> None:
    video, audio, chunks = gops(4.0)
    state = TsContinuity()
    first = mux_segment(chunks[0], video, audio, state)
    before = state.copy()
    muxer = SegmentMuxer(video, audio, state)
    for frame in chunks[1]:
        muxer.add(frame)
    second = muxer.finish()
    assert state == before == muxer.started_from != muxer.continuity
    assert continuity_errors(first + second) == 0
    assert TsContinuity().rewrite(first + second) == first + second
