from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.rtmp.chunk import (
    HEAD_BYTES,
    ChunkReader,
    ChunkWriter,
    MessageHead,
    RtmpMessage,
    basic_header,
)
from airclass.rtmp.errors import ChunkError


def feed_bytewise(reader: ChunkReader, data: bytes) -> list[RtmpMessage]:
    out: list[RtmpMessage] = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    return out


def both_ways(data: bytes, **kwargs: int) -> list[RtmpMessage]:
    whole = ChunkReader(**kwargs).feed(data)
    assert feed_bytewise(ChunkReader(**kwargs), data) == whole
    return whole


def h0(csid: int, ts: int, length: int, type_id: int, sid: int) -> bytes:
    return (
        basic_header(0, csid)
        + min(ts, 0xFFFFFF).to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes([type_id])
        + sid.to_bytes(4, "little")
        + (ts.to_bytes(4, "big") if ts >= 0xFFFFFF else b"")
    )


def h1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    return (
        basic_header(1, csid)
        + delta.to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes([type_id])
    )


def h2(csid: int, delta: int) -> bytes:
    return basic_header(2, csid) + delta.to_bytes(3, "big")


def scs(size: int) -> bytes:
    return h0(2, 0, 4, 1, 0) + size.to_bytes(4, "big")


def test_every_header_type_and_timestamps() -> None:
    data = (
        h0(4, 1000, 3, 8, 1) + b"abc"
        + h1(4, 20, 2, 9) + b"de"  # ts 1020, new length and type
        + h2(4, 30) + b"fg"  # ts 1050, same length and type
        + basic_header(3, 4) + b"hi"  # new message: re-applies delta 30 -> 1080
        + basic_header(3, 4) + b"jk"  # and again -> 1110
    )  # fmt: skip
    assert both_ways(data) == [
        RtmpMessage(4, 1, 8, 1000, b"abc"),
        RtmpMessage(4, 1, 9, 1020, b"de"),
        RtmpMessage(4, 1, 9, 1050, b"fg"),
        RtmpMessage(4, 1, 9, 1080, b"hi"),
        RtmpMessage(4, 1, 9, 1110, b"jk"),
    ]


def test_type3_after_type0_uses_its_timestamp_as_delta() -> None:
    # As the spec and ffmpeg's writer have it.
    data = h0(6, 40, 1, 9, 1) + b"a" + basic_header(3, 6) + b"b"
    assert both_ways(data) == [RtmpMessage(6, 1, 9, 40, b"a"), RtmpMessage(6, 1, 9, 80, b"b")]


def test_multi_chunk_message_and_interleaving() -> None:
    body = bytes(range(256)) + bytes(44)  # 300 bytes: 128 + 128 + 44
    audio = h0(5, 7, 2, 8, 1) + b"AA"
    data = (
        h0(6, 0, 300, 9, 1) + body[:128]
        + audio  # another chunk stream between two chunks of the video message
        + basic_header(3, 6) + body[128:256]
        + basic_header(3, 6) + body[256:]
    )  # fmt: skip
    assert both_ways(data) == [RtmpMessage(5, 1, 8, 7, b"AA"), RtmpMessage(6, 1, 9, 0, body)]


@pytest.mark.parametrize(
    ("csid", "header"),
    [(2, "02"), (63, "3f"), (64, "0000"), (319, "00ff"), (320, "010001"), (65599, "01ffff")],
)
def test_basic_header_sizes(csid: int, header: str) -> None:
    assert basic_header(0, csid) == bytes.fromhex(header)
    data = h0(csid, 5, 1, 8, 1) + b"x" + basic_header(3, csid) + b"y"
    assert both_ways(data) == [RtmpMessage(csid, 1, 8, 5, b"x"), RtmpMessage(csid, 1, 8, 10, b"y")]


def test_basic_header_range() -> None:
    for bad in (0, 1, 65600):
        with pytest.raises(ValueError):
            basic_header(0, bad)


@pytest.mark.parametrize("repeat", [True, False])
def test_extended_timestamp_on_continuation_either_way(repeat: bool) -> None:
    ts = 0x01000000
    body = bytes(range(200))
    ext = ts.to_bytes(4, "big") if repeat else b""
    data = h0(6, ts, 200, 9, 1) + body[:128] + basic_header(3, 6) + ext + body[128:]
    assert both_ways(data) == [RtmpMessage(6, 1, 9, ts, body)]


