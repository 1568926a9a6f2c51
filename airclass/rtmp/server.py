"""The asyncio RTMP listener: sockets in, `ServerConnection` in the middle, the hub out.

A thin adapter, in the manner of aioquic's `asyncio/protocol.py`: every protocol decision lives
in the sans-IO `ServerConnection`; this module owns sockets, timers, the authorizer call and the
hub publication. Whatever goes wrong on one connection is logged with the peer and path, told to
the peer with an `onStatus` error where possible, and ends that connection only.

The server-wide caps live here: connections in all and per client (`admission`), the deadline
to publish, and the number of live paths. Lines about refused or dropped peers are throttled
per client and kind (`LogThrottle`), and every peer-supplied string is logged through
`printable`, so neither a flood of peers nor a crafted stream name can flood or forge the log.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from airclass.clients import client_group
from airclass.logtext import LogThrottle, printable, skipped_note
from airclass.media.hub import Publication, StreamBusy, StreamHub
from airclass.rtmp.admission import ConnectionSlots, may_go_live
from airclass.rtmp.connection import (
    ConnectRequested,
    ConnState,
    Event,
    MediaReceived,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    ServerConnection,
)
from airclass.rtmp.errors import RtmpProtocolError
from airclass.rtmp.limits import RtmpLimits

__all__ = ["PublishAuthorizer", "PublishDenied", "RtmpLimits", "RtmpServer", "RtmpStats"]

log = logging.getLogger(__name__)

_CLOSE_GRACE = 5.0
"""Seconds a closing connection gets to flush its last words before it is aborted."""
REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two log lines of one kind (refused publish, protocol error, timeout...)
about one client: enough to see who and why, too few to fill a disk from a flood."""


