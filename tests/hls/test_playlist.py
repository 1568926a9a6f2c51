from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.hls.playlist import (
    TargetDuration,
    Variant,
    draft_media_playlist,
    format_program_date_time,
    render_media_playlist,
    render_multivariant_playlist,
    rounded_duration,
)
from airclass.hls.ring import Segment, SegmentRing

# 2026-11-27T16:31:04.123Z
T0 = datetime(2026, 11, 27, 16, 31, 4, 123000, tzinfo=UTC).timestamp()


def seg(
    sequence: int, duration: float = 2.0, *, disc: bool = False, dseq: int = 0, pdt: float = T0
) -> Segment:
    return Segment(sequence, duration, b"", pdt, disc, dseq)


def test_live_playlist() -> None:
    segments = [seg(12), seg(13, 1.96, pdt=T0 + 2), seg(14, 2.04, pdt=T0 + 3.96)]
    assert render_media_playlist(segments, target_duration=2, ended=False) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:12\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.123Z\n"
        "#EXTINF:2.000,\n"
        "12.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:06.123Z\n"
        "#EXTINF:1.960,\n"
        "13.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:08.083Z\n"
        "#EXTINF:2.040,\n"
        "14.ts\n"
    )


def test_discontinuities_ended_and_custom_uris() -> None:
    segments = [
        seg(40, dseq=2),
        seg(41, 1.2, dseq=2, pdt=T0 + 2),
        seg(42, disc=True, dseq=3, pdt=T0 + 600.5),
        seg(43, dseq=3, pdt=T0 + 602.5),
    ]
    text = render_media_playlist(
        segments, target_duration=3, ended=True, segment_uri=lambda s: f"seg-{s.sequence:05d}.ts"
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:3\n"
        "#EXT-X-MEDIA-SEQUENCE:40\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.123Z\n"
        "#EXTINF:2.000,\n"
        "seg-00040.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:06.123Z\n"
        "#EXTINF:1.200,\n"
        "seg-00041.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:41:04.623Z\n"
        "#EXTINF:2.000,\n"
        "seg-00042.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:41:06.623Z\n"
        "#EXTINF:2.000,\n"
        "seg-00043.ts\n"
        "#EXT-X-ENDLIST\n"
    )


def test_eviction_moves_media_and_discontinuity_sequences() -> None:
    ring = SegmentRing(max_segments=2)
    ring.append(seg(0))
    ring.append(seg(1, disc=True, dseq=1, pdt=T0 + 10))
    ring.append(seg(2, dseq=1, pdt=T0 + 12))
    # segment 0 evicted: the discontinuity is still listed, so the sequence stays 0
    assert render_media_playlist(list(ring), target_duration=2, ended=False) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:1\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:14.123Z\n"
        "#EXTINF:2.000,\n"
        "1.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:16.123Z\n"
        "#EXTINF:2.000,\n"
        "2.ts\n"
    )
    ring.append(seg(3, dseq=1, pdt=T0 + 14))
    # the discontinuity itself evicted: counted in DISCONTINUITY-SEQUENCE
    assert render_media_playlist(list(ring), target_duration=2, ended=False) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:2\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:1\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:16.123Z\n"
        "#EXTINF:2.000,\n"
        "2.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:18.123Z\n"
        "#EXTINF:2.000,\n"
        "3.ts\n"
    )


def test_empty_playlist() -> None:
    assert render_media_playlist([], target_duration=2, ended=False) == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
    )


def test_program_date_time_format() -> None:
    assert format_program_date_time(T0) == "2026-11-27T16:31:04.123Z"
    assert format_program_date_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_program_date_time(59.9996) == "1970-01-01T00:01:00.000Z"
    assert format_program_date_time(1.0004) == "1970-01-01T00:00:01.000Z"


@pytest.mark.parametrize(
    ("seconds", "rounded"), [(2.0, 2), (2.49, 2), (2.5, 3), (2.002, 2), (0.4, 0), (14.6, 15)]
)
def test_rounded_duration(seconds: float, rounded: int) -> None:
    assert rounded_duration(seconds) == rounded


def test_target_duration_covers_every_segment_and_never_decreases() -> None:
    target = TargetDuration(2.0)
    assert target.value == 2
    assert [target.observe(d) for d in (2.0, 2.4, 3.1, 2.0, 1.0)] == [2, 2, 3, 3, 3]
    assert TargetDuration(1.5).value == 2
    assert TargetDuration(0.2).value == 1


def test_multivariant_playlist() -> None:
    text = render_multivariant_playlist(
        [
            Variant("index.m3u8", 2_500_000, "avc1.64001f,mp4a.40.2", (1280, 720)),
            ("http://slave-2:8888/live/stream/index.m3u8", 2_500_000, "avc1.64001f,mp4a.40.2",
             (1280, 720)),
            ("audio.m3u8", 130_000, "mp4a.40.2", None),
        ]
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2500000,CODECS="avc1.64001f,mp4a.40.2",'
        "RESOLUTION=1280x720\n"
        "index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2500000,CODECS="avc1.64001f,mp4a.40.2",'
        "RESOLUTION=1280x720\n"
        "http://slave-2:8888/live/stream/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=130000,CODECS="mp4a.40.2"\n'
        "audio.m3u8\n"
    )


def test_a_draft_completed_is_the_playlist_rendered_whole() -> None:
    listed = [seg(40, dseq=2), seg(41, 1.2, disc=True, dseq=3, pdt=T0 + 2)]
    upcoming = seg(42, 0.0, disc=True, dseq=4, pdt=T0 + 3.2)
    draft = draft_media_playlist(
        listed, upcoming, target_duration=2, segment_uri=lambda s: f"s/{s.sequence}.ts"
    )
    assert draft.head.endswith(
        "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:07.323Z\n"
    )
    closed = seg(42, 1.96, disc=True, dseq=4, pdt=T0 + 3.2)
    assert draft.fits(closed, 2)
    assert draft.complete(1.96) == render_media_playlist(
        [*listed, closed], target_duration=2, ended=False,
        segment_uri=lambda s: f"s/{s.sequence}.ts",
    )
    # Not the segment drafted, or a target duration that grew: render it whole.
    assert not draft.fits(closed, 3)
    assert not draft.fits(seg(43, 1.96, disc=True, dseq=4, pdt=T0 + 3.2), 2)
    assert not draft.fits(seg(42, 1.96, disc=True, dseq=4, pdt=T0 + 3.3), 2)
    assert not draft.fits(seg(42, 1.96, dseq=3, pdt=T0 + 3.2), 2)


@settings(max_examples=200, deadline=None)
@given(
    durations=st.lists(st.floats(0.04, 12.0), min_size=1, max_size=8),
    breaks=st.lists(st.booleans(), min_size=8, max_size=8),
    first_sequence=st.integers(0, 10**6),
    target=st.integers(1, 12),
)
def test_any_draft_completed_is_the_playlist_rendered_whole(
    durations: list[float], breaks: list[bool], first_sequence: int, target: int
) -> None:
    segments, dseq, pdt = [], 3, T0
    for index, duration in enumerate(durations):
        dseq += breaks[index]
        segments.append(seg(first_sequence + index, duration, disc=breaks[index], dseq=dseq,
                            pdt=pdt))
        pdt += duration
    *listed, closed = segments
    draft = draft_media_playlist(listed, closed, target_duration=target)
    assert draft.fits(closed, target)
    assert draft.complete(closed.duration) == render_media_playlist(
        segments, target_duration=target, ended=False
    )
