"""H.264 and AAC bitstream helpers for remuxing RTMP media into MPEG-TS.

RTMP (like FLV and MP4) carries H.264 as AVCC, length-prefixed NAL units with the SPS/PPS kept
apart in an avcC record, and AAC as raw frames with an AudioSpecificConfig kept apart. MPEG-TS
needs the in-band forms instead: Annex-B start codes with SPS/PPS repeated before every IDR so a
player can start at any segment, and a 7-byte ADTS header on every AAC frame. Pure code: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

START_CODE = b"\x00\x00\x00\x01"

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# ISO 14496-3 Table 1.18; index 15 means "explicit 24-bit frequency follows".
AAC_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)
# Channel configuration -> channel count (ISO 14496-3 Table 1.19); 0 means "defined in a PCE".
AAC_CHANNELS = (0, 1, 2, 3, 4, 5, 6, 8)

ADTS_HEADER_SIZE = 7
ADTS_MAX_FRAME = (1 << 13) - 1

# profile_idc values whose SPS carries chroma format, bit depth and scaling matrices.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class BitstreamError(ValueError):
    """A configuration record or frame that cannot be parsed or converted."""


@dataclass(frozen=True, slots=True)
class AvcInfo:
    """What a player and the muxer need from an avcC record."""

    profile_idc: int
    profile_compat: int
    """The constraint-flag byte between profile and level."""
    level_idc: int
    nal_length_size: int
    """Bytes in each NAL length prefix of the frames (1, 2 or 4)."""
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int
    """Displayed width in pixels (after cropping), from the first SPS."""
    height: int

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string for CODECS=, e.g. "avc1.64001f"."""
        return f"avc1.{self.profile_idc:02x}{self.profile_compat:02x}{self.level_idc:02x}"

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        """SPS then PPS NAL units, the order a decoder needs them in."""
        return self.sps + self.pps