class PublishDenied(Exception):
    """Raised by the authorizer to refuse a publish with an RTMP status code."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


PublishAuthorizer = Callable[[str, str, Mapping[str, str], str], tuple[str, str]]
"""authorize(app, name, query, client address) -> (path, owner); raises PublishDenied."""


@dataclass(slots=True)
class RtmpStats:
    """Counters since start (for metrics and logs)."""

    connections_total: int = 0
    connections_refused: int = 0
    publishes_accepted: int = 0
    publishes_rejected: int = 0
    protocol_errors: int = 0
    timeouts: int = 0
    bytes_received: int = 0


class _RtmpProtocol(asyncio.Protocol):
    def __init__(self, server: RtmpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._conn: ServerConnection | None = None
        self._pubs: dict[int, Publication] = {}
        self._peer = "?"
        self._last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._group = "?"
        self._slot = False
        """True while this connection holds one of the server's connection slots."""
        self._accepted_at = 0.0

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport (uvloop's TCPTransport is one without subclassing).
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._group = client_group(str(peer[0])) if isinstance(peer, tuple) else self._peer
        server = self._server
        full = server._slots.total >= server._slots.max_total
        refusal = server._slots.take(self._group)
        if refusal is not None:
            server.stats.connections_refused += 1
            # A full node is one condition, however many addresses knock: one line for all.
            self._warn(
                "refused",
                "rtmp %s: connection refused: %s",
                self._peer,
                refusal,
                client="*" if full else None,
            )
            self._closing = True
            self._transport.close()
            return
        self._slot = True
        self._conn = ServerConnection(server.limits, label=self._peer)
        server._protocols.add(self)
        server.stats.connections_total += 1
        self._accepted_at = self._last_rx = self._loop.time()
        self._arm_timer()
        log.debug("rtmp %s: connected", self._peer)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or self._closing:
            return
        self._last_rx = self._loop.time()
        self._server.stats.bytes_received += len(data)
        try:
            # Paused at each keyframe's announcement, so the segment it closes is listed
            # before the rest of the read (the keyframe itself, often) is parsed.
            events = conn.receive_data(data, pause=True)
            while True:
                decided = False
                for event in events:
                    decided |= self._dispatch(event)
                if not (decided or conn.input_pending):
                    break
                events = conn.receive_data(b"", pause=True)
        except RtmpProtocolError as exc:
            self._server.stats.protocol_errors += 1
            self._warn(
                "protocol",
                "rtmp %s %s: protocol error: %s",
                self._peer,
                self._paths(),
                printable(exc),
            )
        except Exception:
            log.exception("rtmp %s %s: internal error", self._peer, self._paths())
            conn.fail("Internal server error.")
        self._flush()
        if conn.should_close:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        log.debug("rtmp %s: disconnected (%s)", self._peer, exc or "closed")

    def release(self) -> None:
        """Forget this connection and close its publications (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closing = True
        self._server._protocols.discard(self)
        if self._slot:
            self._slot = False
            self._server._slots.give_back(self._group)
        for stream_id in list(self._pubs):
            self._end_publication(stream_id, "connection closed")

    # -- events -----------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> bool:
        """Act on one event; True when a publish was decided (queued input may follow)."""
        if isinstance(event, MediaReceived):
            pub = self._pubs.get(event.stream_id)
            if pub is not None:
                pub.send(event.event)
        elif isinstance(event, PublishRequested):
            self._publish(event)
            return True
        elif isinstance(event, MetadataReceived):
            meta = event.metadata
            log.info(
                "rtmp %s %s: metadata %sx%s@%s encoder=%s",
                self._peer,
                self._paths(),
                printable(meta.get("width"), 20),
                printable(meta.get("height"), 20),
                printable(meta.get("framerate"), 20),
                printable(meta.get("encoder"), 80),
            )
        elif isinstance(event, PublishStopped):
            self._end_publication(event.stream_id, "publisher stopped")
        elif isinstance(event, ConnectRequested):
            log.debug(
                "rtmp %s: connect app=%s tcUrl=%s flashVer=%s",
                self._peer,
                printable(event.app),
                printable(event.tc_url.partition("?")[0]),  # a query may hold a key
                printable(event.flash_ver),
            )
        return False

    def _publish(self, event: PublishRequested) -> None:
        conn = self._conn
        assert conn is not None
        server = self._server
        where = printable(f"{event.app}/{event.name}")
        try:
            client = self._peer.rsplit(":", 1)[0]  # the address, for the guessing limiter
            path, owner = server.authorize(event.app, event.name, event.query, client)
            live = server.hub.live_paths()
            if not may_go_live(path, live, server.limits.max_live_paths):
                raise PublishDenied(
                    "NetStream.Publish.Rejected",
                    f"This node already carries {len(live)} live streams, its most.",
                )
            pub = server.hub.publish(path, owner)
        except PublishDenied as denied:
            self._reject(event, where, denied.code, denied.description)
            return
        except StreamBusy:
            self._reject(
                event, where, "NetStream.Publish.BadName", f"{where} is already being published."
            )
            return
        except Exception:
            log.exception("rtmp %s %s: authorizing the publish failed", self._peer, where)
            self._reject(event, where, "NetStream.Publish.Failed", "Internal server error.")
            return
        stream_id = event.stream_id
        pub.on_takeover(lambda reason: self._taken_over(stream_id, reason))
        self._pubs[stream_id] = pub
        conn.accept_publish(stream_id)
        server.stats.publishes_accepted += 1
        log.info(
            "rtmp %s: publishing %s as %s (owner %s)", self._peer, where, path, printable(owner)
        )

    def _reject(self, event: PublishRequested, where: str, code: str, description: str) -> None:
        assert self._conn is not None
        self._server.stats.publishes_rejected += 1
        self._warn(
            "publish",
            "rtmp %s %s: publish refused: %s %s",
            self._peer,
            where,
            code,
            printable(description),
        )
        self._conn.reject_publish(event.stream_id, code, description)

    def _taken_over(self, stream_id: int, reason: str) -> None:
        pub = self._pubs.pop(stream_id, None)
        path = pub.path if pub is not None else "?"
        log.info("rtmp %s %s: publication ended: %s", self._peer, path, reason)
        if self._conn is not None:
            self._conn.fail(reason, "NetStream.Publish.BadName")
        self._flush()
        self._close()

    def _end_publication(self, stream_id: int, why: str) -> None:
        pub = self._pubs.pop(stream_id, None)
        if pub is None:
            return
        log.info(
            "rtmp %s %s: %s after %d frames, %d bytes",
            self._peer,
            pub.path,
            why,
            pub.frames_in,
            pub.bytes_in,
        )
        pub.close()

    # -- I/O --------------------------------------------------------------------------------

    def _warn(self, kind: str, msg: str, *args: object, client: str | None = None) -> None:
        """A WARNING about this peer, throttled per client (or `client`) and `kind`."""
        key = f"{client or self._group} {kind}"
        skipped = self._server._log_throttle.allow(key, self._loop.time())
        if skipped is not None:
            log.warning(msg + "%s", *args, skipped_note(skipped))

    def _paths(self) -> str:
        return ",".join(pub.path for pub in self._pubs.values()) or "-"

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or self._conn is None or transport.is_closing():
            return
        out = self._conn.data_to_send()
        if out:
            transport.write(out)
        limits = self._server.limits
        cap = (
            limits.write_buffer_max
            if self._conn.has_published
            else min(limits.write_buffer_max, limits.pre_publish_bytes)
        )
        if transport.get_write_buffer_size() > cap:
            self._warn(
                "unread", "rtmp %s %s: peer does not read, dropping it", self._peer, self._paths()
            )
            self.abort()

    def _close(self) -> None:
        """Close after flushing; abort if the peer does not take the last bytes in time."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        for stream_id in list(self._pubs):
            self._end_publication(stream_id, "connection closing")
        self._transport.close()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(_CLOSE_GRACE, self.abort)

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _arm_timer(self) -> None:
        """Wake at the nearest deadline still ahead: handshake, publish, or idle."""
        conn = self._conn
        assert conn is not None
        limits = self._server.limits
        when = self._last_rx + limits.idle_timeout
        if conn.state in (ConnState.HANDSHAKE, ConnState.WAIT_CONNECT):
            when = min(when, self._accepted_at + limits.handshake_timeout)
        if not conn.has_published:
            when = min(when, self._accepted_at + limits.publish_timeout)
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        conn = self._conn
        if conn is None or self._closing:
            return
        limits = self._server.limits
        now = self._loop.time()
        if (
            conn.state in (ConnState.HANDSHAKE, ConnState.WAIT_CONNECT)
            and now >= self._accepted_at + limits.handshake_timeout
        ):
            self._server.stats.timeouts += 1
            self._warn(
                "handshake",
                "rtmp %s: no connect within %.0f s, dropping",
                self._peer,
                limits.handshake_timeout,
            )
            self.abort()
            return
        if not conn.has_published and now >= self._accepted_at + limits.publish_timeout:
            self._server.stats.timeouts += 1
            self._warn(
                "deadline",
                "rtmp %s: no publish within %.0f s, closing",
                self._peer,
                limits.publish_timeout,
            )
            self._flush()
            self._close()
            return
        idle = now - self._last_rx
        if idle >= limits.idle_timeout:
            self._server.stats.timeouts += 1
            self._warn(
                "idle",
                "rtmp %s %s: nothing received for %.0f s, dropping",
                self._peer,
                self._paths(),
                idle,
            )
            self.abort()
            return
        self._arm_timer()


class RtmpServer:
    """Accepts RTMP publishers and feeds their media into the hub."""

    def __init__(
        self,
        hub: StreamHub,
        authorize: PublishAuthorizer,
        limits: RtmpLimits | None = None,
    ) -> None:
        self.hub = hub
        self.authorize = authorize
        self.limits = limits or RtmpLimits()
        self.stats = RtmpStats()
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._protocols: set[_RtmpProtocol] = set()
        self._slots = ConnectionSlots(
            self.limits.max_connections, self.limits.max_connections_per_address
        )
        self._log_throttle = LogThrottle(REFUSAL_LOG_INTERVAL)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _RtmpProtocol(self), host, port, reuse_address=True
        )
        log.info("rtmp: listening on %s:%d", host, self.port)

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """Also accept RTMPS (RTMP inside TLS) on `port`: the same connections once the TLS
        handshake is done, which has the RTMP handshake's time limit too."""
        loop = asyncio.get_running_loop()
        self._tls_server = await loop.create_server(
            lambda: _RtmpProtocol(self),
            host,
            port,
            reuse_address=True,
            ssl=context,
            ssl_handshake_timeout=self.limits.handshake_timeout,
        )
        log.info("rtmp: RTMPS listening on %s:%d", host, self.tls_port)

    async def close(self) -> None:
        """Stop listening and drop every connection, closing their publications."""
        servers = [s for s in (self._server, self._tls_server) if s is not None]
        self._server = self._tls_server = None
        for server in servers:
            server.close()
        for proto in list(self._protocols):
            proto.abort()
            proto.release()
        for server in servers:
            await server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not started")
        sockname: Any = self._server.sockets[0].getsockname()
        return int(sockname[1])

    @property
    def tls_port(self) -> int:
        if self._tls_server is None or not self._tls_server.sockets:
            raise RuntimeError("RTMPS is not started")
        sockname: Any = self._tls_server.sockets[0].getsockname()
        return int(sockname[1])

    @property
    def connections(self) -> int:
        """Connections currently open."""
        return len(self._protocols)

    @property
    def publishing(self) -> int:
        """Publications currently held by our connections."""
        return sum(len(proto._pubs) for proto in self._protocols)
