"""The one error family of the RTMP ingest.

Every layer raises a subclass of `RtmpProtocolError` when the peer sends something we will not
accept; the server turns any of them into a log line, an `onStatus` error where possible, and a
close. Nothing else escapes the sans-IO layers on bad input.
"""

from __future__ import annotations


class RtmpProtocolError(Exception):
    """The peer broke the protocol or pushed past one of our limits."""


class AmfError(RtmpProtocolError):
    """Malformed or over-limit AMF0 data."""


class HandshakeError(RtmpProtocolError):
    """A handshake we do not speak (bad version, encrypted RTMP)."""


class ChunkError(RtmpProtocolError):
    """A chunk stream that is malformed or exceeds a limit."""


class MessageError(RtmpProtocolError):
    """A message whose payload does not match its type."""


class FlvError(RtmpProtocolError):
    """An audio or video payload that cannot be parsed."""


class UnsupportedCodec(FlvError):
    """A codec we do not package (only H.264 video and AAC audio are)."""