def test_extended_timestamp_on_type3_new_message_and_delta() -> None:
    ts = 0xFFFFFF  # exactly the marker value: must use the extended field
    data = (
        h0(6, ts, 1, 9, 1) + b"a"
        + basic_header(3, 6) + ts.to_bytes(4, "big") + b"b"  # new message, delta = ts
        + h2(6, 0xFFFFFF) + (0x1000000).to_bytes(4, "big") + b"c"  # extended delta
    )  # fmt: skip
    assert both_ways(data) == [
        RtmpMessage(6, 1, 9, ts, b"a"),
        RtmpMessage(6, 1, 9, 2 * ts, b"b"),
        RtmpMessage(6, 1, 9, 2 * ts + 0x1000000, b"c"),
    ]


def test_timestamps_wrap_at_32_bits() -> None:
    data = h0(6, 0xFFFFFFF0, 1, 9, 1) + b"a" + h2(6, 0x20) + b"b"
    assert both_ways(data)[1].timestamp == 0x10


def test_chunk_size_change_mid_stream() -> None:
    body = bytes(5000)
    data = (
        h0(6, 0, 200, 9, 1) + body[:128] + basic_header(3, 6) + body[128:200]
        + scs(4096)
        + h0(6, 40, 5000, 9, 1) + body[:4096] + basic_header(3, 6) + body[4096:]
        + scs(100)
        + h0(6, 80, 150, 9, 1) + body[:100] + basic_header(3, 6) + body[100:150]
    )  # fmt: skip
    reader = ChunkReader()
    msgs = reader.feed(data)
    assert [(m.type_id, m.timestamp, len(m.payload)) for m in msgs] == [
        (9, 0, 200),
        (1, 0, 4),
        (9, 40, 5000),
        (1, 0, 4),
        (9, 80, 150),
    ]
    assert reader.chunk_size == 100
    assert feed_bytewise(ChunkReader(), data) == msgs


def test_abort_drops_partial_message() -> None:
    abort = h0(2, 0, 4, 2, 0) + (6).to_bytes(4, "big")
    data = (
        h0(6, 0, 200, 9, 1) + bytes(128)
        + abort
        + h0(6, 40, 1, 9, 1) + b"z"
    )  # fmt: skip
    reader = ChunkReader()
    msgs = reader.feed(data)
    assert msgs[-1] == RtmpMessage(6, 1, 9, 40, b"z")
    assert reader.buffered == 0


def test_new_header_replaces_unfinished_message() -> None:
    reader = ChunkReader()
    data = h0(6, 0, 200, 9, 1) + bytes(128) + h0(6, 40, 1, 9, 1) + b"z"
    assert reader.feed(data) == [RtmpMessage(6, 1, 9, 40, b"z")]
    assert reader.buffered == 0


def test_zero_length_message() -> None:
    assert both_ways(h0(3, 1, 0, 20, 0)) == [RtmpMessage(3, 0, 20, 1, b"")]


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF, 16 * 1024 * 1024 + 1])
def test_chunk_size_out_of_range(size: int) -> None:
    with pytest.raises(ChunkError, match="chunk size"):
        ChunkReader().feed(scs(size))


def test_chunk_size_limits_are_inclusive() -> None:
    reader = ChunkReader(max_chunk_size=1000)
    reader.feed(scs(1000))
    assert reader.chunk_size == 1000
    with pytest.raises(ChunkError):
        reader.feed(scs(1001))
    smallest = ChunkReader()
    smallest.feed(scs(1))
    assert smallest.chunk_size == 1


def test_message_length_checked_from_header_before_payload() -> None:
    reader = ChunkReader(max_message_size=8 * 1024 * 1024)
    with pytest.raises(ChunkError, match="message of 16777215 bytes exceeds 8388608"):
        reader.feed(h0(6, 0, 0xFFFFFF, 9, 1))  # no payload sent at all
    reader = ChunkReader(max_message_size=100)
    reader.feed(h0(6, 0, 100, 9, 1))
    with pytest.raises(ChunkError, match="message of 101 bytes"):
        ChunkReader(max_message_size=100).feed(h0(6, 0, 1, 9, 1) + b"x" + h1(6, 0, 101, 9))


def test_too_many_chunk_streams() -> None:
    chunks = [h0(csid, 0, 1, 8, 1) + b"x" for csid in range(2, 10_002)]
    with pytest.raises(ChunkError, match="more than 64 chunk streams"):
        ChunkReader().feed(b"".join(chunks))
    assert len(ChunkReader().feed(b"".join(chunks[:64]))) == 64


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_stream_must_start_with_type0(fmt: int) -> None:
    with pytest.raises(ChunkError, match=f"starts with a type-{fmt} header"):
        ChunkReader().feed(basic_header(fmt, 4) + bytes(11))


