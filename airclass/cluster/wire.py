"""The control plane's wire: what a slave sends the master and what the master answers.

Both sides import these frozen dataclasses, so a field is named, typed and checked in one
place: the master parses what slaves send with `from_json` (a malformed body is a 400 with
`WireError.reason`), slaves parse the master's replies the same way, and each side builds what
it sends with `to_json`. Pure: no I/O.

- `POST /cluster/register`: `Registration` → `ClusterView` (carrying the registration secret
  that binds this node's later heartbeats and its unregister to this registration);
- `POST /cluster/stats`: `Heartbeat` → `ClusterView`, or 404 `{"register": true}`;
- `POST /cluster/unregister`: `Unregister` → `{"ok", "node_id", "removed"}`.

Every URL that crosses the wire is checked by `node_url`: it ends up in viewers' playlists and
in the relay's requests, so a URL with spaces, line breaks, quotes or a path is refused, not
passed on.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

MAX_STATS_EXTRA: Final = 32
MAX_STREAMS: Final = 256
MAX_STRING: Final = 256
MAX_URL: Final = 512
MAX_PEERS: Final = 1024
HTTP_SCHEMES: Final = ("http", "https")
RTMP_SCHEMES: Final = ("rtmp", "rtmps")
NODE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REGISTRATION: Final = re.compile(r"[0-9a-f]{32}")
"""A registration secret: 128 random bits in hex."""
_URL_CHARS: Final = re.compile(r"[A-Za-z0-9._~:/\[\]-]+")
"""Characters a node's base URL may hold: scheme, host (names, IPv4, bracketed IPv6), port."""


class WireError(ValueError):
    """A control-plane message is malformed; `reason` is short and safe to return (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def node_url(value: object, schemes: Iterable[str] = HTTP_SCHEMES, name: str = "url") -> str:
    """A node's base URL (`scheme://host[:port]`, no trailing slash), or `WireError`."""
    if not isinstance(value, str) or len(value) > MAX_URL or not _URL_CHARS.fullmatch(value):
        raise WireError(f"{name} invalid")
    value = value.rstrip("/")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise WireError(f"{name} invalid") from None
    if (
        parts.scheme not in tuple(schemes)
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or port == 0
    ):
        raise WireError(f"{name} invalid")
    return value


