"""A scripted RTMP publisher for tests: produces the bytes an encoder would send, and decodes
the server's replies, using the package's own chunk writer and reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airclass.rtmp import amf0
from airclass.rtmp import messages as m
from airclass.rtmp.chunk import ChunkReader, ChunkWriter, RtmpMessage

DATA = Path(__file__).parent / "data"
FFMPEG_CAPTURE = DATA / "ffmpeg_publish.bin"
"""Every byte ffmpeg 5.1 sent publishing 1 s of testsrc 160x120 (x264, -bf 2) + AAC to
rtmp://127.0.0.1:34307/live/test?key=k, handshake included."""

C1 = bytes(8) + bytes(range(256)) * 5 + bytes(248)
HANDSHAKE = b"\x03" + C1 + C1  # C0 + C1, then a C2 (content is not checked)
ZERO_RANDOM = bytes(1528)

# An H.264 avcC record (High profile, 320x240) and AAC-LC 48 kHz stereo config.
AVCC = bytes.fromhex(
    "01640014ffe1001967640014acd94141fb0110000003001000000303c0f142996001000668ebe3cb22c0"
)
ASC = bytes.fromhex("1190")


def avc_header(frame_type: int, packet_type: int, cts: int) -> bytes:
    return bytes([(frame_type << 4) | 7, packet_type]) + (cts & 0xFFFFFF).to_bytes(3, "big")


class Publisher:
    """Builds a publisher's byte stream message by message."""

    def __init__(self, *, compress: bool = True, ext_on_continuation: bool = True) -> None:
        self.writer = ChunkWriter(128, compress=compress, ext_on_continuation=ext_on_continuation)

    def set_chunk_size(self, size: int) -> bytes:
        out = self.writer.write(2, 0, m.SET_CHUNK_SIZE, 0, m.set_chunk_size(size))
        self.writer.chunk_size = size
        return out

    def command(
        self, name: str, tid: float, obj: Any, *args: Any, stream_id: int = 0, csid: int = 3
    ) -> bytes:
        return self.writer.write(
            csid, stream_id, m.COMMAND_AMF0, 0, m.command(name, tid, obj, *args)
        )

    def connect(self, app: str = "live", tc_url: str = "rtmp://h:1935/live", **extra: Any) -> bytes:
        obj = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)"}
        obj["tcUrl"] = tc_url
        obj.update(extra)
        return self.command("connect", 1.0, obj)

    def publish(self, name: str, tid: float = 5.0, stream_id: int = 1, csid: int = 4) -> bytes:
        return self.command("publish", tid, None, name, "live", stream_id=stream_id, csid=csid)

    def data(self, *values: Any, stream_id: int = 1, csid: int = 4, ts: int = 0) -> bytes:
        return self.writer.write(csid, stream_id, m.DATA_AMF0, ts, amf0.encode(*values))

    def video(self, ts: int, payload: bytes, stream_id: int = 1, csid: int = 4) -> bytes:
        return self.writer.write(csid, stream_id, m.VIDEO, ts, payload)

    def audio(self, ts: int, payload: bytes, stream_id: int = 1, csid: int = 4) -> bytes:
        return self.writer.write(csid, stream_id, m.AUDIO, ts, payload)

    def up_to_publish(self, name: str = "stream?jwt=X") -> bytes:
        """OBS's opening: chunk size first, connect, releaseStream, FCPublish, createStream,
        publish."""
        return (
            HANDSHAKE
            + self.set_chunk_size(4096)
            + self.connect()
            + self.command("releaseStream", 2.0, None, name)
            + self.command("FCPublish", 3.0, None, name)
            + self.command("createStream", 4.0, None)
            + self.publish(name)
        )


class Replies:
    """Decodes what the server sends back (after its S0+S1+S2)."""

    def __init__(self) -> None:
        self.reader = ChunkReader()
        self.skipped = 0

    def feed(self, data: bytes) -> list[tuple[int, int, int, Any]]:
        if self.skipped < 3073:
            take = min(3073 - self.skipped, len(data))
            self.skipped += take
            data = data[take:]
        return [decode(msg) for msg in self.reader.feed(data)]


def decode(msg: RtmpMessage) -> tuple[int, int, int, Any]:
    """(csid, stream id, type, value): commands as AMF value lists, control as payload bytes."""
    value: Any = msg.payload
    if msg.type_id == m.COMMAND_AMF0:
        value = amf0.decode(msg.payload)
    return msg.csid, msg.stream_id, msg.type_id, value
