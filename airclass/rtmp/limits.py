"""Every limit a publisher can push against, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RtmpLimits:
    """Bounds enforced by the sans-IO layers and the asyncio server."""

    max_chunk_size: int = 16 * 1024 * 1024
    """Largest Set Chunk Size we accept from the peer (the spec allows up to 2^31-1)."""
    max_message_size: int = 8 * 1024 * 1024
    """Largest declared message length; checked from the header before any payload is kept."""
    max_pending_bytes: int = 16 * 1024 * 1024
    """Payload bytes held across all partially received messages."""
    max_chunk_streams: int = 64
    """Distinct chunk stream ids a connection may use."""
    max_amf_depth: int = 16
    """Nesting depth of AMF0 objects and arrays."""
    max_amf_elements: int = 10_000
    """AMF0 values in one command or data message."""
    max_streams: int = 8
    """Message streams (createStream) per connection."""
    max_queued_bytes: int = 8 * 1024 * 1024
    """Payload bytes parsed ahead while the server decides on a publish request."""
    out_chunk_size: int = 4096
    """Chunk size we announce and write with."""
    window_ack_size: int = 2_500_000
    """Window Acknowledgement Size and peer bandwidth we announce."""
    handshake_timeout: float = 10.0
    """Seconds from accept to a completed handshake (slowloris guard)."""
    idle_timeout: float = 30.0
    """Seconds without any received byte before a connection is dropped."""
    write_buffer_max: int = 1024 * 1024
    """Unsent bytes we hold for a peer that does not read before dropping it."""