def stream_path(value: object, reason: str = "stream path invalid") -> str:
    """A stream path as sent (`app/stream`), or `WireError(reason)`."""
    if not isinstance(value, str) or not value or len(value) > MAX_STRING:
        raise WireError(reason)
    return value.strip("/")


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One heartbeat's statistics. `None` means "not reported"."""

    connections: int
    """Viewers connected now."""
    cpu: float | None = None
    """Percent of the machine's CPU."""
    memory: float | None = None
    """Percent of the machine's memory."""
    max_connections: int | None = None
    """Seats (the node's `--max-connections`)."""
    streams: frozenset[str] | None = None
    """Paths this node is origin of: a publisher is live here."""
    serving: frozenset[str] | None = None
    """Every path this node serves (origin or relayed)."""
    bandwidth: float | None = None
    """Bytes per second sent to viewers."""
    sessions_opened: int | None = None
    """Viewer sessions opened since the node started: lets the master reconcile routing."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other scalar figures (at most `MAX_STATS_EXTRA`), shown to operators."""

    @classmethod
    def from_json(cls, stats: object) -> NodeStats:
        if not isinstance(stats, Mapping):
            raise WireError("stats must be an object")
        if "connections" not in stats:
            raise WireError("stats.connections missing")
        extra: dict[str, Any] = {}
        for key, value in stats.items():
            if key in _STATS_KEYS or len(extra) >= MAX_STATS_EXTRA:
                continue
            if isinstance(key, str) and len(key) <= 64 and _is_scalar(value):
                extra[key] = value
        return cls(
            connections=_int(stats, "connections", "stats.connections", minimum=0),
            cpu=_opt_number(stats, "cpu", "stats.cpu"),
            memory=_opt_number(stats, "memory", "stats.memory"),
            max_connections=_opt_int(stats, "max_connections", "stats.max_connections", 1),
            streams=_opt_paths(stats, "streams", "stats.streams"),
            serving=_opt_paths(stats, "serving", "stats.serving"),
            bandwidth=_opt_number(stats, "bandwidth", "stats.bandwidth"),
            sessions_opened=_opt_int(
                stats, "sessions_opened", "stats.sessions_opened", 0, 2**63 - 1
            ),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"connections": self.connections}
        for key in ("cpu", "memory", "max_connections", "bandwidth", "sessions_opened"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.streams is not None:
            body["streams"] = sorted(self.streams)
        if self.serving is not None:
            body["serving"] = sorted(self.serving)
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


_STATS_KEYS: Final = frozenset(
    ("connections", "cpu", "memory", "max_connections", "streams", "serving", "bandwidth",
     "sessions_opened")
)


@dataclass(frozen=True, slots=True)
class Registration:
    """A slave announcing itself. URLs are public bases, without a trailing slash."""

    node_id: str
    api_url: str
    """e.g. `http://slave-1:8000`"""
    hls_url: str
    """e.g. `http://slave-1:8888`; a stream is at `{hls_url}/live/stream/index.m3u8`."""
    rtmp_url: str
    """e.g. `rtmp://slave-1:1935`"""
    max_connections: int = 150
    node_name: str = ""
    """Shown to operators; defaults to `node_id`."""
    stats: NodeStats | None = None
    """Optional first statistics, sent with the registration (e.g. after a master restart)."""

    @classmethod
    def from_json(cls, body: object) -> Registration:
        if not isinstance(body, Mapping):
            raise WireError("body must be an object")
        node_id = _node_id(body)
        node_name = body.get("node_name") or node_id
        if not isinstance(node_name, str) or len(node_name) > MAX_STRING:
            raise WireError("node_name invalid")
        stats = body.get("stats")
        return cls(
            node_id=node_id,
            node_name=node_name,
            api_url=node_url(body.get("api_url"), HTTP_SCHEMES, "api_url"),
            hls_url=node_url(body.get("hls_url"), HTTP_SCHEMES, "hls_url"),
            rtmp_url=node_url(body.get("rtmp_url"), RTMP_SCHEMES, "rtmp_url"),
            max_connections=(
                _int(body, "max_connections", "max_connections", minimum=1)
                if "max_connections" in body
                else 150
            ),
            stats=None if stats is None else NodeStats.from_json(stats),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "node_id": self.node_id,
            "node_name": self.node_name or self.node_id,
            "api_url": self.api_url,
            "hls_url": self.hls_url,
            "rtmp_url": self.rtmp_url,
            "max_connections": self.max_connections,
        }
        if self.stats is not None:
            body["stats"] = self.stats.to_json()
        return body


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A registered slave's periodic report."""

    node_id: str
    registration: str
    """The secret the master returned when this node registered."""
    stats: NodeStats

    @classmethod
    def from_json(cls, body: object) -> Heartbeat:
        if not isinstance(body, Mapping):
            raise WireError("body must be an object")
        return cls(_node_id(body), _registration(body), NodeStats.from_json(body.get("stats")))

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "registration": self.registration,
            "stats": self.stats.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Unregister:
    """A slave leaving (on shutdown)."""

    node_id: str
    registration: str

    @classmethod
    def from_json(cls, body: object) -> Unregister:
        if not isinstance(body, Mapping):
            raise WireError("body must be an object")
        return cls(_node_id(body), _registration(body))

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "registration": self.registration}


