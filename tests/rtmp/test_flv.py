from __future__ import annotations

import pytest

from airclass.media.frames import AudioConfig, Frame, KeyframeComing, VideoConfig
from airclass.rtmp.errors import FlvError, RtmpProtocolError, UnsupportedCodec
from airclass.rtmp.flv import keyframe_coming, parse_audio, parse_video
from tests.rtmp.publisher import ASC, AVCC, avc_header

NALU = bytes.fromhex("00000005 6588840021")


def test_avc_sequence_header() -> None:
    assert parse_video(0, avc_header(1, 0, 0) + AVCC) == VideoConfig("h264", AVCC)


@pytest.mark.parametrize(
    ("frame_type", "cts", "pts", "keyframe"),
    [
        (1, 80, 1080, True),
        (2, 0, 1000, False),
        (2, -40, 960, False),
        (2, -(1 << 23), -8387608, False),
    ],
)
def test_avc_nalu(frame_type: int, cts: int, pts: int, keyframe: bool) -> None:
    frame = parse_video(1000, avc_header(frame_type, 1, cts) + NALU)
    assert frame == Frame("video", 1000, pts, keyframe, NALU)


def test_composition_time_is_signed_24_bit() -> None:
    payload = bytes([0x27, 1, 0xFF, 0xFF, 0xD8]) + NALU  # -40
    assert parse_video(500, payload) == Frame("video", 500, 460, False, NALU)
    payload = bytes([0x27, 1, 0x7F, 0xFF, 0xFF]) + NALU  # +8388607
    assert parse_video(0, payload) == Frame("video", 0, 8388607, False, NALU)


def test_end_of_sequence_and_empty_frames_carry_nothing() -> None:
    assert parse_video(0, avc_header(1, 2, 0)) is None
    assert parse_video(0, avc_header(2, 1, 0)) is None
    assert parse_video(0, bytes([0x57, 0])) is None  # video info/command frame


def test_enhanced_rtmp_avc1() -> None:
    start = bytes([0x90]) + b"avc1" + AVCC
    assert parse_video(0, start) == VideoConfig("h264", AVCC)
    coded = bytes([0x91]) + b"avc1" + (40).to_bytes(3, "big") + NALU
    assert parse_video(100, coded) == Frame("video", 100, 140, True, NALU)
    coded_x = bytes([0xA3]) + b"avc1" + NALU
    assert parse_video(100, coded_x) == Frame("video", 100, 100, False, NALU)


def test_aac() -> None:
    assert parse_audio(0, bytes([0xAF, 0]) + ASC) == AudioConfig("aac", ASC)
    assert parse_audio(23, bytes([0xAF, 1]) + b"\x21\x10") == Frame(
        "audio", 23, 23, True, b"\x21\x10"
    )
    assert parse_audio(23, bytes([0xAF, 1])) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes([0x12, 0, 0]), "unsupported video codec Sorenson H.263"),
        (bytes([0x14, 0, 0]), "unsupported video codec On2 VP6"),
        (bytes([0x1C, 0, 0, 0, 0]), "unsupported video codec HEVC"),
        (bytes([0x1F, 0, 0]), "unsupported video codec codec id 15"),
        (bytes([0x90]) + b"hvc1" + bytes(10), "unsupported video codec HEVC \\('hvc1'\\)"),
        (bytes([0x91]) + b"av01" + bytes(10), "unsupported video codec AV1 \\('av01'\\)"),
        (bytes([0x91]) + b"vp09", "unsupported video codec VP9"),
        (bytes([0x91]) + b"xyz!", "unsupported video codec FourCC 'xyz!'"),
    ],
)
def test_unsupported_video(payload: bytes, message: str) -> None:
    with pytest.raises(UnsupportedCodec, match=message):
        parse_video(0, payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes([0x2F, 0xFF]), "unsupported audio codec MP3"),
        (bytes([0xBE, 0]), "unsupported audio codec Speex"),
        (bytes([0x3E]), "unsupported audio codec linear PCM \\(little endian\\)"),
        (bytes([0x90]) + b"Opus", "unsupported audio codec Opus"),
        (bytes([0x90]) + b"mp4a" + bytes(3), "unsupported audio codec AAC \\(Enhanced RTMP\\)"),
    ],
)
def test_unsupported_audio(payload: bytes, message: str) -> None:
    with pytest.raises(UnsupportedCodec, match=message):
        parse_audio(0, payload)
    assert issubclass(UnsupportedCodec, RtmpProtocolError)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty video payload"),
        (b"\x17", "truncated AVC video payload"),
        (b"\x17\x01\x00\x00", "truncated AVC video payload"),
        (b"\x17\x00\x00\x00\x00", "malformed AVC decoder configuration record"),
        (b"\x17\x00\x00\x00\x00\x02\x64\x00\x14\xff\xe1\x00", "malformed AVC decoder"),
        (b"\x17\x05\x00\x00\x00", "unknown AVC packet type 5"),
        (b"\x91avc1\x00", "truncated Enhanced RTMP AVC frame"),
        (b"\x91av", "truncated Enhanced RTMP video payload"),
    ],
)
def test_bad_video(payload: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_video(0, payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty audio payload"),
        (b"\xaf", "truncated AAC audio payload"),
        (b"\xaf\x00\x12", "AudioSpecificConfig of 1 bytes"),
        (b"\xaf\x07", "unknown AAC packet type 7"),
        (b"\x90Op", "truncated Enhanced RTMP audio payload"),
    ],
)
def test_bad_audio(payload: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_audio(0, payload)


def test_keyframe_coming_from_the_first_bytes_of_an_avc_keyframe() -> None:
    assert keyframe_coming(4000, avc_header(1, 1, 80) + NALU[:3]) == KeyframeComing(4000, 4080)
    assert keyframe_coming(4000, avc_header(1, 1, -40)) == KeyframeComing(4000, 3960)
    assert keyframe_coming(4000, avc_header(2, 1, 80)) is None  # an inter frame
    assert keyframe_coming(4000, avc_header(1, 0, 0) + AVCC) is None  # a sequence header
    assert keyframe_coming(4000, avc_header(1, 1, 0)[:4]) is None  # too short to tell
    assert keyframe_coming(4000, bytes([0x90]) + b"avc1" + bytes(8)) is None  # E-RTMP