@dataclass(frozen=True, slots=True)
class AacInfo:
    """What ADTS headers and CODECS= need from an AudioSpecificConfig."""

    object_type: int
    """Signalled audio object type (2 = AAC-LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS)."""
    sample_rate_index: int
    """Index into the standard rate table, or 15 when the rate was given explicitly."""
    sample_rate: int
    """Core sample rate in Hz (what ADTS describes)."""
    channel_config: int
    core_object_type: int
    """Object type of the core AAC layer (equal to object_type unless SBR/PS is signalled)."""

    @property
    def channels(self) -> int:
        return AAC_CHANNELS[self.channel_config] if self.channel_config < 8 else 0

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string, e.g. "mp4a.40.2"."""
        return f"mp4a.40.{self.object_type}"


class _BitReader:
    """MSB-first bit reader with H.264 exp-Golomb codes."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data) * 8

    def u(self, bits: int) -> int:
        if self._pos + bits > self._end:
            raise BitstreamError(f"truncated: needs {bits} more bits at bit {self._pos}")
        value = 0
        for _ in range(bits):
            byte = self._data[self._pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def remove_emulation_prevention(nal: bytes) -> bytes:
    """RBSP from a NAL payload: drop the 0x03 in every 00 00 03 sequence."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    last = 8
    nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = last if nxt == 0 else nxt


def parse_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Displayed (width, height) of an SPS NAL unit (header byte included)."""
    if len(sps) < 4 or sps[0] & 0x1F != NAL_SPS:
        raise BitstreamError("not an SPS NAL unit")
    r = _BitReader(remove_emulation_prevention(sps[1:]))
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise BitstreamError(f"bad chroma_format_idc {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_colour_plane = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        cycle = r.ue()
        if cycle > 255:
            raise BitstreamError("num_ref_frames_in_pic_order_cnt_cycle too large")
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        raise BitstreamError(f"bad pic_order_cnt_type {poc_type}")
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.u(1):  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        crop_unit_x, crop_unit_y = 1, 2 - frame_mbs_only
    else:
        sub_width = 1 if chroma_array_type == 3 else 2
        sub_height = 2 if chroma_array_type == 1 else 1
        crop_unit_x, crop_unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise BitstreamError(f"bad SPS dimensions {width}x{height}")
    return width, height


def parse_avcc(record: bytes) -> AvcInfo:
    """Parse an AVCDecoderConfigurationRecord (ISO 14496-15 §5.3.3.1)."""
    if len(record) < 7:
        raise BitstreamError("avcC record too short")
    if record[0] != 1:
        raise BitstreamError(f"unsupported avcC version {record[0]}")
    nal_length_size = (record[4] & 0x03) + 1
    if nal_length_size == 3:
        raise BitstreamError("avcC NAL length size 3 is not allowed")
    pos = 5
    sets: list[list[bytes]] = []
    for mask in (0x1F, 0xFF):
        if pos >= len(record):
            raise BitstreamError("avcC record truncated")
        count = record[pos] & mask
        pos += 1
        units: list[bytes] = []
        for _ in range(count):
            if pos + 2 > len(record):
                raise BitstreamError("avcC record truncated")
            size = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(record):
                raise BitstreamError("avcC parameter set truncated")
            units.append(bytes(record[pos : pos + size]))
            pos += size
        sets.append(units)
    sps, pps = sets
    if not sps or not pps:
        raise BitstreamError("avcC record without SPS or PPS")
    width, height = parse_sps_dimensions(sps[0])
    return AvcInfo(
        profile_idc=record[1],
        profile_compat=record[2],
        level_idc=record[3],
        nal_length_size=nal_length_size,
        sps=tuple(sps),
        pps=tuple(pps),
        width=width,
        height=height,
    )


def split_avcc(data: bytes, nal_length_size: int) -> list[bytes]:
    """NAL units of one AVCC access unit; raises BitstreamError if a length overruns."""
    units: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + nal_length_size > end:
            raise BitstreamError("truncated NAL length prefix")
        size = int.from_bytes(data[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + size > end:
            raise BitstreamError(f"NAL unit of {size} bytes overruns the frame")
        if size:
            units.append(data[pos : pos + size])
        pos += size
    return units


def avcc_to_annexb(
    data: bytes, nal_length_size: int, parameter_sets: Sequence[bytes] = ()
) -> bytes:
    """Convert one AVCC access unit to Annex-B.

    `parameter_sets` (SPS and PPS, for keyframes) are inserted after a leading access unit
    delimiter, where the standard wants them, unless the frame already carries an SPS.
    """
    units = split_avcc(data, nal_length_size)
    if parameter_sets and not any(unit[0] & 0x1F == NAL_SPS for unit in units):
        at = 1 if units and units[0][0] & 0x1F == NAL_AUD else 0
        units[at:at] = parameter_sets
    return b"".join(piece for unit in units for piece in (START_CODE, unit))


def parse_asc(record: bytes) -> AacInfo:
    """Parse an AudioSpecificConfig (ISO 14496-3 §1.6.2.1), SBR/PS signalling included."""
    r = _BitReader(bytes(record))

    def object_type() -> int:
        value = r.u(5)
        return 32 + r.u(6) if value == 31 else value

    def sample_rate() -> tuple[int, int]:
        index = r.u(4)
        if index == 15:
            return index, r.u(24)
        if index >= len(AAC_SAMPLE_RATES):
            raise BitstreamError(f"reserved AAC sample rate index {index}")
        return index, AAC_SAMPLE_RATES[index]

    signalled = object_type()
    index, rate = sample_rate()
    channel_config = r.u(4)
    core = signalled
    if signalled in (5, 29):
        sample_rate()  # extension (output) rate; ADTS describes the core rate
        core = object_type()
    if signalled == 0 or rate <= 0:
        raise BitstreamError(f"bad AudioSpecificConfig {record.hex()}")
    return AacInfo(
        object_type=signalled,
        sample_rate_index=index,
        sample_rate=rate,
        channel_config=channel_config,
        core_object_type=core,
    )


def adts_header(info: AacInfo, payload_len: int) -> bytes:
    """The 7-byte ADTS header (no CRC) for one raw AAC frame of `payload_len` bytes."""
    if not 1 <= info.core_object_type <= 4:
        raise BitstreamError(f"AAC object type {info.core_object_type} has no ADTS profile")
    index = info.sample_rate_index
    if index == 15:
        try:
            index = AAC_SAMPLE_RATES.index(info.sample_rate)
        except ValueError:
            raise BitstreamError(f"sample rate {info.sample_rate} Hz has no ADTS index") from None
    if info.channel_config > 7:
        raise BitstreamError(f"AAC channel configuration {info.channel_config} is reserved")
    length = payload_len + ADTS_HEADER_SIZE
    if payload_len < 0 or length > ADTS_MAX_FRAME:
        raise BitstreamError(f"AAC frame of {payload_len} bytes does not fit ADTS")
    profile = info.core_object_type - 1
    channels = info.channel_config
    return bytes(
        (
            0xFF,
            0xF1,  # sync, MPEG-4, layer 0, no CRC
            (profile << 6) | (index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable rate
            0xFC,  # one raw data block
        )
    )
