"""LL-HLS packaging: parts cut on frame boundaries within PART-TARGET, independent parts at
keyframes, a segment's bytes are its parts joined, and the result still plays as plain HLS."""

from __future__ import annotations

import io
import itertools
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from airclass.hls.packager import HlsPackager, PackagerConfig
from airclass.hls.segmenter import PendingPart, PendingSegment, Segmenter
from tests.hls.conftest import make_test_frames
from tests.hls.test_packager import T0, Clock, publish
from tests.hls.tsutil import continuity_errors


def ll_packager(clock: Clock, **overrides: object) -> HlsPackager:
    config = PackagerConfig(target_duration=1.0, low_latency=True, part_target=0.3, **overrides)  # type: ignore[arg-type]
    return HlsPackager(config, clock, path="live/stream")


def test_segmenter_parts_cover_each_segment_in_order() -> None:
    _video, _audio, frames = make_test_frames(8.0, gop=50)
    segmenter = Segmenter(2.0, has_video=True, part_target=0.3)
    events: list[PendingPart | PendingSegment] = []
    for frame in frames:
        events += segmenter.feed(frame, T0)
    events += segmenter.flush_events()
    segments = [e for e in events if isinstance(e, PendingSegment)]
    assert len(segments) == 4
    events = events[events.index(segments[0]) + 1 :]  # from the second GOP: interval known
    parts: list[PendingPart] = []
    for event in events:
        if isinstance(event, PendingPart):
            parts.append(event)
            continue
        # Each segment is announced right after its last part; its parts hold its frames.
        assert [p.index for p in parts] == list(range(len(parts)))
        assert tuple(f for p in parts for f in p.frames) == event.frames
        assert sum(p.duration for p in parts) == pytest.approx(event.duration)
        assert all(p.duration <= 0.3 for p in parts)
        assert [p.independent for p in parts] == [True] + [False] * (len(parts) - 1)
        assert len(parts) == 8
        # Evenly split: no single-frame tail part (RFC 8216bis asks for 85 % of PART-TARGET;
        # at 25 fps that forces a 40 ms last part, which hls.js stalls on).
        assert all(p.duration >= 0.1 for p in parts)
        # Parts end on video frame boundaries: each part after the first starts with video.
        assert all(p.frames[0].kind == "video" for p in parts)
        parts = []
    assert segmenter.push is not None  # plain push still works alongside


def test_part_mode_cuts_the_same_segments_with_audio_to_the_keyframes_presentation() -> None:
    _video, _audio, frames = make_test_frames(6.0, gop=25)
    plain, ll = Segmenter(1.0, has_video=True), Segmenter(1.0, has_video=True, part_target=0.3)
    plain_out: list[PendingSegment] = []
    ll_out: list[PendingSegment] = []
    for frame in frames:
        plain_out += plain.push(frame, T0)
        ll_out += ll.push(frame, T0)
    plain_out += plain.flush()
    ll_out += ll.flush()
    assert [(s.start_dts, s.duration) for s in plain_out] == [
        (s.start_dts, s.duration) for s in ll_out
    ]
    for a, b in zip(plain_out, ll_out, strict=True):
        video = [f for f in a.frames if f.kind == "video"]
        assert video == [f for f in b.frames if f.kind == "video"]
    for segment, following in itertools.pairwise(ll_out):
        keyframe = following.frames[0]
        assert keyframe.kind == "video" and keyframe.keyframe
        audio = [f.dts for f in segment.frames if f.kind == "audio"]
        # the segment's audio reaches the next keyframe's presentation time, and no further
        assert audio[-1] >= keyframe.pts - 22 and audio[-1] <= keyframe.pts
        assert all(f.dts > keyframe.pts for f in following.frames if f.kind == "audio")


