from __future__ import annotations

import io

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.media.bitstream import (
    AacInfo,
    BitstreamError,
    adts_header,
    avcc_to_annexb,
    parse_asc,
    parse_avcc,
    parse_sps_dimensions,
    remove_emulation_prevention,
    split_avcc,
)
from tests.hls.conftest import make_test_frames

# --- a test-side bit writer, to build SPS and ASC bytes independently of the parser ---------


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        n = code.bit_length()
        return self.u(n - 1, 0).u(n, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(
            int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)
        )


def add_emulation_prevention(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def build_sps(
    *,
    profile: int,
    width_mbs: int,
    height_units: int,
    frame_mbs_only: bool,
    crop: tuple[int, int, int, int] | None,
    chroma_format_idc: int = 1,
    poc_type: int = 0,
    scaling: bool = False,
) -> bytes:
    w = BitWriter().u(8, profile).u(8, 0).u(8, 31).ue(0)
    if profile in (100, 110, 122, 244):
        w.ue(chroma_format_idc)
        if chroma_format_idc == 3:
            w.u(1, 0)
        w.ue(0).ue(0).u(1, 0)
        w.u(1, int(scaling))
        if scaling:
            for i in range(8 if chroma_format_idc != 3 else 12):
                w.u(1, 1)  # list present
                if i % 2:
                    w.se(-8)  # nextScale reaches 0: the list ends early
                else:
                    for j in range(16 if i < 6 else 64):
                        w.se(3 if j % 3 else -5)
    w.ue(4).ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(-1).se(2).ue(3).se(1).se(-2).se(3)
    w.ue(4).u(1, 0).ue(width_mbs - 1).ue(height_units - 1).u(1, int(frame_mbs_only))
    if not frame_mbs_only:
        w.u(1, 1)
    w.u(1, 1)
    w.u(1, int(crop is not None))
    if crop is not None:
        for value in crop:
            w.ue(value)
    w.u(1, 0)  # vui_parameters_present_flag
    return b"\x67" + add_emulation_prevention(w.bytes())


def build_avcc(sps: list[bytes], pps: list[bytes], length_size: int = 4) -> bytes:
    out = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFC | (length_size - 1)])
    out.append(0xE0 | len(sps))
    for unit in sps:
        out += len(unit).to_bytes(2, "big") + unit
    out.append(len(pps))
    for unit in pps:
        out += len(unit).to_bytes(2, "big") + unit
    return bytes(out)


# --- avcC and SPS from a real encoder -------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "codec"),
    [
        (320, 240, "avc1.64000d"),
        (640, 360, "avc1.64001e"),  # 360 is not a multiple of 16: cropped
        (1280, 720, "avc1.64001f"),
        (1920, 1080, "avc1.640028"),  # 1088 cropped to 1080
    ],
)
def test_parse_avcc_from_libx264(width: int, height: int, codec: str) -> None:
    video, _, _ = make_test_frames(0.2, width=width, height=height)
    info = parse_avcc(video.record)
    assert (info.width, info.height) == (width, height)
    assert info.codec_string == codec
    assert info.profile_idc == 100
    assert info.nal_length_size == 4
    assert len(info.sps) == 1 and len(info.pps) == 1
    assert info.sps[0][0] & 0x1F == 7 and info.pps[0][0] & 0x1F == 8
    assert info.parameter_sets == info.sps + info.pps


def test_parse_avcc_exact_record() -> None:
    record = bytes.fromhex(
        "0164001fffe100196764001facd9405005ba1000000300100000030320f18319600100"
        "0468ef8fcbfdf8f800"  # PPS, then the High profile extension (chroma format, depths)
    )
    info = parse_avcc(record)
    assert info.sps == (bytes.fromhex("6764001facd9405005ba1000000300100000030320f1831960"),)
    assert info.pps == (bytes.fromhex("68ef8fcb"),)
    assert (info.profile_idc, info.profile_compat, info.level_idc) == (100, 0, 31)
    assert (info.width, info.height) == (1280, 720)


def test_every_truncation_of_an_avcc_record_is_a_bitstream_error() -> None:
    video, _, _ = make_test_frames(0.2)
    record = video.record
    pps = parse_avcc(record).pps[0]
    pps_end = record.index(pps) + len(pps)
    for end in range(pps_end):
        with pytest.raises(BitstreamError):
            parse_avcc(record[:end])


