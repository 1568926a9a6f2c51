from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.hls.segmenter import PendingSegment, Segmenter
from airclass.media.frames import Frame

T0 = 1_800_000_000.0


def v(dts: int, key: bool = False, size: int = 10, cto: int = 0) -> Frame:
    return Frame("video", dts, dts + cto, key, bytes(size))


def a(dts: int, size: int = 5) -> Frame:
    return Frame("audio", dts, dts, True, bytes(size))


def feed(seg: Segmenter, frames: list[Frame]) -> list[PendingSegment]:
    out: list[PendingSegment] = []
    for f in frames:
        out += seg.push(f, T0 + f.dts / 1000)
    return out


def av_stream(start: int, end: int, *, gop_ms: int = 1000, fps: int = 25) -> list[Frame]:
    """Video at `fps` with keyframes every gop_ms, AAC 48 kHz frames interleaved by dts."""
    step = 1000 // fps
    frames = [v(t, key=(t - start) % gop_ms == 0) for t in range(start, end, step)]
    audio_times = [start + round(i * 1024 / 48) for i in range(10 * (end - start) // 1024 * 5)]
    frames += [a(t) for t in audio_times if t < end]
    frames.sort(key=lambda f: (f.dts, f.kind == "audio"))
    return frames


def test_cuts_at_the_first_keyframe_after_the_target() -> None:
    seg = Segmenter(2.0, has_video=True)
    out = feed(seg, av_stream(0, 7000, gop_ms=1000))
    assert [(s.start_dts, s.duration) for s in out] == [(0, 2.0), (2000, 2.0), (4000, 2.0)]
    [last] = seg.flush()
    assert last.start_dts == 6000
    assert last.duration == pytest.approx(1.0)  # last video frame at 6960 + one 40 ms frame
    assert [s.program_date_time for s in out] == [T0, T0 + 2, T0 + 4]
    assert not any(s.discontinuity for s in [*out, last])
    for s in out:
        assert s.frames[0].kind == "video" and s.frames[0].keyframe
        video = [f.dts for f in s.frames if f.kind == "video"]
        assert video == list(range(s.start_dts, s.start_dts + 2000, 40))
        # audio of the segment covers its span: nothing from the next one
        assert all(s.start_dts <= f.dts < s.start_dts + 2000 for f in s.frames)
    assert seg.keyframe_interval == 1.0


def test_long_gop_gives_longer_segments() -> None:
    seg = Segmenter(2.0, has_video=True)
    out = feed(seg, av_stream(0, 10_000, gop_ms=3000))
    assert [(s.start_dts, s.duration) for s in out] == [(0, 3.0), (3000, 3.0), (6000, 3.0)]
    assert seg.keyframe_interval == 3.0


def test_audio_that_arrived_before_the_keyframe_moves_to_the_new_segment() -> None:
    seg = Segmenter(2.0, has_video=True)
    frames = [v(0, True), a(10), v(1000), a(1990), a(2010), a(2030), v(2000, True), a(2050)]
    out = feed(seg, frames)
    assert len(out) == 1
    assert [f.dts for f in out[0].frames] == [0, 10, 1000, 1990]
    [rest] = seg.flush()
    assert [(f.kind, f.dts) for f in rest.frames] == [
        ("video", 2000), ("audio", 2010), ("audio", 2030), ("audio", 2050)
    ]


def parted(**kwargs: float) -> Segmenter:
    """A low-latency segmenter (parts of at most 0.5 s), whose cuts wait for their audio."""
    return Segmenter(2.0, has_video=True, part_target=0.5, **kwargs)


def test_with_b_frames_audio_runs_to_the_keyframes_presentation_time() -> None:
    # The keyframe at 2000 is presented at 2080 (two B-frames of reorder delay): the segment's
    # audio must reach 2080 too, or a player sees it buffered only to 2000. The encoder sends
    # that audio after the keyframe, so the cut waits for it.
    seg = parted()
    head = [v(0, True, cto=80), a(10), v(1000, cto=40), a(1990), a(2010)]
    assert feed(seg, head) == []
    assert feed(seg, [v(2000, True, cto=80)]) == []  # the cut waits for audio up to 2080
    assert feed(seg, [a(2030), v(2040, cto=120), a(2050), a(2079)]) == []
    [closed] = feed(seg, [a(2090)])  # the first audio presented after the keyframe
    assert [(f.kind, f.dts) for f in closed.frames] == [
        ("video", 0), ("audio", 10), ("video", 1000), ("audio", 1990), ("audio", 2010),
        ("audio", 2030), ("audio", 2050), ("audio", 2079),
    ]
    assert (closed.start_dts, closed.duration) == (0, 2.0)
    assert seg.pending_frames == 3
    [rest] = seg.flush()
    assert [(f.kind, f.dts) for f in rest.frames] == [
        ("video", 2000), ("video", 2040), ("audio", 2090)
    ]
    assert rest.start_dts == 2000 and rest.program_date_time == T0 + 2.0


def test_audio_stamped_at_the_keyframes_presentation_time_stays_and_completes_the_cut() -> None:
    # AAC frames last 21.33 ms; RTMP stamps round them to the millisecond: the frame stamped
    # 2080 may start at 2079.7, and without it the segment's audio would end there.
    seg = parted()
    feed(seg, [v(0, True), a(2058), v(2000, True, cto=80)])
    [closed] = feed(seg, [a(2080)])
    assert [f.dts for f in closed.frames] == [0, 2058, 2080]
    [rest] = seg.flush()
    assert [f.dts for f in rest.frames] == [2000]


def test_audio_that_arrived_early_moves_only_from_the_keyframes_presentation_time() -> None:
    seg = parted()
    frames = [v(0, True), a(1990), a(2080), a(2100), v(2000, True, cto=80)]
    [closed] = feed(seg, frames)  # audio past 2080 is in: nothing to wait for
    assert [f.dts for f in closed.frames] == [0, 1990, 2080]
    [rest] = seg.flush()
    assert [f.dts for f in rest.frames] == [2000, 2100]


def test_a_cut_waits_for_audio_no_longer_than_max_settle() -> None:
    seg = parted(max_settle=0.2)
    feed(seg, [v(0, True), a(10), v(2000, True, cto=80)])
    assert feed(seg, [v(t) for t in range(2040, 2280, 40)]) == []  # audio stopped
    [closed] = feed(seg, [v(2280)])  # 200 ms of video past 2080
    assert [f.dts for f in closed.frames] == [0, 10]
    [rest] = seg.flush()
    assert [f.dts for f in rest.frames] == list(range(2000, 2320, 40))


def test_flush_while_a_cut_waits_closes_both_segments() -> None:
    seg = parted()
    assert feed(seg, [v(0, True), a(10), v(2000, True, cto=80), a(2030), v(2040)]) == []
    first, second = seg.flush()
    assert [f.dts for f in first.frames] == [0, 10, 2030]
    assert [f.dts for f in second.frames] == [2000, 2040]
    assert (first.duration, second.start_dts) == (2.0, 2000)
    assert seg.pending_frames == 0


def test_without_audio_or_reordering_or_parts_a_cut_does_not_wait() -> None:
    video_only = parted()
    assert len(feed(video_only, [v(0, True), v(1000), v(2000, True, cto=80)])) == 1
    no_b_frames = parted()
    assert len(feed(no_b_frames, [v(0, True), a(10), v(2000, True), a(2010)])) == 1
    plain = Segmenter(2.0, has_video=True)  # plain HLS: the segment closes at its keyframe
    [closed] = feed(plain, [v(0, True), a(10), a(1990), a(2030), v(2000, True, cto=80)])
    assert [f.dts for f in closed.frames] == [0, 10, 1990, 2030]  # 2030 is presented first
    assert feed(plain, [a(2050), a(2090)]) == []
    [rest] = plain.flush()
    assert [f.dts for f in rest.frames] == [2000, 2050, 2090]


def test_frames_before_the_first_keyframe_are_dropped() -> None:
    seg = Segmenter(2.0, has_video=True)
    out = feed(seg, [a(0), v(0), v(40), a(21), v(80, True), a(85), v(120)])
    assert out == []
    assert seg.dropped_frames == 4
    [pending] = seg.flush()
    assert [f.dts for f in pending.frames] == [80, 85, 120]
    assert pending.program_date_time == T0 + 0.080


def test_audio_only_cuts_on_any_audio_frame() -> None:
    seg = Segmenter(2.0)
    frames = [a(round(i * 1024 / 48)) for i in range(200)]  # 21.33 ms frames, ~4.26 s
    out = feed(seg, frames)
    assert [(s.start_dts, s.duration) for s in out] == [(0, 2.005), (2005, 2.006)]
    assert [len(s.frames) for s in out] == [94, 94]


def test_video_only() -> None:
    seg = Segmenter(1.0, has_video=True)
    out = feed(seg, [v(t, key=t % 1000 == 0) for t in range(0, 3040, 40)])
    assert [(s.start_dts, s.duration, len(s.frames)) for s in out] == [
        (0, 1.0, 25), (1000, 1.0, 25), (2000, 1.0, 25)
    ]


def test_no_keyframe_ever_holds_nothing() -> None:
    seg = Segmenter(2.0, has_video=True)
    assert feed(seg, [v(t, size=1000) for t in range(0, 600_000, 40)]) == []
    assert seg.pending_frames == 0 and seg.pending_bytes == 0
    assert seg.dropped_frames == 15_000


def test_keyframes_stop_coming_forces_cuts_by_duration() -> None:
    seg = Segmenter(2.0, has_video=True, max_duration=6.0)
    frames = [v(0, True)] + [v(t) for t in range(40, 20_000, 40)]
    out = feed(seg, frames)
    assert [(s.start_dts, s.duration) for s in out] == [(0, 6.04), (6040, 6.04), (12080, 6.04)]
    assert seg.forced_cuts == 3
    assert seg.pending_frames <= 152


def test_keyframes_stop_coming_forces_cuts_by_bytes() -> None:
    seg = Segmenter(2.0, has_video=True, max_bytes=10_000)
    out = feed(seg, [v(0, True, size=1000)] + [v(t, size=1000) for t in range(40, 2000, 40)])
    assert [len(s.frames) for s in out] == [10, 10, 10, 10]
    assert all(s.size <= 10_000 for s in out)
    assert seg.pending_bytes <= 10_000


def test_a_frame_larger_than_a_segment_is_dropped() -> None:
    seg = Segmenter(2.0, has_video=True, max_bytes=1000)
    out = feed(seg, [v(0, True, size=100), v(40, size=5000), v(80, size=100)])
    assert out == [] and seg.dropped_frames == 1
    [pending] = seg.flush()
    assert [f.dts for f in pending.frames] == [0, 80]


def test_backward_jump_starts_a_discontinuity() -> None:
    seg = Segmenter(2.0, has_video=True)
    frames = [v(t, key=t % 2000 == 0) for t in range(100_000, 103_000, 40)]
    frames += [v(t, key=t % 2000 == 0) for t in range(0, 4040, 40)]  # encoder restarted at 0
    out = feed(seg, frames)
    assert [(s.start_dts, s.discontinuity) for s in out] == [
        (100_000, False), (102_000, False), (0, True), (2000, False)
    ]
    # the segment cut by the jump ends one frame after its last frame
    assert out[1].duration == pytest.approx(1.0)
    assert seg.discontinuities == 1


def test_backward_jump_to_a_non_keyframe_waits_for_a_keyframe() -> None:
    seg = Segmenter(2.0, has_video=True)
    out = feed(seg, [v(50_000, True), v(50_040), v(1000), v(1040), v(1080, True), v(1120)])
    assert [(s.start_dts, s.discontinuity) for s in out] == [(50_000, False)]
    [pending] = seg.flush()
    assert (pending.start_dts, pending.discontinuity) == (1080, True)
    assert seg.dropped_frames == 2


def test_forward_jump_starts_a_discontinuity() -> None:
    seg = Segmenter(2.0, has_video=True, max_jump=5.0)
    frames = [v(0, True), a(10), v(40), v(80), v(10_000, True), a(10_010), v(10_040)]
    out = feed(seg, frames)
    assert [(s.start_dts, s.duration, s.discontinuity) for s in out] == [(0, 0.12, False)]
    [pending] = seg.flush()
    assert (pending.start_dts, pending.discontinuity) == (10_000, True)


def test_rtmp_timestamp_wrap_is_a_discontinuity() -> None:
    seg = Segmenter(2.0)
    top = 2**32 - 100
    out = feed(seg, [a(top), a(top + 21), a(top + 42), a(0), a(21)])
    assert [(s.start_dts, s.discontinuity) for s in out] == [(top, False)]
    [pending] = seg.flush()
    assert (pending.start_dts, pending.discontinuity) == (0, True)


def test_small_interleaving_skew_is_not_a_jump() -> None:
    seg = Segmenter(2.0, has_video=True)
    # audio runs 800 ms behind video: normal for some encoders
    frames = [v(1000, True), a(200), v(1040), a(221), v(1080), a(242)]
    assert feed(seg, frames) == []
    assert seg.discontinuities == 0 and seg.pending_frames == 6


def test_reconnect_flags_the_next_segment() -> None:
    seg = Segmenter(2.0, has_video=True)
    feed(seg, [v(60_000, True), v(60_040)])
    [first] = seg.flush()
    assert not first.discontinuity
    seg.mark_discontinuity()
    # the new publisher starts again at 0 with a non-keyframe: dropped, no jump counted
    out = feed(seg, [v(0), v(40, True), v(80)])
    assert out == [] and seg.discontinuities == 0 and seg.dropped_frames == 1
    [second] = seg.flush()
    assert (second.start_dts, second.discontinuity) == (40, True)
    feed(seg, [v(120, True)])
    [third] = seg.flush()
    assert not third.discontinuity


def test_flush_of_nothing() -> None:
    assert Segmenter(2.0).flush() == []


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        Segmenter(0)
    with pytest.raises(ValueError):
        Segmenter(2.0, max_duration=2.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["video", "audio"]),
            st.integers(-3000, 8000),  # dts step, sometimes backwards or a large jump
            st.booleans(),
            st.integers(0, 3000),
            st.sampled_from([0, 0, 40, 80, 120]),  # video composition offset (B-frames)
        ),
        max_size=150,
    ),
    st.booleans(),
)
def test_any_timestamps_keep_segments_bounded_and_ordered(
    steps: list[tuple[str, int, bool, int, int]], parts: bool
) -> None:
    seg = Segmenter(
        2.0, has_video=True, max_bytes=20_000, max_duration=6.0, max_jump=5.0,
        part_target=0.5 if parts else None,
    )
    dts = 0
    frames: list[Frame] = []
    out: list[PendingSegment] = []
    for kind, step, key, size, cto in steps:
        dts = max(0, dts + step)
        video = kind == "video"
        frame = Frame("video" if video else "audio", dts, dts + cto * video, key or not video,
                      bytes(size))
        frames.append(frame)
        out += seg.push(frame, T0)
        assert seg.pending_bytes <= 20_000
    out += seg.flush()
    emitted = [f for s in out for f in s.frames]
    assert len(emitted) + seg.dropped_frames == len(frames)
    for s in out:
        assert s.frames and s.size <= 20_000
        assert s.duration >= 0
        # each segment's own track timeline never goes backwards
        for kind in ("video", "audio"):
            times = [f.dts for f in s.frames if f.kind == kind]
            assert times == sorted(times)
    # segments start with a video keyframe, unless the cut was forced
    unkeyed = [s for s in out if not (s.frames[0].kind == "video" and s.frames[0].keyframe)]
    assert len(unkeyed) <= seg.forced_cuts


