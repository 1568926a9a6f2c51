"""The RTMP server connection as a sans-IO state machine.

Feed received bytes to `receive_data`, act on the events it returns, and write whatever
`data_to_send` hands back. The connection answers the publisher's housekeeping by itself
(connect, releaseStream, FCPublish, createStream, pings, acknowledgements); the one decision it
leaves to its owner is whether a publish may go ahead: after a `PublishRequested` event it stops
processing input (still parsing and queueing it, within a byte limit) until `accept_publish` or
`reject_publish` is called; call `receive_data(b"")` then to process what was queued.

A video keyframe longer than one chunk is announced (`KeyframeComing`) from its first chunk,
before the rest of it is parsed, whatever the split of the input. With `pause=True`,
`receive_data` returns right after such an announcement, so the owner can act on it (close the
segment the keyframe ends) before the rest of the input is parsed; `input_pending` then says to
call `receive_data(b"", pause=True)` again.

Until a publish is accepted, the peer gets `RtmpLimits.pre_publish_bytes` for any one message
and for what is held between calls (partial messages, unparsed input): the commands before a
publish are small, and a peer that never publishes must not hold the megabytes a publisher's
keyframes need. Both checks are made in stream order or on what is left after each call, so
they do not depend on how the input is split, and a publish followed at once by a large
keyframe in the same read is let through.

Errors: any `RtmpProtocolError` from a layer moves the connection to ERROR, queues an
`onStatus` error for a stream being published, and is re-raised; the owner sends the queued
bytes and closes. After a rejection (`should_close`), input is ignored.

One file, past the size of the others: it is one state table (handshake, connect, publish,
streaming, error) whose transitions read each other's state; the layers under it (handshake,
chunks, messages, AMF0, FLV) are apart already.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from airclass.logtext import printable
from airclass.media.frames import AudioConfig, Frame, KeyframeComing, VideoConfig
from airclass.rtmp import flv
from airclass.rtmp import messages as m
from airclass.rtmp.chunk import ChunkReader, ChunkWriter, MessageHead, RtmpMessage
from airclass.rtmp.errors import ChunkError, MessageError, RtmpProtocolError
from airclass.rtmp.handshake import ServerHandshake
from airclass.rtmp.limits import RtmpLimits

log = logging.getLogger(__name__)

FMS_VERSION = "FMS/3,0,1,123"
CAPABILITIES = 31.0


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The client sent `connect` (already answered with success)."""

    app: str
    """Application name without its query string (e.g. "live")."""
    tc_url: str
    """The tcUrl as sent (e.g. "rtmp://host:1935/live")."""
    flash_ver: str
    """The client's flashVer (e.g. "FMLE/3.0 (compatible; FMSc/1.0)" for OBS)."""
    query: dict[str, str] = field(default_factory=dict)
    """Query parameters found in the tcUrl and the app name."""


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with `accept_publish` or `reject_publish`."""

    stream_id: int
    """Message stream id the publish arrived on."""
    app: str
    """Application name from `connect`, without its query string."""
    name: str
    """Publish name (stream key) without its query string."""
    query: dict[str, str] = field(default_factory=dict)
    """Query parameters of tcUrl, app and publish name merged, the publish name's winning."""


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    """An `@setDataFrame`/`onMetaData` on a publishing stream."""

    stream_id: int
    """Message stream id."""
    metadata: dict[str, Any]
    """The metadata object (width, height, framerate, encoder...)."""


@dataclass(frozen=True, slots=True)
class MediaReceived:
    """A decoder configuration or a frame on a publishing stream."""

    stream_id: int
    """Message stream id."""
    event: VideoConfig | AudioConfig | Frame | KeyframeComing
    """The parsed FLV payload (or, for a keyframe still arriving, its timestamps)."""


@dataclass(frozen=True, slots=True)
class PublishStopped:
    """The publisher ended a publish (FCUnpublish, closeStream or deleteStream)."""

    stream_id: int
    """Message stream id that stopped publishing."""


Event = ConnectRequested | PublishRequested | MetadataReceived | MediaReceived | PublishStopped


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"
    WAIT_CONNECT = "wait connect"
    CONNECTED = "connected"
    CLOSING = "closing"
    ERROR = "error"


