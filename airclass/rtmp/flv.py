"""FLV tag bodies (RTMP audio and video payloads) → `airclass.media.frames` objects.

We package H.264 and AAC only, so anything else is refused with `UnsupportedCodec` naming the
codec: a teacher whose OBS is set to HEVC gets a clear log line instead of a silent black
stream. H.264 is accepted in the legacy form (codec id 7) and in the Enhanced RTMP form with
the `avc1` FourCC.
"""

from __future__ import annotations

from airclass.media.frames import AudioConfig, Frame, KeyframeComing, VideoConfig
from airclass.rtmp.errors import FlvError, UnsupportedCodec

__all__ = ["UnsupportedCodec", "parse_audio", "parse_video"]

VIDEO_CODECS = {
    1: "JPEG",
    2: "Sorenson H.263",
    3: "Screen Video",
    4: "On2 VP6",
    5: "On2 VP6 with alpha",
    6: "Screen Video v2",
    7: "H.264",
    12: "HEVC (non-standard codec id 12)",
    13: "AV1 (non-standard codec id 13)",
}
AUDIO_CODECS = {
    0: "linear PCM (platform endian)",
    1: "ADPCM",
    2: "MP3",
    3: "linear PCM (little endian)",
    4: "Nellymoser 16 kHz",
    5: "Nellymoser 8 kHz",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    10: "AAC",
    11: "Speex",
    13: "Opus (non-standard sound format 13)",
    14: "MP3 8 kHz",
    15: "device-specific sound",
}
FOURCC_NAMES = {
    b"avc1": "H.264",
    b"hvc1": "HEVC",
    b"av01": "AV1",
    b"vp08": "VP8",
    b"vp09": "VP9",
    b"Opus": "Opus",
    b"fLaC": "FLAC",
    b"ac-3": "AC-3",
    b"ec-3": "E-AC-3",
    b".mp3": "MP3",
    b"mp4a": "AAC (Enhanced RTMP)",
}

CODEC_AVC = 7
SOUND_AAC = 10
SOUND_EX_HEADER = 9
FRAME_KEY = 1
FRAME_COMMAND = 5

# Enhanced RTMP video packet types.
_EX_SEQUENCE_START = 0
_EX_CODED_FRAMES = 1
_EX_SEQUENCE_END = 2
_EX_CODED_FRAMES_X = 3


def _fourcc_name(fourcc: bytes) -> str:
    name = FOURCC_NAMES.get(fourcc)
    shown = fourcc.decode("ascii", "replace")
    return f"{name} ({shown!r})" if name else f"FourCC {shown!r}"


def _cts(payload: bytes, offset: int) -> int:
    value = (payload[offset] << 16) | (payload[offset + 1] << 8) | payload[offset + 2]
    return value - 0x1000000 if value & 0x800000 else value


def _avc_config(record: bytes) -> VideoConfig:
    if len(record) < 7 or record[0] != 1:
        raise FlvError(f"malformed AVC decoder configuration record ({len(record)} bytes)")
    return VideoConfig("h264", record)


def starts_avc_keyframe(head: bytes) -> bool:
    """Whether a video message starting with `head` is an AVC keyframe (FLV video tag: frame
    type 1, codec 7, AVC packet type 1, then the composition time)."""
    return len(head) >= 5 and head[0] == (1 << 4) | CODEC_AVC and head[1] == 1


def keyframe_coming(timestamp: int, head: bytes) -> KeyframeComing | None:
    """The timestamps of the AVC keyframe whose message starts with `head`; None for
    anything else (E-RTMP video is not announced)."""
    if not starts_avc_keyframe(head):
        return None
    return KeyframeComing(timestamp, timestamp + _cts(head, 2))


def parse_video(timestamp: int, payload: bytes) -> VideoConfig | Frame | None:
    """Parse a video message; None for payloads that carry nothing to package."""
    if not payload:
        raise FlvError("empty video payload")
    b0 = payload[0]
    if b0 & 0x80:
        return _parse_ex_video(timestamp, payload)
    frame_type = b0 >> 4
    codec = b0 & 0x0F
    if frame_type == FRAME_COMMAND:
        return None  # a video info/command frame, not a picture
    if codec != CODEC_AVC:
        name = VIDEO_CODECS.get(codec, f"codec id {codec}")
        raise UnsupportedCodec(f"unsupported video codec {name}: publish H.264")
    if len(payload) < 5:
        raise FlvError(f"truncated AVC video payload ({len(payload)} bytes)")
    packet_type = payload[1]
    if packet_type == 0:
        return _avc_config(payload[5:])
    if packet_type == 1:
        if len(payload) == 5:
            return None
        return Frame("video", timestamp, timestamp + _cts(payload, 2), frame_type == 1, payload[5:])
    if packet_type == 2:
        return None  # end of sequence
    raise FlvError(f"unknown AVC packet type {packet_type}")


def _parse_ex_video(timestamp: int, payload: bytes) -> VideoConfig | Frame | None:
    if len(payload) < 5:
        raise FlvError(f"truncated Enhanced RTMP video payload ({len(payload)} bytes)")
    frame_type = (payload[0] >> 4) & 0x07
    packet_type = payload[0] & 0x0F
    fourcc = payload[1:5]
    if fourcc != b"avc1":
        raise UnsupportedCodec(f"unsupported video codec {_fourcc_name(fourcc)}: publish H.264")
    if frame_type == FRAME_COMMAND:
        return None
    if packet_type == _EX_SEQUENCE_START:
        return _avc_config(payload[5:])
    if packet_type == _EX_CODED_FRAMES:
        if len(payload) < 8:
            raise FlvError(f"truncated Enhanced RTMP AVC frame ({len(payload)} bytes)")
        if len(payload) == 8:
            return None
        return Frame("video", timestamp, timestamp + _cts(payload, 5), frame_type == 1, payload[8:])
    if packet_type == _EX_CODED_FRAMES_X:
        if len(payload) == 5:
            return None
        return Frame("video", timestamp, timestamp, frame_type == 1, payload[5:])
    if packet_type == _EX_SEQUENCE_END:
        return None
    raise UnsupportedCodec(f"unsupported Enhanced RTMP video packet type {packet_type}")


def parse_audio(timestamp: int, payload: bytes) -> AudioConfig | Frame | None:
    """Parse an audio message; None for an empty AAC frame."""
    if not payload:
        raise FlvError("empty audio payload")
    sound_format = payload[0] >> 4
    if sound_format == SOUND_EX_HEADER:
        fourcc = payload[1:5]
        if len(fourcc) < 4:
            raise FlvError(f"truncated Enhanced RTMP audio payload ({len(payload)} bytes)")
        raise UnsupportedCodec(f"unsupported audio codec {_fourcc_name(fourcc)}: publish AAC")
    if sound_format != SOUND_AAC:
        name = AUDIO_CODECS.get(sound_format, f"sound format {sound_format}")
        raise UnsupportedCodec(f"unsupported audio codec {name}: publish AAC")
    if len(payload) < 2:
        raise FlvError("truncated AAC audio payload")
    packet_type = payload[1]
    if packet_type == 0:
        config = payload[2:]
        if len(config) < 2:
            raise FlvError(f"AudioSpecificConfig of {len(config)} bytes, expected 2 or more")
        return AudioConfig("aac", config)
    if packet_type == 1:
        if len(payload) == 2:
            return None
        return Frame("audio", timestamp, timestamp, True, payload[2:])
    raise FlvError(f"unknown AAC packet type {packet_type}")
