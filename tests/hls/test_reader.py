"""The player's-eye playlist reader used by the load tester and the benchmarks."""

from __future__ import annotations

import pytest

from airclass.hls.playlist import render_media_playlist
from airclass.hls.reader import Playlist, parse_media_playlist
from airclass.hls.ring import Segment

T0 = 1_700_000_000.0


def test_reads_back_what_the_packager_renders() -> None:
    segments = [
        Segment(7, 2.0, b"", T0, False, 0),
        Segment(8, 1.5, b"", T0 + 2.0, True, 1),
    ]
    text = render_media_playlist(segments, target_duration=2, ended=True)
    assert parse_media_playlist(text) == Playlist(
        target=2.0, media_sequence=7,
        segments=[(7, 2.0, "7.ts", T0), (8, 1.5, "8.ts", T0 + 2.0)], ended=True,
    )


def test_parts_and_hold_back() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.9\n"
        "#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000,\n3.ts\n"
        '#EXT-X-PART:DURATION=0.3,URI="4.0.ts",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.3,URI="4.1.ts"\n'
    )
    playlist = parse_media_playlist(text)
    assert playlist.segments == [(3, 2.0, "3.ts", None)]
    assert playlist.parts == [(4, 0, 0.3, "4.0.ts"), (4, 1, 0.3, "4.1.ts")]
    assert playlist.part_hold_back == 0.9 and not playlist.ended


def test_not_a_playlist() -> None:
    with pytest.raises(ValueError):
        parse_media_playlist("<html>")