class StreamState(enum.Enum):
    CREATED = "created"
    PENDING = "publish pending"
    PUBLISHING = "publishing"
    STOPPED = "stopped"


def _split_query(text: str) -> tuple[str, dict[str, str]]:
    base, sep, query = text.partition("?")
    return base, (dict(parse_qsl(query, keep_blank_values=True)) if sep else {})


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _keyframe_start(type_id: int, first: bytes) -> bool:
    """Where the chunk reader pauses: the first chunk of an AVC keyframe."""
    return type_id == m.VIDEO and flv.starts_avc_keyframe(first)


class ServerConnection:
    """One publisher's RTMP session, without I/O."""

    def __init__(
        self,
        limits: RtmpLimits | None = None,
        *,
        label: str = "",
        handshake_random: bytes | None = None,
    ) -> None:
        self.limits = limits = limits or RtmpLimits()
        self.label = label
        self.state = ConnState.HANDSHAKE
        self._handshake = ServerHandshake(handshake_random)
        self._reader = ChunkReader(
            max_chunk_size=limits.max_chunk_size,
            max_message_size=limits.max_message_size,
            max_chunk_streams=limits.max_chunk_streams,
            max_pending_bytes=limits.max_pending_bytes,
            announce=_keyframe_start,
        )
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._queue: deque[RtmpMessage] = deque()
        self._queued_bytes = 0
        self._streams: dict[int, StreamState] = {}
        self._names: dict[int, str] = {}
        self._next_stream_id = 1
        self._pending = 0
        self._published = False
        self.app = ""
        self.tc_url = ""
        self._connect_query: dict[str, str] = {}
        self._paused = False
        self.bytes_received = 0
        self._last_ack = 0
        self._peer_window = 0
        self.object_encoding = 0.0

    # -- public API -------------------------------------------------------------------------

    @property
    def should_close(self) -> bool:
        """True once the connection has said its last word (rejection, play, error)."""
        return self.state in (ConnState.CLOSING, ConnState.ERROR)

    @property
    def buffered(self) -> int:
        """Received bytes held between calls: handshake, chunk reassembly and the queue kept
        while a publish is being decided. Bounded by `RtmpLimits`; fuzz tests check it."""
        return self._handshake.buffered + self._reader.buffered + self._queued_bytes

    @property
    def publishing(self) -> list[int]:
        """Stream ids currently accepted for publishing."""
        return [sid for sid, st in self._streams.items() if st is StreamState.PUBLISHING]

    @property
    def has_published(self) -> bool:
        """True once a publish has been accepted on this connection (the pre-publish caps no
        longer apply)."""
        return self._published

    @property
    def input_pending(self) -> bool:
        """True when `receive_data(..., pause=True)` returned at an announcement with input
        left to parse."""
        return self._paused

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, *, pause: bool = False) -> list[Event]:
        """Process received bytes; raises RtmpProtocolError (once) on a protocol violation.
        `pause`: return after a keyframe's announcement (see the module)."""
        self._paused = False
        if self.state is ConnState.ERROR:
            raise RtmpProtocolError("connection already failed")
        if self.state is ConnState.CLOSING:
            return []
        events: list[Event] = []
        try:
            self._receive(data, events, pause)
        except RtmpProtocolError as exc:
            self._fail(str(exc))
            raise
        return events

    def accept_publish(self, stream_id: int) -> None:
        """Let a requested publish go ahead (sends NetStream.Publish.Start)."""
        self._decide(stream_id)
        self._streams[stream_id] = StreamState.PUBLISHING
        self._published = True
        name = self._names.get(stream_id, "")
        self._send(m.CSID_CONTROL, 0, m.USER_CONTROL, m.stream_begin(stream_id))
        self._on_status(
            stream_id, "status", "NetStream.Publish.Start", f"{name} is now published.", name
        )

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        """Refuse a requested publish: onStatus error, then the owner should close."""
        self._decide(stream_id)
        self._streams[stream_id] = StreamState.CREATED
        self._on_status(stream_id, "error", code, description, self._names.get(stream_id, ""))
        self.state = ConnState.CLOSING
        self._queue.clear()
        self._queued_bytes = 0

    def fail(self, description: str, code: str = "NetStream.Publish.Failed") -> None:
        """End the session from our side, telling every publishing stream why."""
        if self.should_close:
            return
        for stream_id, st in self._streams.items():
            if st in (StreamState.PUBLISHING, StreamState.PENDING):
                self._on_status(stream_id, "error", code, description, self._names[stream_id])
        self.state = ConnState.CLOSING

    # -- internals --------------------------------------------------------------------------

    def _decide(self, stream_id: int) -> None:
        if self._streams.get(stream_id) is not StreamState.PENDING:
            raise RuntimeError(f"stream {stream_id} has no pending publish")
        self._pending -= 1

    def _fail(self, reason: str) -> None:
        if self.state is not ConnState.CLOSING:
            for stream_id, st in self._streams.items():
                if st in (StreamState.PUBLISHING, StreamState.PENDING):
                    self._on_status(
                        stream_id, "error", "NetStream.Failed", reason, self._names[stream_id]
                    )
        self.state = ConnState.ERROR
        self._queue.clear()
        self._queued_bytes = 0

    def _send(self, csid: int, stream_id: int, type_id: int, payload: bytes) -> None:
        self._out += self._writer.write(csid, stream_id, type_id, 0, payload)

    def _send_command(self, stream_id: int, name: str, tid: float, obj: Any, *args: Any) -> None:
        csid = m.CSID_COMMAND if stream_id == 0 else m.CSID_STREAM
        self._send(csid, stream_id, m.COMMAND_AMF0, m.command(name, tid, obj, *args))

    def _on_status(
        self, stream_id: int, level: str, code: str, description: str, name: str
    ) -> None:
        info = m.status_info(level, code, description, details=name, clientid="airclass")
        self._send_command(stream_id, "onStatus", 0.0, None, info)

    def _receive(self, data: bytes, events: list[Event], pause: bool) -> None:
        reader = self._reader
        if data:
            self.bytes_received += len(data)
            if self.state is ConnState.HANDSHAKE:
                data = self._handshake.receive_data(data)
                self._out += self._handshake.data_to_send()
                if not self._handshake.done:
                    return
                self.state = ConnState.WAIT_CONNECT
            if self._peer_window and self.bytes_received - self._last_ack >= self._peer_window:
                self._last_ack = self.bytes_received
                self._send(m.CSID_CONTROL, 0, m.ACKNOWLEDGEMENT, m.acknowledgement(self._last_ack))
        if data or reader.head is not None:  # new input, or parsing paused at a head
            self._enqueue(reader.feed(data))
        queue = self._queue
        while True:
            while queue and not self._pending and not self.should_close:
                msg = queue.popleft()
                self._queued_bytes -= len(msg.payload)
                self._handle(msg, events)
            head = reader.head
            if head is None:
                break
            # After every message before it; a hint, so dropped while messages wait.
            if not queue and not self.should_close and self._announce(head, events) and pause:
                self._paused = True
                break
            self._enqueue(reader.feed(b""))
        if self._queued_bytes > self.limits.max_queued_bytes:
            raise RtmpProtocolError(
                f"more than {self.limits.max_queued_bytes} bytes sent while publish was pending"
            )
        if not self._published and not self._pending and not self.should_close:
            cap = self.limits.pre_publish_bytes
            if reader.largest_partial > cap:
                raise ChunkError(
                    f"message of {reader.largest_partial} bytes before a publish (at most {cap})"
                )
            if reader.buffered > cap:
                raise ChunkError(f"more than {cap} bytes held before a publish")

    def _enqueue(self, messages: list[RtmpMessage]) -> None:
        for msg in messages:
            self._queue.append(msg)
            self._queued_bytes += len(msg.payload)

    def _handle(self, msg: RtmpMessage, events: list[Event]) -> None:
        t = msg.type_id
        if not self._published and len(msg.payload) > self.limits.pre_publish_bytes:
            raise MessageError(
                f"message of {len(msg.payload)} bytes before a publish"
                f" (at most {self.limits.pre_publish_bytes})"
            )
        if t == m.VIDEO or t == m.AUDIO:
            self._media(msg, events)
        elif t == m.COMMAND_AMF0 or t == m.COMMAND_AMF3:
            cmd = m.parse_command(
                t,
                msg.payload,
                max_depth=self.limits.max_amf_depth,
                max_elements=self.limits.max_amf_elements,
            )
            self._command(msg.stream_id, cmd, events)
        elif t == m.DATA_AMF0 or t == m.DATA_AMF3:
            self._data(msg, events)
        elif t == m.SET_CHUNK_SIZE:
            log.debug("%s: peer chunk size %d", self.label, m.parse_set_chunk_size(msg.payload))
        elif t == m.WINDOW_ACK_SIZE:
            self._peer_window = m.parse_window_ack_size(msg.payload)
        elif t == m.USER_CONTROL:
            event, body = m.parse_user_control(msg.payload)
            if event == m.PING_REQUEST:
                self._send(
                    m.CSID_CONTROL, 0, m.USER_CONTROL, m.user_control(m.PING_RESPONSE, body[:4])
                )
        elif t == m.AGGREGATE:
            raise MessageError("aggregate messages are not supported from publishers")
        elif t in (m.ABORT, m.ACKNOWLEDGEMENT, m.SET_PEER_BANDWIDTH):
            pass
        else:
            log.debug("%s: ignoring message type %d", self.label, t)

    def _announce(self, head: MessageHead, events: list[Event]) -> bool:
        """An AVC keyframe whose first chunk is parsed: announce it if its stream is being
        published. True if announced."""
        if self._streams.get(head.stream_id) is not StreamState.PUBLISHING:
            return False
        coming = flv.keyframe_coming(head.timestamp, head.head)
        if coming is None:
            return False
        events.append(MediaReceived(head.stream_id, coming))
        return True

    def _media(self, msg: RtmpMessage, events: list[Event]) -> None:
        st = self._streams.get(msg.stream_id)
        if st is StreamState.STOPPED or (st is None and 0 < msg.stream_id < self._next_stream_id):
            return  # in flight when the publisher stopped or deleted the stream
        if st is not StreamState.PUBLISHING:
            raise MessageError(f"media on stream {msg.stream_id} before an accepted publish")
        if msg.type_id == m.VIDEO:
            event: VideoConfig | AudioConfig | Frame | None = flv.parse_video(
                msg.timestamp, msg.payload
            )
        else:
            event = flv.parse_audio(msg.timestamp, msg.payload)
        if event is not None:
            events.append(MediaReceived(msg.stream_id, event))

    def _data(self, msg: RtmpMessage, events: list[Event]) -> None:
        values = m.parse_data(
            msg.type_id,
            msg.payload,
            max_depth=self.limits.max_amf_depth,
            max_elements=self.limits.max_amf_elements,
        )
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) < 2 or values[0] != "onMetaData" or not isinstance(values[1], dict):
            log.debug("%s: ignoring data message %s", self.label, printable(values[:1]))
            return
        if self._streams.get(msg.stream_id) is not StreamState.PUBLISHING:
            log.debug("%s: metadata on stream %d that is not publishing", self.label, msg.stream_id)
            return
        events.append(MetadataReceived(msg.stream_id, dict(values[1])))

    def _command(self, stream_id: int, cmd: m.Command, events: list[Event]) -> None:
        name = cmd.name
        tid = cmd.transaction_id
        if self.state is ConnState.WAIT_CONNECT:
            if name != "connect":
                raise MessageError(f"'{printable(name)}' before connect")
            self._connect(cmd, events)
            return
        if name == "connect":
            raise MessageError("second connect on one connection")
        if name in ("releaseStream", "FCPublish"):
            if name == "FCPublish":
                stream = _first_str(cmd.args).partition("?")[0]
                info = m.status_info("status", "NetStream.Publish.Start", stream)
                self._send_command(0, "onFCPublish", 0.0, None, info)
            if tid:
                self._send_command(0, "_result", tid, None, None)
        elif name == "createStream":
            if len(self._streams) >= self.limits.max_streams:
                raise MessageError(f"more than {self.limits.max_streams} createStream calls")
            new_id = self._next_stream_id
            self._next_stream_id += 1
            self._streams[new_id] = StreamState.CREATED
            self._send_command(0, "_result", tid, None, float(new_id))
        elif name == "publish":
            self._publish(stream_id, cmd, events)
        elif name in ("play", "play2"):
            log.debug(
                "%s: refusing to play %s: this server only ingests",
                self.label,
                printable(_first_str(cmd.args).partition("?")[0]),  # a query may hold a token
            )
            self._on_status(
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                "Playback is not available over RTMP; use HLS.",
                _first_str(cmd.args),
            )
            self.state = ConnState.CLOSING
        elif name == "FCUnpublish":
            target = _first_str(cmd.args).partition("?")[0]
            for sid, st in self._streams.items():
                if st is StreamState.PUBLISHING and self._names.get(sid) == target:
                    self._stop(sid, events)
            if tid:
                self._send_command(0, "_result", tid, None, None)
        elif name in ("deleteStream", "closeStream"):
            sid = stream_id
            if name == "deleteStream":
                arg = cmd.args[0] if cmd.args else None
                if isinstance(arg, float) and arg.is_integer():
                    sid = int(arg)
            if self._streams.get(sid) is StreamState.PUBLISHING:
                self._stop(sid, events)
            if name == "deleteStream" and sid in self._streams:
                del self._streams[sid]
        elif name in ("_result", "_error", "onBWDone", "_checkbw", "getStreamLength"):
            if tid and name in ("_checkbw", "getStreamLength"):
                self._send_command(stream_id, "_result", tid, None, None)
        else:
            log.debug("%s: ignoring unknown command %s", self.label, printable(name))
            if tid:
                info = m.status_info(
                    "error", "NetConnection.Call.Failed", f"Method not found ({name})."
                )
                self._send_command(stream_id, "_error", tid, None, info)

    def _connect(self, cmd: m.Command, events: list[Event]) -> None:
        obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
        app, app_query = _split_query(_str(obj.get("app")).strip("/"))
        self.app = app
        self.tc_url = _str(obj.get("tcUrl"))
        query = dict(parse_qsl(urlsplit(self.tc_url).query, keep_blank_values=True))
        query.update(app_query)
        self._connect_query = query
        encoding = obj.get("objectEncoding", 0.0)
        self.object_encoding = encoding if isinstance(encoding, float) else 0.0
        limits = self.limits
        self._send(m.CSID_CONTROL, 0, m.WINDOW_ACK_SIZE, m.window_ack_size(limits.window_ack_size))
        self._send(
            m.CSID_CONTROL,
            0,
            m.SET_PEER_BANDWIDTH,
            m.set_peer_bandwidth(limits.window_ack_size, m.LIMIT_DYNAMIC),
        )
        self._send(m.CSID_CONTROL, 0, m.SET_CHUNK_SIZE, m.set_chunk_size(limits.out_chunk_size))
        self._writer.chunk_size = limits.out_chunk_size
        self._send_command(
            0,
            "_result",
            cmd.transaction_id,
            {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES},
            m.status_info(
                "status",
                "NetConnection.Connect.Success",
                "Connection succeeded.",
                objectEncoding=self.object_encoding,
            ),
        )
        self.state = ConnState.CONNECTED
        events.append(ConnectRequested(app, self.tc_url, _str(obj.get("flashVer")), dict(query)))

    def _publish(self, stream_id: int, cmd: m.Command, events: list[Event]) -> None:
        st = self._streams.get(stream_id)
        if st is None:
            raise MessageError(f"publish on stream {stream_id} that was not created")
        if st in (StreamState.PENDING, StreamState.PUBLISHING):
            raise MessageError(f"second publish on stream {stream_id}")
        raw_name = _first_str(cmd.args)
        name, name_query = _split_query(raw_name.strip("/"))
        self._names[stream_id] = name
        self._streams[stream_id] = StreamState.PENDING
        self._pending += 1
        if not name:
            self.reject_publish(stream_id, "NetStream.Publish.BadName", "Empty stream name.")
            return
        query = dict(self._connect_query)
        query.update(name_query)
        events.append(PublishRequested(stream_id, self.app, name, query))

    def _stop(self, stream_id: int, events: list[Event]) -> None:
        self._streams[stream_id] = StreamState.STOPPED
        name = self._names.get(stream_id, "")
        self._on_status(
            stream_id, "status", "NetStream.Unpublish.Success", f"{name} is now unpublished.", name
        )
        events.append(PublishStopped(stream_id))


def _first_str(args: list[Any]) -> str:
    return args[0] if args and isinstance(args[0], str) else ""