def test_pending_bytes_limit() -> None:
    reader = ChunkReader(max_pending_bytes=300)
    data = b"".join(h0(csid, 0, 1000, 9, 1) + bytes(128) for csid in (4, 5))
    reader.feed(data)
    with pytest.raises(ChunkError, match="more than 300 bytes in partial messages"):
        reader.feed(h0(6, 0, 1000, 9, 1) + bytes(128))


def test_buffer_does_not_grow_with_stream_length() -> None:
    writer = ChunkWriter(128)
    reader = ChunkReader()
    one = writer.write(6, 1, 9, 0, bytes(1000))
    for _ in range(200):
        reader.feed(one[:500])
        assert len(reader.feed(one[500:])) == 1
        assert reader.buffered == 0


def test_writer_exact_bytes() -> None:
    writer = ChunkWriter(4)
    assert writer.write(3, 0, 20, 0, b"abcdef") == (
        bytes.fromhex("03 000000 000006 14 00000000") + b"abcd" + b"\xc3" + b"ef"
    )
    writer = ChunkWriter(4)
    assert writer.write(3, 1, 9, 0x01000000, b"abcdef") == (
        bytes.fromhex("03 ffffff 000006 09 01000000 01000000")
        + b"abcd"
        + bytes.fromhex("c3 01000000")
        + b"ef"
    )


def test_writer_compress_header_choice() -> None:
    writer = ChunkWriter(128, compress=True)
    sizes = [
        len(writer.write(4, 1, 8, 0, b"aa")),  # type 0: 12 + 2
        len(writer.write(4, 1, 8, 20, b"aa")),  # type 2: 4 + 2
        len(writer.write(4, 1, 8, 40, b"aa")),  # type 3: 1 + 2
        len(writer.write(4, 1, 9, 50, b"aaa")),  # type 1: 8 + 3
        len(writer.write(4, 1, 9, 10, b"aaa")),  # backwards: type 0
    ]
    assert sizes == [14, 6, 3, 11, 15]


_message = st.tuples(
    st.sampled_from([3, 4, 5, 6, 70, 400]),  # csid (1-, 2- and 3-byte basic headers)
    st.sampled_from([8, 9, 18, 20]),
    st.integers(0, 60),  # timestamp increment
    st.binary(max_size=700),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_message, max_size=20),
    st.sampled_from([1, 7, 128, 4096]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 0xFFFFFF + 20),
    st.lists(st.integers(1, 300), max_size=30),
)
def test_writer_reader_round_trip(
    messages: list[tuple[int, int, int, bytes]],
    chunk_size: int,
    compress: bool,
    ext_on_continuation: bool,
    start: int,
    splits: list[int],
) -> None:
    writer = ChunkWriter(128, compress=compress, ext_on_continuation=ext_on_continuation)
    data = bytearray(writer.write(2, 0, 1, 0, chunk_size.to_bytes(4, "big")))
    writer.chunk_size = chunk_size
    expected = [RtmpMessage(2, 0, 1, 0, chunk_size.to_bytes(4, "big"))]
    clock: dict[int, int] = {}
    for csid, type_id, step, payload in messages:
        ts = clock[csid] = clock.get(csid, start) + step
        data += writer.write(csid, 1, type_id, ts, payload)
        expected.append(RtmpMessage(csid, 1, type_id, ts, payload))
    reader = ChunkReader()
    got: list[RtmpMessage] = []
    pos = 0
    for n in splits:
        got += reader.feed(bytes(data[pos : pos + n]))
        pos += n
    got += reader.feed(bytes(data[pos:]))
    # With the extended timestamp left off continuations, a payload starting with the same
    # four bytes is ambiguous; everything else must round-trip exactly.
    assert got == expected or (not ext_on_continuation and start + 60 * 20 >= 0xFFFFFF)
    assert reader.buffered == 0 or got != expected


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_random_input_only_raises_chunk_error(data: bytes) -> None:
    with contextlib.suppress(ChunkError):
        ChunkReader(max_message_size=4096).feed(data)


def _video(type_id: int, first: bytes) -> bool:
    return type_id == 9


