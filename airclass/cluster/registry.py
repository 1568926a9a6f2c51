"""The master's view of its slaves: registration, heartbeats, status, recent routing.

Pure: every method that depends on time takes `now` (Unix seconds, `time.time()`; it is
also what `last_heartbeat` is reported in).

Status (docs/design.md §1), from the load a node reported, `connections / max_connections`:
`healthy` below 70 %, `warning` from 70 %, `critical` from 90 %, and `offline` once
`heartbeat_timeout` seconds have passed without a heartbeat. An offline node that sends a
heartbeat is serving again at once (its status follows its load). A node unknown to the
registry gets `False` from `heartbeat` and must register again: that is how slaves find
out that the master restarted. Offline nodes are forgotten after `forget_after` seconds.

Pending viewers: the master counts each viewer it routes to a node ("pending") until that
node's heartbeat shows it, so a class joining in one second spreads instead of piling onto
the node that looked emptiest at its last heartbeat. Pending entries are a FIFO of routing
times per node, reconciled on each heartbeat:

- if the heartbeat carries `sessions_opened` (the slave's cumulative count of sessions it
  opened), the number opened since the previous report is the number of viewers that
  arrived, and that many of the oldest pending entries are removed. The node's effective
  load `connections + pending` is then exact whatever the timing of heartbeats and joins;
- otherwise, the rise in `connections` since the previous report is taken as the number
  of arrivals (exact during a burst, when nobody leaves; an underestimate otherwise, which
  errs towards counting a viewer twice), and entries routed before the previous heartbeat
  are removed as well (a viewer has had a whole heartbeat interval to arrive);
- in both cases an entry older than `pending_ttl` is dropped (the viewer never came).

Heartbeat `stats` keys (JSON): `connections` (required, int), `cpu`, `memory` (percent),
and optionally `max_connections`, `streams` (paths this node is origin of), `serving`
(paths it serves), `bandwidth` (bytes/s sent), `sessions_opened` (cumulative int). Other
scalar keys are kept in `extra` (at most 32).

`snapshot` is the `GET /cluster/nodes` reply. Decisions where docs/design.md §1 is silent:
`healthy_nodes` counts the nodes that are serving (healthy, warning or critical, i.e. not
offline; `status_counts` breaks them down); totals and utilization cover serving nodes only
(an offline node's seats are gone); `utilization` and `load_percentage` are percentages
with one decimal; the scaling advice is `recommended_nodes = max(1, ceil(ceil(students /
150) × 1.3))` in exact integer arithmetic, with `students` = connections + pending over
serving nodes, and `nodes_to_add = max(0, recommended_nodes - healthy_nodes)`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

log = logging.getLogger(__name__)

NodeStatus = Literal["healthy", "warning", "critical", "offline"]

SEATS_PER_NODE: Final = 150
"""The user's rule of thumb for the scaling advice: one node seats about 150 students."""
HEADROOM_TENTHS: Final = 13
"""The advice's headroom factor 1.3, in tenths so that the rounding is exact."""

MAX_STATS_EXTRA: Final = 32
MAX_STREAMS: Final = 256
MAX_STRING: Final = 256
MAX_URL: Final = 512
_NODE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidRequest(ValueError):
    """A registration or heartbeat body is malformed; `reason` is safe to return (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RegistryFull(Exception):
    """Refusing a new node: the registry holds `max_nodes` already."""


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One heartbeat's statistics, validated. `None` means "not reported"."""

    connections: int
    cpu: float | None = None
    memory: float | None = None
    max_connections: int | None = None
    streams: frozenset[str] | None = None
    serving: frozenset[str] | None = None
    bandwidth: float | None = None
    sessions_opened: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, stats: object) -> NodeStats:
        if not isinstance(stats, Mapping):
            raise InvalidRequest("stats must be an object")
        if "connections" not in stats:
            raise InvalidRequest("stats.connections missing")
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
        """Parse `POST /cluster/register`: `{node_id, node_name?, api_url, hls_url, rtmp_url,
        max_connections?, stats?}`."""
        if not isinstance(body, Mapping):
            raise InvalidRequest("body must be an object")
        node_id = body.get("node_id")
        if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
            raise InvalidRequest("node_id invalid")
        node_name = body.get("node_name") or node_id
        if not isinstance(node_name, str) or len(node_name) > MAX_STRING:
            raise InvalidRequest("node_name invalid")
        stats = body.get("stats")
        return cls(
            node_id=node_id,
            node_name=node_name or node_id,
            api_url=_url(body, "api_url", ("http://", "https://")),
            hls_url=_url(body, "hls_url", ("http://", "https://")),
            rtmp_url=_url(body, "rtmp_url", ("rtmp://", "rtmps://")),
            max_connections=(
                _int(body, "max_connections", "max_connections", minimum=1)
                if "max_connections" in body
                else 150
            ),
            stats=None if stats is None else NodeStats.from_json(stats),
        )