def feed_announcing(seg: Segmenter, frames: list[Frame]) -> list[PendingSegment]:
    """`feed`, announcing each video keyframe just before it arrives (as the ingest does when
    a keyframe's first chunk is in and the rest is not)."""
    out: list[PendingSegment] = []
    for f in frames:
        if f.kind == "video" and f.keyframe:
            out += seg.announce_keyframe(f.dts, f.pts)
        out += seg.push(f, T0 + f.dts / 1000)
    return out


def test_an_announced_keyframe_closes_the_segment_it_will_close_with_the_same_frames() -> None:
    frames = [
        *(f if f.kind == "audio" else v(f.dts, f.keyframe, cto=80) for f in av_stream(0, 7000))
    ]
    # audio sent ahead of its video: the frames stamped past a keyframe's pts move at the cut
    frames.sort(key=lambda f: f.dts - (120 if f.kind == "audio" else 0))
    plain = feed(Segmenter(2.0, has_video=True), frames)
    seg = Segmenter(2.0, has_video=True)
    announced = feed_announcing(seg, frames)
    assert [(s.frames, s.start_dts, s.duration) for s in announced] == [
        (s.frames, s.start_dts, s.duration) for s in plain
    ]
    assert seg.announced_cuts == len(announced) == 3
    unannounced = Segmenter(2.0, has_video=True)
    feed(unannounced, frames)
    assert [(s.frames, s.duration) for s in seg.flush()] == [
        (s.frames, s.duration) for s in unannounced.flush()
    ]


