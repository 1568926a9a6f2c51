from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from airclass.hls.mpegts import TsContinuity
from airclass.hls.muxer import MuxError, SegmentMuxer, mux_segment
from airclass.hls.packager import GZIP_MIN_BYTES, HlsPackager, PackagerConfig
from airclass.hls.ring import RingError
from airclass.hls.segmenter import Segmenter
from airclass.media.bitstream import parse_asc, parse_avcc
from airclass.media.frames import AudioConfig, Frame, KeyframeComing, VideoConfig
from airclass.media.hub import StreamHub
from tests.hls.conftest import make_test_frames, shifted
from tests.hls.tsutil import continuity_errors

# 2026-11-27T16:31:04.000Z
T0 = datetime(2026, 11, 27, 16, 31, 4, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def publish(
    packager: HlsPackager,
    clock: Clock,
    video: VideoConfig | None,
    audio: AudioConfig | None,
    frames: list[Frame],
    *,
    wall_start: float,
    stop: bool = True,
) -> None:
    clock.now = wall_start
    packager.on_publish_start()
    for config in (video, audio):
        if config is not None:
            packager.on_event(config)
    first = frames[0].dts
    for frame in frames:
        clock.now = wall_start + (frame.dts - first) / 1000
        packager.on_event(frame)
    if stop:
        clock.now = wall_start + (frames[-1].dts - first) / 1000 + 0.5
        packager.on_publish_stop()


def first_video_packet_is_keyframe(data: bytes) -> bool:
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        for packet in container.demux(video=0):
            if packet.size:
                return bool(packet.is_keyframe)
    return False


def test_live_then_ended() -> None:
    video, audio, frames = make_test_frames(10.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock, path="live/stream")
    changes: list[str] = []
    packager.add_listener(lambda: changes.append(packager.state))
    assert packager.state == "waiting"
    publish(packager, clock, video, audio, frames, wall_start=T0, stop=False)
    assert packager.state == "live"
    assert packager.newest_sequence == 3  # the segment from 8 s is still pending
    assert b"#EXT-X-ENDLIST" not in packager.playlist_bytes
    clock.now = T0 + 10.5
    packager.pause()  # the publisher left: its last frames become a segment, no ENDLIST yet
    assert packager.state == "live" and packager.newest_sequence == 4
    assert b"#EXT-X-ENDLIST" not in packager.playlist_bytes
    packager.end()
    assert packager.state == "ended" and packager.ended_at == T0 + 10.5
    assert changes == ["waiting", "live", "live", "live", "live", "live", "ended"]
    assert packager.playlist_bytes.decode() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        + "".join(
            f"#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:{4 + 2 * i:02d}.000Z\n"
            f"#EXTINF:2.000,\n{i}.ts\n"
            for i in range(5)
        )
        + "#EXT-X-ENDLIST\n"
    )
    assert packager.playlist_gzip == b""  # shorter than GZIP_MIN_BYTES: sent as it is
    segments = packager.segments()
    assert [s.sequence for s in segments] == [0, 1, 2, 3, 4]
    for s in segments:
        assert abs(s.duration - 2.0) <= 0.5
        assert first_video_packet_is_keyframe(s.data)
        assert packager.segment(s.sequence) is s
    assert [s.program_date_time for s in segments] == [T0 + 2 * i for i in range(5)]
    assert continuity_errors(b"".join(s.data for s in segments)) == 0
    assert packager.codecs == "avc1.64000d,mp4a.40.2"
    assert packager.resolution == (320, 240)
    assert packager.keyframe_interval == 2.0
    assert packager.target_duration == 2
    assert packager.total_bytes == sum(len(s.data) for s in segments)
    assert packager.bandwidth == max(-(-len(s.data) * 8 // 2) for s in segments)
    assert 0 < packager.average_bandwidth <= packager.bandwidth


def test_each_listed_segment_is_dated_by_its_own_arrival() -> None:
    """A publisher that fell 3 s behind (an encoder starting on a busy PC) and catches up at
    twice real time: its segments arrive one second apart for two seconds of media each. A
    player that added durations to the first segment's date would date the video on screen
    up to 3 s ahead of when it came in; every segment says when it came in instead."""
    video, audio, frames = make_test_frames(10.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    clock.now = T0
    packager.on_publish_start()
    for config in (video, audio):
        packager.on_event(config)
    for frame in frames:
        media = frame.dts / 1000
        clock.now = T0 + 3 + media / 2 if media < 6 else T0 + media
        packager.on_event(frame)
    text = packager.playlist_bytes.decode()
    dates = [line.split(":", 1)[1] for line in text.splitlines()
             if line.startswith("#EXT-X-PROGRAM-DATE-TIME:")]
    assert dates == [
        "2026-11-27T16:31:07.000Z",  # media 0 s, 3 s late
        "2026-11-27T16:31:08.000Z",  # media 2 s, 2 s late
        "2026-11-27T16:31:09.000Z",  # media 4 s, 1 s late
        "2026-11-27T16:31:10.000Z",  # media 6 s, on time again
    ]
    assert [s.program_date_time for s in packager.segments()] == [T0 + 3, T0 + 4, T0 + 5, T0 + 6]


def test_ring_eviction_and_playlist_window() -> None:
    video, audio, frames = make_test_frames(10.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(ring_segments=3, playlist_segments=2), clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    assert [s.sequence for s in packager.segments()] == [2, 3, 4]
    assert packager.segment(1) is None and packager.segment(2) is not None
    assert packager.playlist_bytes.decode() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:3\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:10.000Z\n"
        "#EXTINF:2.000,\n3.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:12.000Z\n"
        "#EXTINF:2.000,\n4.ts\n"
        "#EXT-X-ENDLIST\n"
    )


def test_publisher_comes_back_with_a_discontinuity() -> None:
    video, audio, frames = make_test_frames(4.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    assert packager.playlist_bytes.endswith(b"#EXT-X-ENDLIST\n")
    # OBS reconnects a minute later; its timestamps start again from zero
    clock.now = T0 + 60
    packager.on_publish_start()
    assert packager.state == "live" and packager.ended_at is None
    assert b"#EXT-X-ENDLIST" not in packager.playlist_bytes
    publish(packager, clock, video, audio, frames, wall_start=T0 + 60)
    assert packager.playlist_bytes.decode() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.000Z\n"
        "#EXTINF:2.000,\n0.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:06.000Z\n"
        "#EXTINF:2.000,\n1.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:32:04.000Z\n"
        "#EXTINF:2.000,\n2.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:32:06.000Z\n"
        "#EXTINF:2.000,\n3.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    # continuity counters carry on across the reconnect too
    assert continuity_errors(b"".join(s.data for s in packager.segments())) == 0


def test_ffmpeg_plays_the_playlist_cleanly(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    video, audio, frames = make_test_frames(6.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    for s in packager.segments():
        (tmp_path / f"{s.sequence}.ts").write_bytes(s.data)
    (tmp_path / "index.m3u8").write_bytes(packager.playlist_bytes)
    result = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "warning", "-i", str(tmp_path / "index.m3u8"),
         "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""


def test_codec_change_cuts_with_a_discontinuity() -> None:
    small_video, audio, small = make_test_frames(4.0)
    big_video, _, big = make_test_frames(2.0, width=1280, height=720)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, small_video, audio, small, wall_start=T0, stop=False)
    assert packager.resolution == (320, 240)
    packager.on_event(small_video)  # a repeated, identical config changes nothing
    assert packager.newest_sequence == 0
    packager.on_event(big_video)
    assert packager.newest_sequence == 1  # the pending 320x240 frames were flushed
    assert packager.resolution == (1280, 720) and packager.codecs == "avc1.64001f,mp4a.40.2"
    for frame in shifted(big, 4000):
        packager.on_event(frame)
    packager.on_publish_stop()
    segments = packager.segments()
    assert [(s.sequence, s.discontinuity) for s in segments] == [(0, False), (1, False), (2, True)]
    with av.open(io.BytesIO(segments[2].data), "r", format="mpegts") as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)


def test_audio_only_stream_and_frames_without_config() -> None:
    _, audio, frames = make_test_frames(5.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, None, audio, frames, wall_start=T0)
    assert packager.dropped_frames == sum(f.kind == "video" for f in frames)
    assert packager.codecs == "mp4a.40.2" and packager.resolution is None
    assert [round(s.duration) for s in packager.segments()] == [2, 2, 1]


def test_unsupported_or_broken_configs_are_ignored() -> None:
    _, audio, frames = make_test_frames(3.0)
    packager = HlsPackager(PackagerConfig(), Clock())
    packager.on_publish_start()
    packager.on_event(VideoConfig("hevc", b"\x01\x02"))
    packager.on_event(VideoConfig("h264", b"\x01\x64"))
    packager.on_event(AudioConfig("opus", b"OpusHead"))
    packager.on_event(audio)
    for frame in frames:
        packager.on_event(frame)
    assert packager.codecs == "mp4a.40.2"
    assert packager.newest_sequence == 0


def test_relay_serves_the_origin_playlist_byte_for_byte() -> None:
    video, audio, frames = make_test_frames(10.0)
    clock = Clock()
    config = PackagerConfig(ring_segments=4, playlist_segments=3)
    origin = HlsPackager(config, clock)
    edge = HlsPackager(config, clock)
    relayed: list[int] = []

    def relay() -> None:
        newest = origin.segment(origin.newest_sequence or 0)
        if newest is not None and newest.sequence not in relayed:
            relayed.append(newest.sequence)
            edge.append_segment(
                newest, target_duration=origin.target_duration, ended=origin.state == "ended"
            )
        elif origin.state == "ended":
            edge.on_publish_stop()

    origin.add_listener(relay)
    publish(origin, clock, video, audio, frames, wall_start=T0)
    assert relayed == [0, 1, 2, 3, 4]
    assert edge.playlist_bytes == origin.playlist_bytes
    assert edge.segment(4) == origin.segment(4)
    with pytest.raises(RingError):
        edge.append_segment(origin.segments()[0])


def test_a_failing_listener_does_not_stop_the_others() -> None:
    packager = HlsPackager(PackagerConfig(), Clock())
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    packager.add_listener(broken)
    packager.add_listener(lambda: calls.append(1))
    packager.on_publish_start()
    packager.remove_listener(broken)
    packager.remove_listener(broken)
    assert calls == [1]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        PackagerConfig(ring_segments=3, playlist_segments=4)


def test_works_as_the_hubs_media_sink() -> None:
    video, audio, frames = make_test_frames(3.0)
    packagers: dict[str, HlsPackager] = {}

    def factory(path: str) -> HlsPackager:
        packagers[path] = HlsPackager(PackagerConfig(), Clock(), path=path)
        return packagers[path]

    hub = StreamHub(factory)
    publication = hub.publish("live/stream", "teacher-1")
    for event in (video, audio, *frames):
        publication.send(event)
    publication.close()
    packager = packagers["live/stream"]
    assert packager.state == "ended"
    assert [s.sequence for s in packager.segments()] == [0, 1]


def reference_segments(
    video: VideoConfig, audio: AudioConfig, frames: list[Frame], clock: Clock
) -> list[bytes]:
    """What plain-mode packaging must make of `frames`: the segmenter's segments, each muxed
    whole, counters spliced."""
    segmenter = Segmenter(2.0)
    segmenter.has_video = True
    pending = []
    first = frames[0].dts
    for frame in frames:
        pending += segmenter.push(frame, T0 + (frame.dts - first) / 1000)
    pending += segmenter.flush()
    continuity = TsContinuity()
    vinfo, ainfo = parse_avcc(video.record), parse_asc(audio.record)
    return [continuity.rewrite(mux_segment(p.frames, vinfo, ainfo)) for p in pending]


@pytest.mark.parametrize("audio_lead_ms", [0, 250])
def test_segments_muxed_as_frames_arrive_are_the_segments_muxed_whole(audio_lead_ms: int) -> None:
    """Plain mode muxes the open segment as it goes; the bytes must be those of muxing each
    closed segment whole, also when the publisher sends audio well ahead of its video, so
    that audio received before a keyframe moves to the next segment."""
    video, audio, flv_order = make_test_frames(12.0)
    frames = sorted(flv_order, key=lambda f: f.dts - (audio_lead_ms if f.kind == "audio" else 0))
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    assert [s.data for s in packager.segments()] == reference_segments(video, audio, frames, clock)
    assert packager.segments_muxed_ahead == packager.segments_made == 6


def test_a_segment_is_muxed_ahead_up_to_its_settled_frames() -> None:
    video, audio, flv_order = make_test_frames(3.0)
    frames = sorted(flv_order, key=lambda f: f.dts - (250 if f.kind == "audio" else 0))
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    keyframes = [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe]
    publish(packager, clock, video, audio, frames[: keyframes[1]], wall_start=T0, stop=False)
    open_frames = packager._segmenter.open_frames
    assert packager._ahead is not None
    muxed = packager._ahead.muxer.frames
    newest_video = max(f.dts for f in open_frames if f.kind == "video")
    assert muxed == list(open_frames[: len(muxed)])
    assert all(f.kind == "video" or f.dts <= newest_video for f in muxed)
    rest = open_frames[len(muxed) :]
    assert rest[0].kind == "audio" and rest[0].dts > newest_video  # not settled: it may move
    assert len(rest) < 20  # 250 ms of audio and the video sent with it


def test_a_segment_muxed_ahead_follows_counters_moved_meanwhile() -> None:
    """The open segment's packets get their counters as they are muxed, from the state of the
    time; should the state move before the segment closes, the segment is renumbered."""
    video, audio, frames = make_test_frames(6.0)
    keyframes = [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe]
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, video, audio, frames[: keyframes[2]], wall_start=T0, stop=False)
    assert packager._ahead is not None and len(packager._ahead.muxer.frames) > 10
    video_pid = 0x100
    stray = packager._continuity.rewrite(
        bytes([0x47, video_pid >> 8, video_pid & 0xFF, 0x10]) + bytes(184)
    )
    first = frames[0].dts
    clock.now = T0 + (frames[keyframes[2]].dts - first) / 1000
    packager.on_event(frames[keyframes[2]])  # closes segment 1
    one, two = (s.data for s in packager.segments())
    assert continuity_errors(one + stray + two) == 0
    assert continuity_errors(one + two) > 0
    assert packager.segments_muxed_ahead == packager.segments_made == 2


def test_a_long_playlist_is_gzipped_a_short_one_is_not() -> None:
    video, audio, frames = make_test_frames(12.0)
    clock = Clock()
    short = HlsPackager(PackagerConfig(), clock)
    publish(short, clock, video, audio, frames, wall_start=T0)
    assert len(short.playlist_bytes) < GZIP_MIN_BYTES and short.playlist_gzip == b""
    long = HlsPackager(PackagerConfig(low_latency=True), clock)
    publish(long, clock, video, audio, frames, wall_start=T0, stop=False)
    assert len(long.playlist_bytes) >= GZIP_MIN_BYTES  # parts listed
    assert gzip.decompress(long.playlist_gzip) == long.playlist_bytes


def closing_keyframe(frames: list[Frame], nth: int) -> int:
    return [i for i, f in enumerate(frames) if f.kind == "video" and f.keyframe][nth]


def test_the_closing_keyframe_lists_the_segment_before_its_last_packets_are_muxed() -> None:
    """The playlist lists a segment as soon as its successor's keyframe arrives; the ring gets
    its bytes at the next frame, unless a reader asks first. Bytes are the same either way."""
    video, audio, frames = make_test_frames(6.0)
    cut = closing_keyframe(frames, 1)
    reference = reference_segments(video, audio, frames, Clock())
    for finish_by in ("next frame", "reader"):
        clock = Clock()
        packager = HlsPackager(PackagerConfig(), clock)
        seen: list[bytes] = []
        packager.add_listener(lambda p=packager, seen=seen: seen.append(p.playlist_bytes))
        publish(packager, clock, video, audio, frames[: cut + 1], wall_start=T0, stop=False)
        assert seen[-1].endswith(b"#EXTINF:2.000,\n0.ts\n")
        ring = packager._ring
        assert ring.pending is not None and ring.total_bytes == 0  # listed, not muxed
        assert packager.segments_made == 1
        if finish_by == "next frame":
            packager.on_event(frames[cut + 1])
            assert ring.pending is None and len(ring) == 1 and ring.total_bytes > 0
        segment = packager.segment(0)
        assert segment is not None and segment.data == reference[0]
        assert packager.playlist_bytes == seen[-1]  # finishing changed nothing listed
    # every reader of segment bytes finishes the listed segment first
    for read in (
        lambda p: p.segments(), lambda p: p.segment(0), lambda p: p.part(0, 0),
        lambda p: p.pause(),
    ):
        packager = HlsPackager(PackagerConfig(), clock := Clock())
        publish(packager, clock, video, audio, frames[: cut + 1], wall_start=T0, stop=False)
        assert packager._ring.pending is not None
        read(packager)
        assert packager._ring.pending is None
        first_segment = packager._ring.get(0)
        assert first_segment is not None and first_segment.data == reference[0]
    # figures read what is made, and make nothing
    packager = HlsPackager(PackagerConfig(), clock := Clock())
    publish(packager, clock, video, audio, frames[: cut + 1], wall_start=T0, stop=False)
    figures = (packager.state, packager.newest_sequence, packager.next_sequence,
               packager.total_bytes, packager.bandwidth, packager.average_bandwidth)
    assert figures == ("live", 0, 1, 0, 0, 0)
    assert packager._ring.pending is not None


def test_a_listed_segment_whose_last_frames_fail_to_mux_keeps_what_was_muxed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A playlist cannot take a segment back: one that fails after being listed is served with
    the packets muxed before the failure, and the next segment starts a discontinuity."""
    video, audio, frames = make_test_frames(6.0)
    cut = closing_keyframe(frames, 1)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    publish(packager, clock, video, audio, frames[:cut], wall_start=T0, stop=False)
    listed = packager._ahead.muxer  # the open segment's, listed by the next keyframe
    clock.now = T0 + (frames[cut].dts - frames[0].dts) / 1000
    packager.on_event(frames[cut])
    assert listed is not None and packager._ring.pending is not None
    kept = listed.finished_bytes()
    assert kept

    add = SegmentMuxer.add

    def failing_add(muxer: SegmentMuxer, frame: Frame) -> None:
        if muxer is listed:
            raise MuxError("refused")
        add(muxer, frame)

    monkeypatch.setattr(SegmentMuxer, "add", failing_add)
    publish_rest = frames[cut + 1 :]
    first = frames[0].dts
    for frame in publish_rest:
        clock.now = T0 + (frame.dts - first) / 1000
        packager.on_event(frame)
    packager.on_publish_stop()
    segments = packager.segments()
    assert packager.mux_errors == 1
    assert segments[0].data == kept and len(kept) > 0 and len(kept) % 188 == 0
    assert segments[1].discontinuity and not segments[0].discontinuity
    assert b"#EXT-X-DISCONTINUITY\n" in packager.playlist_bytes


def test_a_listed_segment_the_byte_cap_evicts_others_for_is_rendered_again() -> None:
    video, audio, frames = make_test_frames(10.0)
    clock = Clock()
    sizes = [len(mux_segment(p, parse_avcc(video.record), parse_asc(audio.record)))
             for p in [[f for f in frames if f.dts < 2000]]]
    packager = HlsPackager(
        PackagerConfig(ring_segments=8, playlist_segments=4, ring_bytes=int(sizes[0] * 2.5)),
        clock,
    )
    publish(packager, clock, video, audio, frames[: closing_keyframe(frames, 3) + 1],
            wall_start=T0, stop=False)
    assert b"0.ts" in packager.playlist_bytes  # listed by count: 0, 1, 2
    seen: list[bytes] = []
    packager.add_listener(lambda: seen.append(packager.playlist_bytes))
    assert [s.sequence for s in packager.segments()] == [1, 2]  # the cap keeps two
    assert seen and b"0.ts" not in seen[-1] and seen[-1] == packager.playlist_bytes


def test_an_announced_keyframe_lists_the_segment_with_the_same_bytes() -> None:
    """The ingest announces a keyframe from its first chunk: the segment it closes is listed
    then, and every segment's bytes are those made without announcements."""
    video, audio, frames = make_test_frames(12.0)
    clock = Clock()
    packager = HlsPackager(PackagerConfig(), clock)
    packager.on_publish_start()
    packager.on_event(video)
    packager.on_event(audio)
    first = frames[0].dts
    for frame in frames:
        clock.now = T0 + (frame.dts - first) / 1000
        if frame.kind == "video" and frame.keyframe:
            made = packager.segments_made
            packager.on_event(KeyframeComing(frame.dts, frame.pts))
            if made:  # the first keyframe starts the stream: nothing to close
                assert packager.segments_made == made + 1
                assert f"\n{made}.ts\n".encode() in packager.playlist_bytes
        packager.on_event(frame)
    packager.on_publish_stop()
    assert packager._segmenter.announced_cuts == 5
    assert [s.data for s in packager.segments()] == reference_segments(video, audio, frames, clock)
    assert packager.segments_muxed_ahead == packager.segments_made == 6


@pytest.mark.parametrize("announce", [False, True])
def test_a_drafted_playlist_is_the_playlist_rendered_whole(announce: bool) -> None:
    """The playlist that lists a closing segment is drafted while the segment is open and
    completed with its duration at the cut. Through reconnects (discontinuities), a codec
    change, segments longer than the target (it grows) and a byte cap evicting segments, every
    playlist served is the one a whole render gives."""
    small_video, audio, small = make_test_frames(9.0)
    big_video, _, big = make_test_frames(9.0, gop=100, width=1280, height=720)
    one = len(mux_segment([f for f in big if f.dts < 4000], parse_avcc(big_video.record),
                          parse_asc(audio.record)))
    config = PackagerConfig(ring_segments=8, playlist_segments=4, ring_bytes=int(one * 2.5))
    clocks = Clock(), Clock()
    drafted = HlsPackager(config, clocks[0])
    whole = HlsPackager(config, clocks[1])
    whole._prepare_draft = lambda: None  # type: ignore[method-assign]
    served: list[tuple[bytes, bytes]] = []

    def both(step: Callable[[HlsPackager], None]) -> None:
        for packager in (drafted, whole):
            step(packager)
        served.append((drafted.playlist_bytes, whole.playlist_bytes))

    def at(now: float) -> None:
        for clock in clocks:
            clock.now = now

    wall = T0
    for video, frames in ((small_video, small), (small_video, small), (big_video, big)):
        at(wall)
        both(lambda p: p.on_publish_start())
        both(lambda p, v=video: p.on_event(v))  # type: ignore[misc]
        both(lambda p: p.on_event(audio))
        for frame in frames:
            at(wall + frame.dts / 1000)
            if announce and frame.kind == "video" and frame.keyframe:
                both(lambda p, f=frame: p.on_event(KeyframeComing(f.dts, f.pts)))  # type: ignore[misc]
            both(lambda p, f=frame: p.on_event(f))  # type: ignore[misc]
        wall += 60
        both(lambda p: p.pause())
    both(lambda p: p.end())

    assert [d for d, w in served if d != w] == []
    assert whole.playlists_drafted == 0
    # Only the first 4-s segment was not as drafted: it raised the target duration from 2.
    assert drafted.playlists_drafted == drafted.segments_made - 1 == 12
    assert drafted.target_duration == 4 and b"#EXT-X-DISCONTINUITY\n" in drafted.playlist_bytes
    assert len(drafted.segments()) < drafted.segments_made  # the byte cap evicted