@dataclass(frozen=True, slots=True)
class StreamOrigin:
    """Where a live stream's publisher is: the node edges relay it from."""

    node_id: str
    hls_url: str
    """The origin's HLS base, e.g. `http://10.0.0.5:8888`."""
    api_url: str
    """The origin's API base, where its relay endpoints are."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another serving node, a candidate backup for this node's viewers."""

    node_id: str
    hls_url: str
    api_url: str
    status: str
    """healthy, warning or critical."""
    load_percentage: float


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The master's reply to a registration or heartbeat: the cluster as the master sees it."""

    node_id: str
    """The node the reply is for."""
    streams: Mapping[str, StreamOrigin]
    """The origin of every live stream (one node per path, cluster-wide)."""
    peers: tuple[Peer, ...]
    """The other serving nodes."""
    registration: str = ""
    """The registration secret (register replies only)."""
    refused: frozenset[str] = frozenset()
    """Paths this node claimed to publish that another node owns: its publishers must stop."""

    @classmethod
    def from_json(cls, reply: object) -> ClusterView:
        """Parse a reply. A malformed entry is skipped, not the whole view: one bad peer must
        not stop a slave from following the others."""
        if not isinstance(reply, Mapping):
            raise WireError("reply must be an object")
        node_id = reply.get("node_id")
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            raise WireError("node_id invalid")
        streams: dict[str, StreamOrigin] = {}
        raw_streams = reply.get("streams")
        if isinstance(raw_streams, Mapping):
            for path, info in list(raw_streams.items())[:MAX_STREAMS]:
                try:
                    if not isinstance(info, Mapping):
                        raise WireError("stream invalid")
                    origin = info.get("origin")
                    if not isinstance(origin, str) or not NODE_ID.fullmatch(origin):
                        raise WireError("origin invalid")
                    streams[stream_path(path)] = StreamOrigin(
                        origin, node_url(info.get("origin_hls")), node_url(info.get("origin_api"))
                    )
                except WireError:
                    continue
        peers: list[Peer] = []
        raw_peers = reply.get("peers")
        if isinstance(raw_peers, list):
            for item in raw_peers[:MAX_PEERS]:
                try:
                    if not isinstance(item, Mapping):
                        raise WireError("peer invalid")
                    peer_id, status = item.get("node_id"), item.get("status")
                    if not isinstance(peer_id, str) or not NODE_ID.fullmatch(peer_id):
                        raise WireError("peer node_id invalid")
                    if status not in ("healthy", "warning", "critical"):
                        raise WireError("peer status invalid")
                    load = item.get("load_percentage")
                    peers.append(Peer(
                        peer_id, node_url(item.get("hls_url")), node_url(item.get("api_url")),
                        status,
                        float(load) if isinstance(load, int | float) and math.isfinite(load)
                        else 0.0,
                    ))
                except WireError:
                    continue
        registration = reply.get("registration", "")
        if not isinstance(registration, str) or (
            registration and not REGISTRATION.fullmatch(registration)
        ):
            raise WireError("registration invalid")
        refused: set[str] = set()
        raw_refused = reply.get("refused")
        if isinstance(raw_refused, list):
            for path in raw_refused[:MAX_STREAMS]:
                with contextlib.suppress(WireError):
                    refused.add(stream_path(path))
        return cls(node_id, streams, tuple(peers), registration, frozenset(refused))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": True,
            "node_id": self.node_id,
            "streams": {
                path: {"origin": o.node_id, "origin_hls": o.hls_url, "origin_api": o.api_url}
                for path, o in self.streams.items()
            },
            "peers": [
                {"node_id": p.node_id, "hls_url": p.hls_url, "api_url": p.api_url,
                 "status": p.status, "load_percentage": p.load_percentage}
                for p in self.peers
            ],
        }
        if self.registration:
            body["registration"] = self.registration
        if self.refused:
            body["refused"] = sorted(self.refused)
        return body


def _node_id(body: Mapping[str, Any]) -> str:
    node_id = body.get("node_id")
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise WireError("node_id invalid")
    return node_id


def _registration(body: Mapping[str, Any]) -> str:
    value = body.get("registration")
    if not isinstance(value, str) or not REGISTRATION.fullmatch(value):
        raise WireError("registration missing or invalid")
    return value


def _is_scalar(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_STRING
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int)


def _int(
    body: Mapping[str, Any], key: str, name: str, *, minimum: int, maximum: int = 10_000_000
) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{name} must be an integer")
    if value < minimum or value > maximum:
        raise WireError(f"{name} out of range")
    return value


def _opt_int(
    body: Mapping[str, Any], key: str, name: str, minimum: int, maximum: int = 10_000_000
) -> int | None:
    if body.get(key) is None:
        return None
    return _int(body, key, name, minimum=minimum, maximum=maximum)


def _opt_number(body: Mapping[str, Any], key: str, name: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{name} must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise WireError(f"{name} out of range")
    return number


def _opt_paths(body: Mapping[str, Any], key: str, name: str) -> frozenset[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) > MAX_STREAMS:
        raise WireError(f"{name} must be a list of at most {MAX_STREAMS} paths")
    return frozenset(stream_path(item, f"{name} must be a list of paths") for item in value)
