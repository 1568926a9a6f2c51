"""LL-HLS playlist text against exact strings, and the blocking-reload decision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airclass.hls.playlist import (
    OpenSegment,
    block_decision,
    render_ll_media_playlist,
    render_media_playlist,
    skipped_segments,
)
from airclass.hls.ring import Part, Segment

# 2026-11-27T16:31:04.123Z
T0 = datetime(2026, 11, 27, 16, 31, 4, 123000, tzinfo=UTC).timestamp()

HEADER = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:9\n"
    "#EXT-X-TARGETDURATION:1\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.000,PART-HOLD-BACK=0.900\n"
    "#EXT-X-PART-INF:PART-TARGET=0.300\n"
)


def parts(*durations: float) -> tuple[Part, ...]:
    return tuple(Part(d, b"", index == 0) for index, d in enumerate(durations))


def seg(sequence: int, *, disc: bool = False, dseq: int = 0, with_parts: bool = True) -> Segment:
    return Segment(
        sequence, 1.0, b"", T0 + (sequence - 10), disc, dseq,
        parts(0.28, 0.28, 0.28, 0.16) if with_parts else (),
    )


def open_segment(sequence: int, count: int, *, disc: bool = False, dseq: int = 0) -> OpenSegment:
    return OpenSegment(sequence, parts(0.28, 0.28, 0.28)[:count], T0 + (sequence - 10), disc, dseq)


def test_parts_of_recent_segments_open_parts_and_preload_hint() -> None:
    segments = [seg(10), seg(11), seg(12), seg(13)]
    text = render_ll_media_playlist(
        segments, open_segment=open_segment(14, 2), target_duration=1, part_target=0.3,
        ended=False,
    )
    assert text == HEADER + (
        "#EXT-X-MEDIA-SEQUENCE:10\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.123Z\n"
        "#EXTINF:1.000,\n"
        "10.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:05.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="11.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.280,URI="11.1.ts"\n'
        '#EXT-X-PART:DURATION=0.280,URI="11.2.ts"\n'
        '#EXT-X-PART:DURATION=0.160,URI="11.3.ts"\n'
        "#EXTINF:1.000,\n"
        "11.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:06.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="12.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.280,URI="12.1.ts"\n'
        '#EXT-X-PART:DURATION=0.280,URI="12.2.ts"\n'
        '#EXT-X-PART:DURATION=0.160,URI="12.3.ts"\n'
        "#EXTINF:1.000,\n"
        "12.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:07.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="13.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.280,URI="13.1.ts"\n'
        '#EXT-X-PART:DURATION=0.280,URI="13.2.ts"\n'
        '#EXT-X-PART:DURATION=0.160,URI="13.3.ts"\n'
        "#EXTINF:1.000,\n"
        "13.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:08.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="14.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.280,URI="14.1.ts"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="14.2.ts"\n'
    )


def test_open_segment_without_parts_yet_is_only_a_hint() -> None:
    text = render_ll_media_playlist(
        [seg(10, with_parts=False)], open_segment=open_segment(11, 0), target_duration=1,
        part_target=0.3, ended=False,
    )
    assert text == HEADER + (
        "#EXT-X-MEDIA-SEQUENCE:10\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.123Z\n"
        "#EXTINF:1.000,\n"
        "10.ts\n"
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.0.ts"\n'
    )


def test_first_parts_before_any_segment_and_a_discontinuity_in_the_open_segment() -> None:
    text = render_ll_media_playlist(
        [], open_segment=open_segment(0, 1), target_duration=1, part_target=0.3, ended=False
    )
    assert text == HEADER + (
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:30:54.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="0.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="0.1.ts"\n'
    )
    text = render_ll_media_playlist(
        [seg(10, dseq=2, with_parts=False)],
        open_segment=open_segment(11, 1, disc=True, dseq=3), target_duration=1,
        part_target=0.3, ended=False,
    )
    assert text == HEADER + (
        "#EXT-X-MEDIA-SEQUENCE:10\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:04.123Z\n"
        "#EXTINF:1.000,\n"
        "10.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:05.123Z\n"
        '#EXT-X-PART:DURATION=0.280,URI="11.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.1.ts"\n'
    )


def test_delta_update_skips_segments_older_than_can_skip_until() -> None:
    segments = [seg(n, with_parts=False) for n in range(20, 28)]  # 8 s; skip boundary 6 s
    full = render_ll_media_playlist(
        segments, open_segment=None, target_duration=1, part_target=0.3, ended=True
    )
    delta = render_ll_media_playlist(
        segments, open_segment=None, target_duration=1, part_target=0.3, ended=True, skip=True
    )
    assert full.count("#EXTINF") == 8
    assert delta == HEADER + (
        "#EXT-X-MEDIA-SEQUENCE:20\n"
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n"
        + "".join(
            f"#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:{n - 6:02d}.123Z\n"
            f"#EXTINF:1.000,\n{n}.ts\n"
            for n in range(22, 28)
        )
        + "#EXT-X-ENDLIST\n"
    )
    # Nothing old enough: the "delta" is the full playlist.
    assert render_ll_media_playlist(
        segments[:6], open_segment=None, target_duration=1, part_target=0.3, ended=True,
        skip=True,
    ) == render_ll_media_playlist(
        segments[:6], open_segment=None, target_duration=1, part_target=0.3, ended=True
    )


def test_skipped_segments_counts_from_the_oldest() -> None:
    segments = [seg(n, with_parts=False) for n in range(10)]
    assert skipped_segments(segments, 6.0) == 4
    assert skipped_segments(segments, 10.0) == 0
    assert skipped_segments([], 6.0) == 0


def test_plain_mode_playlist_is_unchanged_by_parts() -> None:
    """A legacy (plain) playlist of segments that have parts says nothing of them."""
    assert render_media_playlist([seg(5), seg(6)], target_duration=1, ended=False) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:1\n"
        "#EXT-X-MEDIA-SEQUENCE:5\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:30:59.123Z\n"
        "#EXTINF:1.000,\n"
        "5.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T16:31:00.123Z\n"
        "#EXTINF:1.000,\n"
        "6.ts\n"
    )


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (9, None, "ready"),  # an older segment
        (13, None, "ready"),  # the newest complete segment
        (13, 7, "ready"),  # a part beyond a finished segment's last: the next one is later
        (14, None, "wait"),  # the open segment, whole
        (14, 0, "ready"),
        (14, 1, "ready"),
        (14, 2, "wait"),  # the hinted part
        (14, 4, "wait"),
        (14, 5, "bad"),  # ADVANCE_PART_LIMIT parts beyond the newest
        (15, None, "wait"),  # the segment after the open one
        (15, 0, "wait"),
        (16, None, "bad"),  # more than two past the newest complete segment
    ],
)
def test_block_decision(msn: int, part: int | None, expected: str) -> None:
    # Newest complete segment 13; the open segment 14 has parts 0 and 1.
    assert block_decision(msn, part, next_sequence=14, open_parts=2, ended=False) == expected


def test_block_decision_on_an_ended_stream_answers_at_once() -> None:
    assert block_decision(99, 0, next_sequence=14, open_parts=0, ended=True) == "ready"