def test_parse_avcc_rejects_bad_records() -> None:
    sps = build_sps(profile=66, width_mbs=20, height_units=15, frame_mbs_only=True, crop=None)
    good = build_avcc([sps], [b"\x68\xce\x38\x80"])
    assert parse_avcc(good).codec_string == "avc1.42001f"
    with pytest.raises(BitstreamError, match="version"):
        parse_avcc(b"\x02" + good[1:])
    with pytest.raises(BitstreamError, match="length size 3"):
        parse_avcc(good[:4] + b"\xfe" + good[5:])
    with pytest.raises(BitstreamError, match="without SPS or PPS"):
        parse_avcc(good[:5] + b"\xe0\x00")
    with pytest.raises(BitstreamError, match="not an SPS"):
        parse_avcc(build_avcc([b"\x68" + sps[1:]], [b"\x68\xce\x38\x80"]))


def test_interlaced_sps_with_cropping() -> None:
    # 1920x1080i: 34 map units of 2x16 lines = 1088; 4:2:0 fields crop in units of 4 lines.
    sps = build_sps(
        profile=100, width_mbs=120, height_units=34, frame_mbs_only=False, crop=(0, 0, 0, 2)
    )
    assert parse_sps_dimensions(sps) == (1920, 1080)


@settings(max_examples=200, deadline=None)
@given(
    profile=st.sampled_from([66, 77, 100, 110, 122, 244]),
    width_mbs=st.integers(1, 512),
    height_units=st.integers(1, 300),
    frame_mbs_only=st.booleans(),
    crop=st.none() | st.tuples(*[st.integers(0, 3)] * 4),
    chroma=st.sampled_from([0, 1, 2, 3]),
    poc_type=st.sampled_from([0, 1, 2]),
    scaling=st.booleans(),
)
def test_sps_dimensions_match_the_formula(
    profile: int,
    width_mbs: int,
    height_units: int,
    frame_mbs_only: bool,
    crop: tuple[int, int, int, int] | None,
    chroma: int,
    poc_type: int,
    scaling: bool,
) -> None:
    high = profile in (100, 110, 122, 244)
    chroma = chroma if high else 1
    sps = build_sps(
        profile=profile, width_mbs=width_mbs, height_units=height_units,
        frame_mbs_only=frame_mbs_only, crop=crop, chroma_format_idc=chroma,
        poc_type=poc_type, scaling=scaling and high,
    )
    sub_w = {0: 1, 1: 2, 2: 2, 3: 1}[chroma]
    sub_h = {0: 1, 1: 2, 2: 1, 3: 1}[chroma]
    unit_y = (1 if chroma == 0 else sub_h) * (2 - frame_mbs_only)
    left, right, top, bottom = crop or (0, 0, 0, 0)
    width = width_mbs * 16 - sub_w * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        with pytest.raises(BitstreamError):
            parse_sps_dimensions(sps)
    else:
        assert parse_sps_dimensions(sps) == (width, height)


def test_remove_emulation_prevention() -> None:
    assert remove_emulation_prevention(b"\x00\x00\x03\x01\x00\x00\x03\x00\x03") == (
        b"\x00\x00\x01\x00\x00\x00\x03"
    )
    assert remove_emulation_prevention(b"\x01\x02") == b"\x01\x02"


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_emulation_prevention_round_trip(rbsp: bytes) -> None:
    escaped = add_emulation_prevention(rbsp)
    assert b"\x00\x00\x00" not in escaped and b"\x00\x00\x01" not in escaped
    assert remove_emulation_prevention(escaped) == rbsp


# --- AVCC to Annex-B ------------------------------------------------------------------------

SPS = b"\x67\x64\x00\x1f"
PPS = b"\x68\xee"
IDR = b"\x65\x88\x84"
SEI = b"\x06\x05\x01"
AUD = b"\x09\xf0"
SC = b"\x00\x00\x00\x01"


def avcc(*units: bytes, size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(size, "big") + u for u in units)


def test_annexb_plain_frame() -> None:
    assert avcc_to_annexb(avcc(b"\x41\x9a", b"\x0c\xff"), 4) == SC + b"\x41\x9a" + SC + b"\x0c\xff"


def test_annexb_keyframe_gets_parameter_sets_first() -> None:
    out = avcc_to_annexb(avcc(SEI, IDR), 4, (SPS, PPS))
    assert out == SC + SPS + SC + PPS + SC + SEI + SC + IDR


def test_annexb_parameter_sets_go_after_an_aud() -> None:
    out = avcc_to_annexb(avcc(AUD, IDR, size=2), 2, (SPS, PPS))
    assert out == SC + AUD + SC + SPS + SC + PPS + SC + IDR


def test_annexb_keeps_inband_parameter_sets() -> None:
    own_sps = b"\x67\x42\x00\x1e"
    out = avcc_to_annexb(avcc(own_sps, PPS, IDR, size=1), 1, (SPS, PPS))
    assert out == SC + own_sps + SC + PPS + SC + IDR


