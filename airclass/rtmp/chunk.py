"""RTMP chunk streams: reassembling messages from chunks, and writing our own.

The reader keeps one input buffer and only ever deletes the consumed prefix once per `feed`, so
the cost is linear in the input; a chunk is handled only once its header and payload are both
in the buffer, which keeps the state untouched while bytes are missing (any split of the input
gives the same messages). Limits are checked from headers before payload is kept.

Timestamps: a type-0 header carries the absolute timestamp, types 1 and 2 a delta, and a type-3
header that starts a new message re-applies the stream's last delta (for a type-0 header that
delta is its timestamp field, as the spec and ffmpeg's writer have it). Results are absolute and
wrap at 2^32 ms. When a header used the extended timestamp, encoders disagree on whether the
type-3 continuation chunks repeat it, so the four bytes are skipped only if they match.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import NamedTuple

from airclass.rtmp.errors import ChunkError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE_SPEC = 0x7FFFFFFF
EXTENDED = 0xFFFFFF

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class RtmpMessage(NamedTuple):
    """One reassembled message."""

    csid: int
    """Chunk stream it arrived on."""
    stream_id: int
    """Message stream id (0 for the connection, else a createStream id)."""
    type_id: int
    """Message type (8 audio, 9 video, 20 command, ...)."""
    timestamp: int
    """Absolute timestamp in ms, 32 bits."""
    payload: bytes


class MessageHead(NamedTuple):
    """The start of a message whose first chunk is parsed and whose rest is not (yet)."""

    csid: int
    stream_id: int
    type_id: int
    timestamp: int
    head: bytes
    """Its first bytes (up to HEAD_BYTES; fewer with a smaller chunk size)."""
    length: int
    """The whole message's length."""


HEAD_BYTES = 16


