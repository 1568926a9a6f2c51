"""Server side of the simple RTMP handshake.

C0 (version) + C1 (1536 bytes) in, S0 + S1 + S2 out, then C2 in. S2 echoes C1, which is all
ffmpeg, OBS and GStreamer need when publishing; the Flash digest handshake is not implemented.
Only version 3 is accepted (6 and 8 are encrypted RTMPE).
"""

from __future__ import annotations

import enum
import os

from airclass.rtmp.errors import HandshakeError

RTMP_VERSION = 3
PACKET_SIZE = 1536


class HandshakeState(enum.Enum):
    WAIT_C0C1 = "wait C0+C1"
    WAIT_C2 = "wait C2"
    DONE = "done"


class ServerHandshake:
    """Incremental handshake: feed bytes, take bytes to send, then the leftover chunk stream."""

    __slots__ = ("_buf", "_out", "_random", "c1", "state")

    def __init__(self, random: bytes | None = None) -> None:
        """`random` fills S1's 1528 random bytes (tests pass fixed bytes)."""
        if random is None:
            random = os.urandom(PACKET_SIZE - 8)
        if len(random) != PACKET_SIZE - 8:
            raise ValueError("S1 random part must be 1528 bytes")
        self._random = random
        self._buf = bytearray()
        self._out = bytearray()
        self.state = HandshakeState.WAIT_C0C1
        self.c1 = b""

    @property
    def done(self) -> bool:
        return self.state is HandshakeState.DONE

    @property
    def buffered(self) -> int:
        """Bytes held between calls: never more than C0+C1+C2 (fuzz tests check it)."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> bytes:
        """Consume handshake bytes; returns whatever follows the handshake (chunk data)."""
        if self.state is HandshakeState.DONE:
            return data
        self._buf += data
        if self.state is HandshakeState.WAIT_C0C1:
            if self._buf and self._buf[0] != RTMP_VERSION:
                raise HandshakeError(f"unsupported RTMP version {self._buf[0]} (only 3)")
            if len(self._buf) < 1 + PACKET_SIZE:
                return b""
            self.c1 = bytes(self._buf[1 : 1 + PACKET_SIZE])
            del self._buf[: 1 + PACKET_SIZE]
            self._out.append(RTMP_VERSION)
            self._out += b"\x00\x00\x00\x00\x00\x00\x00\x00" + self._random
            self._out += self.c1
            self.state = HandshakeState.WAIT_C2
        if len(self._buf) < PACKET_SIZE:
            return b""
        # C2 should echo S1; publishers differ, and nothing depends on it, so it is not checked.
        rest = bytes(self._buf[PACKET_SIZE:])
        self._buf = bytearray()
        self.state = HandshakeState.DONE
        return rest

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