@dataclass(slots=True)
class NodeInfo:
    """What the master knows about one slave."""

    node_id: str
    node_name: str
    api_url: str
    hls_url: str
    rtmp_url: str
    max_connections: int
    registered_at: float
    last_heartbeat: float
    current_connections: int = 0
    cpu_usage: float = 0.0
    memory_usage: float = 0.0
    streams: frozenset[str] = frozenset()
    """Stream paths this node is the origin of (a teacher publishes there)."""
    serving: frozenset[str] = frozenset()
    """Stream paths this node serves (origin or relayed)."""
    bandwidth: float = 0.0
    """Bytes per second sent to viewers, as last reported."""
    extra: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0
    sessions_opened: int | None = None
    """The last reported cumulative `sessions_opened`, the baseline for the next one."""
    pending_routes: deque[float] = field(default_factory=deque, repr=False)
    """Routing times of viewers sent here and not yet seen in a heartbeat, oldest first."""


class Registry:
    """All known slaves, keyed by node id."""

    def __init__(
        self,
        heartbeat_timeout: float = 30.0,
        *,
        pending_ttl: float = 15.0,
        forget_after: float | None = 3600.0,
        max_nodes: int = 1024,
    ) -> None:
        if heartbeat_timeout <= 0 or pending_ttl <= 0:
            raise ValueError("heartbeat_timeout and pending_ttl must be positive")
        self.heartbeat_timeout = heartbeat_timeout
        self.pending_ttl = pending_ttl
        self.forget_after = forget_after
        self.max_nodes = max_nodes
        self._nodes: dict[str, NodeInfo] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def register(self, reg: Registration, now: float) -> NodeInfo:
        """Add a node, or replace it if it registers again (a restarted slave starts afresh)."""
        if reg.node_id not in self._nodes and len(self._nodes) >= self.max_nodes:
            self.prune(now)
            if len(self._nodes) >= self.max_nodes:
                raise RegistryFull(f"registry holds {self.max_nodes} nodes")
        again = reg.node_id in self._nodes
        node = NodeInfo(
            node_id=reg.node_id,
            node_name=reg.node_name or reg.node_id,
            api_url=reg.api_url.rstrip("/"),
            hls_url=reg.hls_url.rstrip("/"),
            rtmp_url=reg.rtmp_url.rstrip("/"),
            max_connections=reg.max_connections,
            registered_at=now,
            last_heartbeat=now,
        )
        self._nodes[reg.node_id] = node
        if reg.stats is not None:
            self._apply(node, reg.stats, now)
        log.info("node %s %sregistered (%s, %d seats)", reg.node_id, "re-" if again else "",
                 node.hls_url, node.max_connections)
        return node

    def heartbeat(self, node_id: str, stats: NodeStats | Mapping[str, Any], now: float) -> bool:
        """Record a heartbeat; False if the node is unknown (it must register again).

        Raises `InvalidRequest` if `stats` is a malformed mapping.
        """
        node = self._nodes.get(node_id)
        if node is None:
            return False
        if not isinstance(stats, NodeStats):
            stats = NodeStats.from_json(stats)
        if self.status(node, now) == "offline":
            log.info("node %s is back after %.0f s of silence", node_id, now - node.last_heartbeat)
        self._reconcile(node, stats, now)
        self._apply(node, stats, now)
        return True

    def unregister(self, node_id: str) -> bool:
        node = self._nodes.pop(node_id, None)
        if node is not None:
            log.info("node %s unregistered", node_id)
        return node is not None

    def get(self, node_id: str) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def status(self, node: NodeInfo | str, now: float) -> NodeStatus:
        if isinstance(node, str):
            node = self._nodes[node]
        if now - node.last_heartbeat >= self.heartbeat_timeout:
            return "offline"
        return load_status(node.current_connections, node.max_connections)

    def is_serving(self, node: NodeInfo, now: float) -> bool:
        """Whether the node takes new viewers (any status but offline)."""
        return now - node.last_heartbeat < self.heartbeat_timeout

    def nodes(self, now: float) -> list[NodeInfo]:
        """Every known node, offline ones included, by node id (forgets long-dead ones)."""
        self.prune(now)
        return [self._nodes[key] for key in sorted(self._nodes)]

    def serving_nodes(self, now: float) -> list[NodeInfo]:
        """The nodes that take new viewers, by node id."""
        return [node for node in self.nodes(now) if self.is_serving(node, now)]

    def prune(self, now: float) -> list[str]:
        """Forget nodes offline for longer than `forget_after`; return their ids."""
        if self.forget_after is None:
            return []
        limit = self.heartbeat_timeout + self.forget_after
        gone = [key for key, node in self._nodes.items() if now - node.last_heartbeat >= limit]
        for key in gone:
            del self._nodes[key]
            log.info("node %s forgotten after %.0f s offline", key, self.forget_after)
        return gone

    # Pending viewers

    def add_pending(self, node_id: str, now: float, count: int = 1) -> None:
        """Count `count` viewers just routed to `node_id` until its heartbeats show them."""
        node = self._nodes[node_id]
        node.pending_routes.extend([now] * count)

    def pending(self, node: NodeInfo | str, now: float) -> int:
        if isinstance(node, str):
            node = self._nodes[node]
        self._expire_pending(node, now)
        return len(node.pending_routes)

    def effective_connections(self, node: NodeInfo, now: float) -> int:
        """Reported connections plus the viewers routed there since: what balancing uses."""
        return node.current_connections + self.pending(node, now)

    def origin_of(self, stream: str, now: float) -> NodeInfo | None:
        """The serving node that is origin of `stream` (the first by node id if several)."""
        for node in self.serving_nodes(now):
            if stream in node.streams:
                return node
        return None

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `GET /cluster/nodes` reply (see the module docstring for the decisions)."""
        nodes = self.nodes(now)
        counts: dict[NodeStatus, int] = {"healthy": 0, "warning": 0, "critical": 0,
                                         "offline": 0}
        total_connections = total_capacity = total_pending = serving = 0
        rows: list[dict[str, Any]] = []
        for node in nodes:
            status = self.status(node, now)
            counts[status] += 1
            pending = self.pending(node, now)
            if status != "offline":
                serving += 1
                total_connections += node.current_connections
                total_capacity += node.max_connections
                total_pending += pending
            rows.append({
                "node_id": node.node_id,
                "node_name": node.node_name,
                "current_connections": node.current_connections,
                "max_connections": node.max_connections,
                "load_percentage": _percent(node.current_connections, node.max_connections),
                "cpu_usage": round(node.cpu_usage, 1),
                "memory_usage": round(node.memory_usage, 1),
                "status": status,
                "last_heartbeat": iso_utc(node.last_heartbeat),
                "api_url": node.api_url,
                "hls_url": node.hls_url,
                "rtmp_url": node.rtmp_url,
                "streams": sorted(node.streams),
                "serving": sorted(node.serving),
                "bandwidth": round(node.bandwidth, 1),
                "pending": pending,
                "registered_at": iso_utc(node.registered_at),
            })
        students = total_connections + total_pending
        recommended = recommended_nodes(students)
        return {
            "total_nodes": len(nodes),
            "healthy_nodes": serving,
            "total_connections": total_connections,
            "total_capacity": total_capacity,
            "utilization": _percent(total_connections, total_capacity),
            "nodes": rows,
            "status_counts": dict(counts),
            "total_pending": total_pending,
            "advice": {
                "students": students,
                "recommended_nodes": recommended,
                "nodes_to_add": max(0, recommended - serving),
                "rule": "max(1, ceil(ceil(students / 150) * 1.3))",
            },
        }

    # Internals

    def _apply(self, node: NodeInfo, stats: NodeStats, now: float) -> None:
        node.current_connections = stats.connections
        if stats.cpu is not None:
            node.cpu_usage = stats.cpu
        if stats.memory is not None:
            node.memory_usage = stats.memory
        if stats.max_connections is not None:
            node.max_connections = stats.max_connections
        if stats.streams is not None:
            node.streams = stats.streams
        if stats.serving is not None:
            node.serving = stats.serving
        if stats.bandwidth is not None:
            node.bandwidth = stats.bandwidth
        if stats.sessions_opened is not None:
            node.sessions_opened = stats.sessions_opened
        node.extra = dict(stats.extra)
        node.last_heartbeat = now
        node.heartbeats += 1

    def _reconcile(self, node: NodeInfo, stats: NodeStats, now: float) -> None:
        self._expire_pending(node, now)
        routes = node.pending_routes
        previous = node.sessions_opened
        opened = stats.sessions_opened
        if opened is not None and previous is not None:
            arrived = opened - previous if opened >= previous else opened
        else:
            arrived = max(0, stats.connections - node.current_connections)
        for _ in range(min(arrived, len(routes))):
            routes.popleft()
        if opened is None or previous is None:
            before = node.last_heartbeat
            while routes and routes[0] <= before:
                routes.popleft()

    def _expire_pending(self, node: NodeInfo, now: float) -> None:
        routes = node.pending_routes
        horizon = now - self.pending_ttl
        while routes and routes[0] <= horizon:
            routes.popleft()


def load_status(connections: int, max_connections: int) -> NodeStatus:
    """Status from load, with exact integer thresholds (70 % is warning, 90 % critical)."""
    if max_connections <= 0 or connections * 10 >= 9 * max_connections:
        return "critical"
    if connections * 10 >= 7 * max_connections:
        return "warning"
    return "healthy"


def recommended_nodes(students: int, seats_per_node: int = SEATS_PER_NODE) -> int:
    """`max(1, ceil(ceil(students / seats_per_node) × 1.3))`, exactly."""
    needed = -(-students // seats_per_node)
    return max(1, -(-needed * HEADROOM_TENTHS // 10))


def iso_utc(ts: float) -> str:
    """`2023-11-14T22:13:20Z`: Unix seconds as ISO-8601 UTC, to the second."""
    return datetime.fromtimestamp(math.floor(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percent(part: int, whole: int) -> float:
    return round(part * 100 / whole, 1) if whole > 0 else 0.0


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
        raise InvalidRequest(f"{name} must be an integer")
    if value < minimum or value > maximum:
        raise InvalidRequest(f"{name} out of range")
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
        raise InvalidRequest(f"{name} must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidRequest(f"{name} out of range")
    return number


def _opt_paths(body: Mapping[str, Any], key: str, name: str) -> frozenset[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) > MAX_STREAMS:
        raise InvalidRequest(f"{name} must be a list of at most {MAX_STREAMS} paths")
    paths: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_STRING:
            raise InvalidRequest(f"{name} must be a list of paths")
        paths.add(item.strip("/"))
    return frozenset(paths)


def _url(body: Mapping[str, Any], key: str, schemes: Iterable[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise InvalidRequest(f"{key} invalid")
    if not value.startswith(tuple(schemes)) or any(c.isspace() for c in value):
        raise InvalidRequest(f"{key} invalid")
    return value.rstrip("/")