class _ChunkStream:
    __slots__ = (
        "delta",
        "ext",
        "ext_value",
        "length",
        "partial",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.ext = False
        self.ext_value = 0
        self.partial: bytearray | None = None


class ChunkReader:
    """Incremental chunk stream parser: `feed(bytes) -> [RtmpMessage]`.

    Set Chunk Size and Abort are applied here, at the point they occur in the stream (later
    chunks depend on them), and still returned so the caller sees every message.

    With `announce(type_id, first_bytes)`, asked at the first chunk of each message that needs
    more than one, parsing pauses there for the messages it picks: `feed` returns, `head` holds
    that message's header and first bytes (so a video keyframe's timestamps are known before
    the rest of it has been parsed, or has even crossed the network), and `feed(b"")` goes on
    with the input left. So every such message is reported once, at the same point of the
    stream whatever the split of the input.
    """

    def __init__(
        self,
        *,
        max_chunk_size: int = 16 * 1024 * 1024,
        max_message_size: int = 8 * 1024 * 1024,
        max_chunk_streams: int = 64,
        max_pending_bytes: int = 16 * 1024 * 1024,
        announce: Callable[[int, bytes], bool] | None = None,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.announce = announce
        self.head: MessageHead | None = None
        """Set by a `feed` that paused at the first chunk of a message `announce` picked."""
        self.max_chunk_size = min(max_chunk_size, MAX_CHUNK_SIZE_SPEC)
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_pending_bytes = max_pending_bytes
        self._streams: dict[int, _ChunkStream] = {}
        self._buf = bytearray()
        self._start = 0
        """Where parsing resumes in `_buf` after a pause (the consumed prefix is deleted once
        parsing reaches the end of the input, so the cost stays linear in it)."""
        self._pending = 0

    @property
    def buffered(self) -> int:
        """Bytes held: unparsed input plus partially reassembled messages."""
        return len(self._buf) - self._start + self._pending

    @property
    def largest_partial(self) -> int:
        """The declared length of the longest message received in part (0 if none)."""
        return max(
            (st.length for st in self._streams.values() if st.partial is not None), default=0
        )

    def feed(self, data: bytes) -> list[RtmpMessage]:
        """Add `data`; returns the messages completed, up to a pause (see the class)."""
        buf = self._buf
        if data:
            buf += data
        self.head = None
        out: list[RtmpMessage] = []
        with memoryview(buf) as view:
            pos = self._parse(buf, view, self._start, out)
        if self.head is not None and pos < len(buf):
            self._start = pos
        else:
            del buf[:pos]
            self._start = 0
        return out

    def _parse(
        self, buf: bytearray, view: memoryview, pos: int, out: list[RtmpMessage]
    ) -> int:
        streams = self._streams
        end = len(buf)
        while pos < end:
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            p = pos + 1
            if csid == 0:
                if p + 1 > end:
                    break
                csid = 64 + buf[p]
                p += 1
            elif csid == 1:
                if p + 2 > end:
                    break
                csid = 64 + buf[p] + (buf[p + 1] << 8)
                p += 2
            st = streams.get(csid)
            if st is None:
                if fmt != 0:
                    raise ChunkError(f"chunk stream {csid} starts with a type-{fmt} header")
                if len(streams) >= self.max_chunk_streams:
                    raise ChunkError(f"more than {self.max_chunk_streams} chunk streams")
                st = _ChunkStream()
            continuing = fmt == 3 and st.partial is not None
            if continuing:
                length = st.length
                type_id = st.type_id
                stream_id = st.stream_id
                ext = st.ext
                ext_value = st.ext_value
                timestamp = st.timestamp
                delta = st.delta
                if ext:
                    if p + 4 > end:
                        break
                    if _U32.unpack_from(buf, p)[0] == ext_value:
                        p += 4
                received = len(st.partial)  # type: ignore[arg-type]
            else:
                received = 0
                if fmt == 3:
                    length = st.length
                    type_id = st.type_id
                    stream_id = st.stream_id
                    ext = st.ext
                    ext_value = st.ext_value
                    delta = st.delta
                    if ext:
                        if p + 4 > end:
                            break
                        ext_value = _U32.unpack_from(buf, p)[0]
                        p += 4
                    timestamp = (st.timestamp + delta) & 0xFFFFFFFF
                else:
                    size = 11 if fmt == 0 else 7 if fmt == 1 else 3
                    if p + size > end:
                        break
                    field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                    if fmt <= 1:
                        length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                        type_id = buf[p + 6]
                        if length > self.max_message_size:
                            raise ChunkError(
                                f"message of {length} bytes exceeds {self.max_message_size}"
                            )
                        stream_id = _U32LE.unpack_from(buf, p + 7)[0] if fmt == 0 else st.stream_id
                    else:
                        length = st.length
                        type_id = st.type_id
                        stream_id = st.stream_id
                    p += size
                    ext = field == EXTENDED
                    ext_value = 0
                    if ext:
                        if p + 4 > end:
                            break
                        ext_value = field = _U32.unpack_from(buf, p)[0]
                        p += 4
                    delta = field
                    timestamp = field if fmt == 0 else (st.timestamp + field) & 0xFFFFFFFF
            n = length - received
            if n > self.chunk_size:
                n = self.chunk_size
            if p + n > end:
                break
            # The whole chunk is here: commit.
            if csid not in streams:
                streams[csid] = st
            if not continuing:
                if st.partial is not None:
                    log.debug("chunk stream %d: new message replaces an unfinished one", csid)
                    self._pending -= len(st.partial)
                    st.partial = None
                st.length = length
                st.type_id = type_id
                st.stream_id = stream_id
                st.timestamp = timestamp
                st.delta = delta
                st.ext = ext
                st.ext_value = ext_value
            pos = p + n
            if received + n == length:
                if st.partial is None:
                    payload = bytes(view[p:pos])
                else:
                    st.partial += view[p:pos]
                    payload = bytes(st.partial)
                    self._pending -= received
                    st.partial = None
                out.append(RtmpMessage(csid, stream_id, type_id, timestamp, payload))
                if type_id in (MSG_SET_CHUNK_SIZE, MSG_ABORT):
                    self._control(type_id, payload)
            else:
                self._pending += n
                if self._pending > self.max_pending_bytes:
                    raise ChunkError(
                        f"more than {self.max_pending_bytes} bytes in partial messages"
                    )
                if st.partial is None:
                    st.partial = bytearray(view[p:pos])
                    if self.announce is not None:
                        first = bytes(view[p:min(pos, p + HEAD_BYTES)])
                        if self.announce(type_id, first):
                            self.head = MessageHead(
                                csid, stream_id, type_id, timestamp, first, length
                            )
                            break
                else:
                    st.partial += view[p:pos]
        return pos

    def _control(self, type_id: int, payload: bytes) -> None:
        if len(payload) < 4:
            raise ChunkError(f"control message type {type_id} shorter than 4 bytes")
        (value,) = _U32.unpack_from(payload)
        if type_id == MSG_SET_CHUNK_SIZE:
            if value == 0 or value > self.max_chunk_size:
                raise ChunkError(f"chunk size {value} out of range 1..{self.max_chunk_size}")
            self.chunk_size = value
        else:
            st = self._streams.get(value)
            if st is not None and st.partial is not None:
                self._pending -= len(st.partial)
                st.partial = None


def basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        rest = csid - 64
        return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} out of range 2..65599")


class _Sent(NamedTuple):
    stream_id: int
    type_id: int
    length: int
    timestamp: int
    field: int


class ChunkWriter:
    """Splits messages into chunks.

    By default every message gets a type-0 header (what we send is rare and small). With
    `compress=True` it picks type 1/2/3 headers the way ffmpeg does, which tests use to play an
    encoder. `ext_on_continuation` controls whether type-3 continuation chunks repeat an
    extended timestamp (encoders differ).
    """

    def __init__(
        self,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        compress: bool = False,
        ext_on_continuation: bool = True,
    ) -> None:
        self.chunk_size = chunk_size
        self.compress = compress
        self.ext_on_continuation = ext_on_continuation
        self._prev: dict[int, _Sent] = {}

    def write(
        self, csid: int, stream_id: int, type_id: int, timestamp: int, payload: bytes
    ) -> bytes:
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError("message longer than 16 MiB - 1")
        prev = self._prev.get(csid)
        fmt = 0
        field = timestamp
        if (
            self.compress
            and prev is not None
            and prev.stream_id == stream_id
            and timestamp >= prev.timestamp
        ):
            field = timestamp - prev.timestamp
            if prev.type_id == type_id and prev.length == length:
                fmt = 3 if field == prev.field else 2
            else:
                fmt = 1
        self._prev[csid] = _Sent(stream_id, type_id, length, timestamp, field)
        ext = field >= EXTENDED
        short = EXTENDED if ext else field
        out = bytearray(basic_header(fmt, csid))
        if fmt <= 2:
            out += short.to_bytes(3, "big")
        if fmt <= 1:
            out += length.to_bytes(3, "big")
            out.append(type_id)
        if fmt == 0:
            out += _U32LE.pack(stream_id)
        if ext:
            out += _U32.pack(field)
        continuation = basic_header(3, csid)
        if ext and self.ext_on_continuation:
            continuation += _U32.pack(field)
        size = self.chunk_size
        out += payload[:size]
        for start in range(size, length, size):
            out += continuation
            out += payload[start : start + size]
        return bytes(out)
