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
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from airclass.cluster.wire import NodeStats, Registration

log = logging.getLogger(__name__)

NodeStatus = Literal["healthy", "warning", "critical", "offline"]

SEATS_PER_NODE: Final = 150
"""The scaling advice's rule of thumb: one node seats about 150 students."""
HEADROOM_TENTHS: Final = 13
"""The advice's headroom factor 1.3, in tenths so that the rounding is exact."""

class RegistryFull(Exception):
    """Refusing a new node: the registry holds `max_nodes` already."""


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
    registration: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    """The secret this registration's heartbeats and unregister must carry."""
    address: str = ""
    """The address the registration came from."""
    refused: frozenset[str] = frozenset()
    """Paths this node claims to publish that another node owns (the last heartbeat's)."""


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
        self._owners: dict[str, str] = {}
        """Live path -> the node that publishes it: one origin per path, cluster-wide."""

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def register(self, reg: Registration, now: float, address: str = "") -> NodeInfo:
        """Add a node, or replace it if it registers again (a restarted slave starts afresh).
        The new registration gets a new secret; the old one's heartbeats are refused."""
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
            address=address,
        )
        self._nodes[reg.node_id] = node
        if reg.stats is not None:
            self._apply(node, reg.stats, now)
        log.info("node %s %sregistered (%s, %d seats)", reg.node_id, "re-" if again else "",
                 node.hls_url, node.max_connections)
        return node

    def heartbeat(self, node_id: str, stats: NodeStats | Mapping[str, Any], now: float) -> bool:
        """Record a heartbeat; False if the node is unknown (it must register again).

        Raises `WireError` if `stats` is a malformed mapping.
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
            self._release(node_id)
            log.info("node %s unregistered", node_id)
        return node is not None

    def is_alive(self, node_id: str, now: float) -> bool:
        """Whether `node_id` is registered and heard from within the heartbeat timeout."""
        node = self._nodes.get(node_id)
        return node is not None and self.is_serving(node, now)

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
            self._release(key)
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
        """The serving node that is origin of `stream`: the one that claimed it first and
        still claims it."""
        node_id = self._owners.get(stream)
        node = self._nodes.get(node_id) if node_id is not None else None
        if node is None or not self.is_serving(node, now) or stream not in node.streams:
            return None
        return node

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
            self._claim(node, stats.streams, now)
        if stats.serving is not None:
            node.serving = stats.serving
        if stats.bandwidth is not None:
            node.bandwidth = stats.bandwidth
        if stats.sessions_opened is not None:
            node.sessions_opened = stats.sessions_opened
        node.extra = dict(stats.extra)
        node.last_heartbeat = now
        node.heartbeats += 1

    def _claim(self, node: NodeInfo, claimed: frozenset[str], now: float) -> None:
        """Give `node` the paths it publishes that no other live node owns; note the rest.

        A path's owner keeps it while it is serving and still claims it; then the next node
        to claim it takes it. So a second publisher of a live class on another node never
        becomes its origin, and every edge keeps following the first."""
        accepted: set[str] = set()
        refused: set[str] = set()
        for path in claimed:
            origin = self.origin_of(path, now)
            if origin is None or origin is node:
                self._owners[path] = node.node_id
                accepted.add(path)
            else:
                refused.add(path)
        for path in node.streams - accepted:
            if self._owners.get(path) == node.node_id:
                del self._owners[path]
        if refused and refused != node.refused:
            log.warning("node %s claims %s, published on other nodes: refused", node.node_id,
                        ", ".join(sorted(refused)))
        node.streams = frozenset(accepted)
        node.refused = frozenset(refused)

    def _release(self, node_id: str) -> None:
        for path in [path for path, owner in self._owners.items() if owner == node_id]:
            del self._owners[path]

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