def test_an_announcement_that_would_not_cut_changes_nothing() -> None:
    seg = Segmenter(2.0, has_video=True)
    feed(seg, [v(0, key=True), a(10), v(40)])
    assert seg.announce_keyframe(1000, 1000) == []  # below the target
    assert seg.announce_keyframe(30, 30) == []  # not after the newest video
    assert seg.announce_keyframe(9000, 9000) == []  # a jump: the frame itself will tell
    assert seg.pending_frames == 3 and seg.announced_cuts == 0
    parts = Segmenter(2.0, has_video=True, part_target=0.5)
    feed(parts, [v(0, key=True), v(2000)])
    assert parts.announce_keyframe(2040, 2040) == []  # low latency: parts decide


def test_audio_between_an_announcement_and_its_keyframe_starts_the_next_segment() -> None:
    seg = Segmenter(2.0, has_video=True)
    feed(seg, [v(0, key=True), a(10), v(1000), a(1990)])
    [closed] = seg.announce_keyframe(2000, 2000)
    assert [f.dts for f in closed.frames] == [0, 10, 1000, 1990] and closed.duration == 2.0
    assert feed(seg, [a(1995), v(2000, key=True), v(2040)]) == []
    [next_segment] = seg.flush()
    assert [(f.kind, f.dts) for f in next_segment.frames] == [
        ("video", 2000), ("audio", 1995), ("video", 2040)
    ]


def test_an_announced_keyframe_that_does_not_come_is_forgotten() -> None:
    seg = Segmenter(2.0, has_video=True)
    feed(seg, [v(0, key=True), v(1000)])
    assert len(seg.announce_keyframe(2000, 2000)) == 1
    dropped = seg.dropped_frames
    # the publisher aborted that message: a P-frame (and audio before it) come instead
    assert feed(seg, [a(2001), v(2040), v(2080)]) == []
    assert seg.dropped_frames == dropped + 3 and seg.pending_frames == 0
    assert feed(seg, [v(4000, key=True), v(4040)]) == []  # the next cut point starts one
    [segment] = seg.flush()
    assert [f.dts for f in segment.frames] == [4000, 4040]
    # and a flush while one is announced drops what waited for it
    feed(seg, [v(6000, key=True), v(8000)])
    seg.announce_keyframe(8040, 8040)
    feed(seg, [a(8041)])
    assert seg.flush() == [] and seg.pending_frames == 0
