"""RTMP ingest micro-benchmarks.

Run: pytest benchmarks/bench_rtmp.py --benchmark-only

The stream is 10 s of a 720p30 publish at 2.5 Mbit/s video (a 100 kB keyframe every 2 s)
plus 128 kbit/s AAC at 48 kHz, laid out the way OBS sends it (everything on chunk stream 4),
read from the socket in 64 KiB pieces. Divide the mean by 10 s for the CPU share of one
publisher.
"""

from __future__ import annotations

import random

import pytest

from airclass.rtmp import amf0
from airclass.rtmp.chunk import ChunkReader, ChunkWriter
from airclass.rtmp.connection import PublishRequested, ServerConnection
from tests.rtmp.publisher import ASC, AVCC, Publisher, avc_header

SECONDS = 10
VIDEO_BPS = 2_500_000
AUDIO_FRAME = 340
READ_SIZE = 65536


def _frames() -> list[tuple[int, int, bytes]]:
    rng = random.Random(1)
    frames: list[tuple[int, int, bytes]] = []
    per_frame = VIDEO_BPS // 8 // 30
    for i in range(SECONDS * 30):
        key = i % 60 == 0
        size = 100_000 if key else int(per_frame * rng.uniform(0.6, 1.2))
        header = avc_header(1 if key else 2, 1, 66)
        frames.append((i * 1000 // 30, 9, header + rng.randbytes(size)))
    for i in range(SECONDS * 48_000 // 1024):
        frames.append((i * 1024 * 1000 // 48_000, 8, b"\xaf\x01" + rng.randbytes(AUDIO_FRAME)))
    frames.sort(key=lambda f: (f[0], f[1]))
    return frames


def _stream(chunk_size: int) -> tuple[bytes, int]:
    writer = ChunkWriter(128, compress=True)
    out = bytearray(writer.write(2, 0, 1, 0, chunk_size.to_bytes(4, "big")))
    writer.chunk_size = chunk_size
    frames = _frames()
    for ts, type_id, payload in frames:
        out += writer.write(4, 1, type_id, ts, payload)
    return bytes(out), len(frames) + 1


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


@pytest.mark.parametrize("chunk_size", [128, 4096])
def test_chunk_reader_720p(benchmark: pytest.FixtureRequest, chunk_size: int) -> None:
    data, count = _stream(chunk_size)
    pieces = _pieces(data)

    def run() -> int:
        reader = ChunkReader()
        return sum(len(reader.feed(piece)) for piece in pieces)

    assert benchmark(run) == count  # type: ignore[operator]


def test_connection_720p(benchmark: pytest.FixtureRequest) -> None:
    """Chunks, messages, FLV parsing and events for a whole publish session."""
    pub = Publisher()
    opening = pub.up_to_publish("stream?jwt=X")
    opening_tail = pub.video(0, avc_header(1, 0, 0) + AVCC) + pub.audio(0, b"\xaf\x00" + ASC)
    data, _ = _stream(4096)
    pieces = _pieces(data[16:])  # the stream after its own Set Chunk Size (already 4096)

    def run() -> int:
        conn = ServerConnection()
        events = conn.receive_data(opening)
        assert isinstance(events[-1], PublishRequested)
        conn.accept_publish(1)
        n = len(conn.receive_data(opening_tail))
        for piece in pieces:
            n += len(conn.receive_data(piece))
        return n

    assert benchmark(run) > SECONDS * 70  # type: ignore[operator]


CONNECT = amf0.encode(
    "connect",
    1.0,
    {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
        "swfUrl": "rtmp://192.168.1.10:1935/live",
        "tcUrl": "rtmp://192.168.1.10:1935/live",
    },
)


def test_amf0_decode_connect(benchmark: pytest.FixtureRequest) -> None:
    values = benchmark(amf0.decode, CONNECT)  # type: ignore[operator]
    assert values[0] == "connect"