def test_parsing_pauses_at_the_first_chunk_of_an_announced_message() -> None:
    body = bytes(range(200)) + bytes(100)  # 300 bytes: 128 + 128 + 44
    first = h0(6, 4000, 300, 9, 1) + body[:128]
    second = basic_header(3, 6) + body[128:256]
    third = basic_header(3, 6) + body[256:]
    audio = h0(5, 3990, 2, 8, 1) + b"AA"
    head = MessageHead(6, 1, 9, 4000, body[:HEAD_BYTES], 300)
    reader = ChunkReader(announce=_video)
    # Split across feeds: reported at its first chunk, once.
    assert reader.feed(audio + first) == [RtmpMessage(5, 1, 8, 3990, b"AA")]
    assert reader.head == head
    assert reader.feed(second) == [] and reader.head is None
    assert reader.feed(third) == [RtmpMessage(6, 1, 9, 4000, body)] and reader.head is None
    # Whole in one feed: the same pause, with the rest of the input kept for `feed(b"")`.
    after = h0(5, 4010, 2, 8, 1) + b"BB"
    message = h0(6, 4040, 300, 9, 1) + body[:128] + second + third
    assert reader.feed(audio + message + after) == [RtmpMessage(5, 1, 8, 3990, b"AA")]
    assert reader.head == head._replace(timestamp=4040)
    assert reader.buffered == len(second + third + after) + 128
    assert reader.feed(b"") == [
        RtmpMessage(6, 1, 9, 4040, body), RtmpMessage(5, 1, 8, 4010, b"BB")
    ]
    assert reader.head is None and reader.buffered == 0
    # Input added while paused is parsed after what was left.
    reader.feed(h0(6, 4080, 300, 9, 1) + body[:128] + second)
    assert reader.head is not None
    assert reader.feed(third + after) == [
        RtmpMessage(6, 1, 9, 4080, body), RtmpMessage(5, 1, 8, 4010, b"BB")
    ]
    # A type not asked for, and a message that fits one chunk, never pause.
    audio_rest = basic_header(3, 5) + body[128:256] + basic_header(3, 5) + body[256:]
    assert len(reader.feed(h0(5, 4000, 300, 8, 1) + body[:128] + audio_rest)) == 1
    assert reader.head is None
    assert reader.feed(h0(6, 4100, 100, 9, 1) + body[:100]) == [
        RtmpMessage(6, 1, 9, 4100, body[:100])
    ]
    assert reader.head is None
    # A message aborted later was still reported (a hint: what follows decides).
    abort = h0(2, 0, 4, 2, 0) + (6).to_bytes(4, "big")
    assert reader.feed(h0(6, 4120, 300, 9, 1) + body[:128] + abort) == []
    assert reader.head is not None
    assert reader.feed(b"") == [RtmpMessage(2, 0, 2, 0, (6).to_bytes(4, "big"))]
    assert reader.buffered == 0
    # The predicate sees the type and the first bytes, and only its picks pause.
    picky = ChunkReader(announce=lambda type_id, first: first.startswith(b"\x00\x02"))
    assert picky.feed(first + second + third) == [RtmpMessage(6, 1, 9, 4000, body)]
    assert picky.head is None
    # A small chunk size gives a shorter head.
    small = ChunkReader(announce=_video)
    small.feed(scs(4) + h0(6, 0, 300, 9, 1) + body[:4])
    assert small.head == MessageHead(6, 1, 9, 0, body[:4], 300)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 400), max_size=12))
def test_any_split_gives_the_same_messages_and_heads(seed: bytes, cuts: list[int]) -> None:
    """Pausing at heads leaves messages, and where each head falls among them, independent of
    how the input is split (pauses are resumed at once)."""
    rng = random.Random(seed)
    writer = ChunkWriter(128, compress=True)
    data = b"".join(
        writer.write(
            rng.choice((4, 6)), 1, rng.choice((8, 9)), 40 * i, rng.randbytes(rng.randint(1, 500))
        )
        for i in range(rng.randint(1, 12))
    )

    def run(pieces: list[bytes]) -> list[object]:
        reader = ChunkReader(announce=_video)
        seen: list[object] = []
        for piece in pieces:
            seen += reader.feed(piece)
            while reader.head is not None:
                seen.append(reader.head)
                seen += reader.feed(b"")
        return seen

    pieces, at = [], 0
    for cut in cuts:
        pieces.append(data[at : at + cut])
        at += cut
    pieces.append(data[at:])
    assert run(pieces) == run([data])
