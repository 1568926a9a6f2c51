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
    pre_publish_bytes: int = 64 * 1024
    """Until a publish is accepted: the largest message, the bytes held in partial messages
    and unparsed input together, and the unsent replies held for a peer that does not read.
    What an encoder sends before publishing (Set Chunk Size, connect, releaseStream,
    FCPublish, createStream, publish) is a few hundred bytes a message, so this leaves room
    for long URLs and keys; without it a peer that never publishes could make us hold
    `max_pending_bytes` (and `write_buffer_max`) for nothing."""
    publish_timeout: float = 15.0
    """Seconds from accept to an accepted publish. An encoder publishes within a second of
    connecting; a peer that only holds its connection open is closed here rather than at
    `idle_timeout`, which pings can keep from ever firing."""
    max_connections: int = 64
    """RTMP connections open at once, in all. A node takes the few publishers of its school
    (see `max_live_paths`), each with room for an encoder's reconnect overlapping its old
    connection; beyond that a connection is refused at accept."""
    max_connections_per_address: int = 8
    """RTMP connections open at once from one client (an IPv4 address or an IPv6 /64). A
    teacher's PC publishes one stream, maybe two (camera and screen), and reconnects before
    the old connection times out; a few teachers may share a NAT address."""
    max_live_paths: int = 16
    """Paths published at once on this node: the classes of a school live on one node, with
    margin. A publish beyond it is refused (NetStream.Publish.Rejected), so that one key cannot
    make the node package and hold rings for any number of streams."""