def test_annexb_rejects_overruns() -> None:
    with pytest.raises(BitstreamError, match="overruns"):
        avcc_to_annexb(b"\x00\x00\x00\x05\x65\x88", 4)
    with pytest.raises(BitstreamError, match="truncated"):
        avcc_to_annexb(avcc(IDR) + b"\x00\x00", 4)


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.sampled_from([1, 2, 4]))
def test_split_avcc_round_trip(units: list[bytes], size: int) -> None:
    assert split_avcc(avcc(*units, size=size), size) == units


def test_annexb_from_libx264_decodes() -> None:
    video, _, frames = make_test_frames(2.0)
    info = parse_avcc(video.record)
    decoder = av.CodecContext.create("h264", "r")
    decoded = 0
    for frame in frames:
        if frame.kind != "video":
            continue
        sets = info.parameter_sets if frame.keyframe else ()
        packet = av.Packet(avcc_to_annexb(frame.data, info.nal_length_size, sets))
        decoded += len(decoder.decode(packet))
    decoded += len(decoder.decode(None))
    assert decoded == sum(f.kind == "video" for f in frames) == 50


# --- AAC ------------------------------------------------------------------------------------


def test_parse_asc_lc_48k_stereo() -> None:
    info = parse_asc(bytes.fromhex("1190"))
    assert info == AacInfo(
        object_type=2, sample_rate_index=3, sample_rate=48000, channel_config=2,
        core_object_type=2,
    )
    assert info.channels == 2
    assert info.codec_string == "mp4a.40.2"


def test_parse_asc_from_the_aac_encoder() -> None:
    _, audio, _ = make_test_frames(0.2)
    assert parse_asc(audio.record).sample_rate == 48000


def test_parse_asc_44100_mono_and_explicit_rate() -> None:
    assert parse_asc(bytes.fromhex("1208")).sample_rate == 44100
    assert parse_asc(bytes.fromhex("1208")).channels == 1
    explicit = BitWriter().u(5, 2).u(4, 15).u(24, 48000).u(4, 2).bytes()
    info = parse_asc(explicit)
    assert (info.sample_rate_index, info.sample_rate, info.channel_config) == (15, 48000, 2)
    # ADTS has no explicit rate: the table index of the same rate is used.
    assert adts_header(info, 100) == adts_header(parse_asc(bytes.fromhex("1190")), 100)
    odd = parse_asc(BitWriter().u(5, 2).u(4, 15).u(24, 47999).u(4, 2).bytes())
    with pytest.raises(BitstreamError, match="47999"):
        adts_header(odd, 100)


def test_parse_asc_he_aac_signals_sbr_and_core() -> None:
    # HE-AAC: object type 5, core rate 24 kHz, stereo, output 48 kHz, core AAC-LC.
    record = BitWriter().u(5, 5).u(4, 6).u(4, 2).u(4, 3).u(5, 2).bytes()
    info = parse_asc(record)
    assert info.codec_string == "mp4a.40.5"
    assert (info.core_object_type, info.sample_rate) == (2, 24000)
    assert adts_header(info, 10)[2] >> 6 == 1  # ADTS profile = AAC-LC core


def test_parse_asc_errors() -> None:
    with pytest.raises(BitstreamError, match="truncated"):
        parse_asc(b"\x11")
    with pytest.raises(BitstreamError, match="reserved"):
        parse_asc(BitWriter().u(5, 2).u(4, 13).u(4, 2).bytes())
    with pytest.raises(BitstreamError):
        parse_asc(b"\x00\x00")


def test_adts_header_exact_bytes() -> None:
    info = parse_asc(bytes.fromhex("1190"))
    assert adts_header(info, 100) == bytes.fromhex("fff14c800d7ffc")
    assert adts_header(info, 8184) == bytes.fromhex("fff14c83fffffc")
    with pytest.raises(BitstreamError):
        adts_header(info, 8185)


def test_adts_stream_from_the_encoder_decodes() -> None:
    _, audio, frames = make_test_frames(2.0)
    info = parse_asc(audio.record)
    raw = [f.data for f in frames if f.kind == "audio"]
    stream = b"".join(adts_header(info, len(d)) + d for d in raw)
    with av.open(io.BytesIO(stream), "r", format="aac") as container:
        decoded = [f for p in container.demux() for f in p.decode()]
    assert len(raw) == 95  # 94 frames of input and the encoder's priming frame
    assert len(decoded) == len(raw)
    assert {f.sample_rate for f in decoded} == {48000}
    assert {f.layout.nb_channels for f in decoded} == {2}
