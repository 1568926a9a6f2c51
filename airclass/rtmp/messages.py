"""RTMP message payloads: protocol control, user control, commands and data.

Parsers take a payload and raise `MessageError` when it does not fit its type; builders return
payloads for `ChunkWriter.write`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from airclass.rtmp import amf0
from airclass.rtmp.errors import AmfError, MessageError

SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
SHARED_OBJECT_AMF3 = 16
COMMAND_AMF3 = 17
DATA_AMF0 = 18
SHARED_OBJECT_AMF0 = 19
COMMAND_AMF0 = 20
AGGREGATE = 22

# User control event types.
STREAM_BEGIN = 0
STREAM_EOF = 1
STREAM_DRY = 2
SET_BUFFER_LENGTH = 3
STREAM_IS_RECORDED = 4
PING_REQUEST = 6
PING_RESPONSE = 7

# Set Peer Bandwidth limit types.
LIMIT_HARD = 0
LIMIT_SOFT = 1
LIMIT_DYNAMIC = 2

# Chunk stream ids we write on.
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STREAM = 5

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def _u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise MessageError(f"{what} payload of {len(payload)} bytes, expected 4")
    value: int = _U32.unpack_from(payload)[0]
    return value


def parse_set_chunk_size(payload: bytes) -> int:
    return _u32(payload, "Set Chunk Size") & 0x7FFFFFFF


def parse_abort(payload: bytes) -> int:
    """Returns the chunk stream id whose partial message is dropped."""
    return _u32(payload, "Abort")


def parse_acknowledgement(payload: bytes) -> int:
    return _u32(payload, "Acknowledgement")


def parse_window_ack_size(payload: bytes) -> int:
    return _u32(payload, "Window Acknowledgement Size")


def parse_set_peer_bandwidth(payload: bytes) -> tuple[int, int]:
    """Returns (window size, limit type)."""
    if len(payload) < 5:
        raise MessageError(f"Set Peer Bandwidth payload of {len(payload)} bytes, expected 5")
    return _U32.unpack_from(payload)[0], payload[4]


def parse_user_control(payload: bytes) -> tuple[int, bytes]:
    """Returns (event type, event data)."""
    if len(payload) < 2:
        raise MessageError("User Control payload shorter than 2 bytes")
    return _U16.unpack_from(payload)[0], payload[2:]


def set_chunk_size(size: int) -> bytes:
    return _U32.pack(size)


def acknowledgement(sequence: int) -> bytes:
    return _U32.pack(sequence & 0xFFFFFFFF)


def window_ack_size(size: int) -> bytes:
    return _U32.pack(size)


def set_peer_bandwidth(size: int, limit: int = LIMIT_DYNAMIC) -> bytes:
    return _U32.pack(size) + bytes((limit,))


def user_control(event: int, data: bytes) -> bytes:
    return _U16.pack(event) + data


def stream_begin(stream_id: int) -> bytes:
    return user_control(STREAM_BEGIN, _U32.pack(stream_id))


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded command message (`connect`, `publish`, `_result`...)."""

    name: str
    """Command name."""
    transaction_id: float
    """Transaction id; 0 when the sender expects no reply."""
    command_object: Any
    """The command object (a dict for `connect`, usually None otherwise)."""
    args: list[Any] = field(default_factory=list)
    """Remaining arguments (for `publish`: name and type)."""


def _amf_values(payload: bytes, max_depth: int, max_elements: int) -> list[Any]:
    try:
        return amf0.decode(payload, max_depth=max_depth, max_elements=max_elements)
    except AmfError:
        raise
    except Exception as exc:  # defensive: the decoder should only raise AmfError
        raise AmfError(f"AMF0 decode failed: {exc}") from exc


def _strip_amf3_prefix(type_id: int, payload: bytes) -> bytes:
    # AMF3 command/data messages start with a format byte, 0 meaning "AMF0 follows".
    if type_id in (COMMAND_AMF3, DATA_AMF3):
        if not payload:
            raise MessageError("empty AMF3 message")
        if payload[0] != 0:
            raise MessageError(f"AMF3-encoded message (format byte {payload[0]}) is not supported")
        return payload[1:]
    return payload


def parse_command(
    type_id: int,
    payload: bytes,
    *,
    max_depth: int = amf0.DEFAULT_MAX_DEPTH,
    max_elements: int = amf0.DEFAULT_MAX_ELEMENTS,
) -> Command:
    values = _amf_values(_strip_amf3_prefix(type_id, payload), max_depth, max_elements)
    if len(values) < 2 or not isinstance(values[0], str):
        raise MessageError("command message without a name and transaction id")
    tid = values[1]
    if isinstance(tid, bool) or not isinstance(tid, float):
        raise MessageError(f"command {values[0]!r}: transaction id is not a number")
    obj = values[2] if len(values) > 2 else None
    return Command(values[0], tid, obj, values[3:])


def parse_data(
    type_id: int,
    payload: bytes,
    *,
    max_depth: int = amf0.DEFAULT_MAX_DEPTH,
    max_elements: int = amf0.DEFAULT_MAX_ELEMENTS,
) -> list[Any]:
    return _amf_values(_strip_amf3_prefix(type_id, payload), max_depth, max_elements)


def command(name: str, transaction_id: float, command_object: Any, *args: Any) -> bytes:
    """An AMF0 command payload (type 20)."""
    return amf0.encode(name, transaction_id, command_object, *args)


def status_info(level: str, code: str, description: str, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info