def test_segment_bytes_are_the_parts_joined_and_decode(tmp_path: Path) -> None:
    video, audio, frames = make_test_frames(6.0, gop=25)
    clock = Clock()
    packager = ll_packager(clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    segments = packager.segments()
    assert len(segments) == 6
    stream = b""
    for segment in segments:
        assert segment.parts and segment.data == b"".join(p.data for p in segment.parts)
        assert segment.parts[0].independent
        stream += segment.data
        # Each part is a standalone MPEG-TS a player can demux.
        for part in segment.parts:
            with av.open(io.BytesIO(part.data), "r", format="mpegts") as container:
                assert sum(1 for p in container.demux() if p.size) > 0
    assert continuity_errors(stream) == 0
    # Video and audio decode across part boundaries.
    decoded = {"video": 0, "audio": 0}
    with av.open(io.BytesIO(stream), "r", format="mpegts") as container:
        for packet in container.demux():
            for _frame in packet.decode():
                decoded[packet.stream.type] += 1
    assert decoded["video"] >= 6 * 25 - 2
    assert decoded["audio"] >= 6 * 46


def test_open_segment_parts_are_served_before_the_segment() -> None:
    video, audio, frames = make_test_frames(3.0, gop=25)
    clock = Clock()
    packager = ll_packager(clock)
    changes: list[tuple[int, int]] = []
    packager.add_listener(lambda: changes.append((packager.next_sequence, packager.open_parts)))
    publish(packager, clock, video, audio, frames[:-10], wall_start=T0, stop=False)
    assert packager.newest_sequence == 1
    assert packager.next_sequence == 2 and packager.open_parts >= 1
    part = packager.part(2, 0)
    assert part is not None and part.independent
    assert packager.part(2, packager.open_parts) is None
    assert packager.part(1, 0) == packager.segments()[1].parts[0]
    text = packager.playlist_bytes.decode()
    assert '#EXT-X-PART:DURATION=0.240,URI="2.0.ts",INDEPENDENT=YES\n' in text
    assert text.endswith(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="2.{packager.open_parts}.ts"\n')
    # Listeners hear of every part, not just of every segment.
    assert len(changes) > 3 * packager.segments_made
    # The publisher leaves: the open segment is closed; no hint after ENDLIST.
    packager.on_publish_stop()
    assert packager.newest_sequence == 2 and packager.open_parts == 0
    assert packager.playlist_bytes.endswith(b"#EXTINF:0.920,\n2.ts\n#EXT-X-ENDLIST\n")


def test_delta_update_is_prepared_alongside() -> None:
    video, audio, frames = make_test_frames(10.0, gop=25)
    clock = Clock()
    packager = ll_packager(clock, playlist_segments=8)
    publish(packager, clock, video, audio, frames, wall_start=T0, stop=False)
    full, delta = packager.playlist_bytes.decode(), packager.delta_bytes.decode()
    assert "#EXT-X-SKIP" not in full
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n" in delta
    assert delta.splitlines()[-1] == full.splitlines()[-1]
    assert full.count("#EXTINF") - delta.count("#EXTINF") == 2


def test_ffmpeg_reads_the_low_latency_playlist(tmp_path: Path) -> None:
    """A legacy HLS reader ignores the LL tags and reads the full segments (ENDLIST here, so
    that ffprobe stops; the live case is proven end to end in tests/e2e)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.fail("ffprobe is not installed: run `make test`, which installs it")
    video, audio, frames = make_test_frames(5.0, gop=25)
    clock = Clock()
    packager = ll_packager(clock)
    publish(packager, clock, video, audio, frames, wall_start=T0)
    assert b"#EXT-X-PART:" in packager.playlist_bytes
    (tmp_path / "media.m3u8").write_bytes(packager.playlist_bytes)
    for segment in packager.segments():
        (tmp_path / f"{segment.sequence}.ts").write_bytes(segment.data)
    out = subprocess.run(
        [ffprobe, "-v", "error", "-allowed_extensions", "ALL", "-count_frames",
         "-show_entries", "stream=codec_type,nb_read_frames", "-of", "csv=p=0",
         str(tmp_path / "media.m3u8")],
        capture_output=True, text=True, timeout=30, check=True,
    )
    counts = dict(line.split(",")[:2] for line in out.stdout.split() if line)
    assert int(counts["video"]) >= 5 * 25 - 2, out.stdout
    assert int(counts["audio"]) > 150, out.stdout
