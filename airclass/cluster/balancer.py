"""Choosing a node: for a viewer (least load or sticky), a backup, and a teacher's ingest.

Pure: reads the `Registry` and takes `now`.

Least load: the serving (not offline) node with the lowest effective load
`(connections + pending) / max_connections`, ties broken by node id. Because every routed
viewer is counted as pending at once (`route`), a burst fills nodes in turn instead of all
landing on one. Critical nodes (>= 90 %) are only chosen when every node is critical, which
lowest-load already guarantees since a non-critical node always has a lower load; beyond
100 % the same rule keeps spreading in proportion to capacity. Nobody is refused while a
node is up: `pick` returns None only when no node is serving.

Sticky mode: rendezvous (highest-random-weight) hashing of the stream path over the serving
nodes, with BLAKE2b (stable across processes, unlike `hash()`), so losing a node moves only
the streams it had and adding one moves only the streams it wins. Decision: a sticky node
whose effective load reached the critical threshold is passed over for the next node in the
stream's rendezvous order (still stable per stream), and only when every node is critical
does the choice fall back to least load. Sticky is a preference, capacity is not.

Backups (failover variants in the viewer's playlist): other serving nodes, non-critical
first, ordered by weighted rendezvous hashing of a per-viewer key with weight
`max_connections`, so when a node dies its viewers spread over the others in proportion to
their capacity rather than all failing over to one.

Ingest (teachers): the serving node already origin of the stream if any (an OBS reconnect
lands where the stream lives), else the least loaded node.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from typing import Final

from airclass.cluster.registry import NodeInfo, Registry

log = logging.getLogger(__name__)

CRITICAL_TENTHS: Final = 9
"""The critical threshold, 90 %, in tenths for exact integer comparison."""


def rendezvous_score(key: str, node_id: str) -> int:
    """A stable 64-bit pseudo-random weight of (key, node)."""
    digest = hashlib.blake2b(
        node_id.encode("utf-8", "surrogatepass") + b"\0" + key.encode("utf-8", "surrogatepass"),
        digest_size=8,
        person=b"airclass-hrw",
    ).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, node_ids: Iterable[str]) -> list[str]:
    """Node ids from most to least preferred for `key` (ties, never seen, by node id)."""
    return sorted(node_ids, key=lambda node_id: (-rendezvous_score(key, node_id), node_id))


def weighted_rendezvous_score(key: str, node_id: str, weight: float) -> float:
    """Rendezvous weight that picks each node with probability proportional to `weight`."""
    unit = (rendezvous_score(key, node_id) + 0.5) / 2**64
    return weight / -math.log(unit)


class Balancer:
    """Routes viewers, backups and teachers to nodes of a `Registry`."""

    def __init__(self, registry: Registry, *, sticky: bool = False) -> None:
        self.registry = registry
        self.sticky = sticky

    def is_critical(self, node: NodeInfo, now: float) -> bool:
        """Effective load (pending included) at or above 90 %."""
        connections = self.registry.effective_connections(node, now)
        return connections * 10 >= CRITICAL_TENTHS * node.max_connections

    def least_loaded(self, nodes: Iterable[NodeInfo], now: float) -> NodeInfo | None:
        best: NodeInfo | None = None
        best_key: tuple[float, str] | None = None
        for node in nodes:
            load = self.registry.effective_connections(node, now) / max(node.max_connections, 1)
            key = (load, node.node_id)
            if best_key is None or key < best_key:
                best, best_key = node, key
        return best

    def pick(self, now: float, *, stream: str | None = None) -> NodeInfo | None:
        """The node a new viewer of `stream` should use; None only if no node is serving.

        Does not record the choice: use `route` when a viewer is actually sent there.
        """
        nodes = self.registry.serving_nodes(now)
        if not nodes:
            return None
        if self.sticky and stream is not None:
            by_id = {node.node_id: node for node in nodes}
            for node_id in rendezvous_order(stream.strip("/"), by_id):
                node = by_id[node_id]
                if not self.is_critical(node, now):
                    return node
        return self.least_loaded(nodes, now)

    def route(self, now: float, *, stream: str | None = None) -> NodeInfo | None:
        """`pick`, then count the viewer as pending on the chosen node."""
        node = self.pick(now, stream=stream)
        if node is None:
            log.warning("no serving node for a viewer of %s", stream)
            return None
        self.registry.add_pending(node.node_id, now)
        return node

    def choose_backup(
        self, primary_id: str, now: float, *, key: str, count: int = 1
    ) -> list[NodeInfo]:
        """Up to `count` serving nodes other than `primary_id` for one viewer (`key`, e.g.
        its token id), spread over nodes in proportion to capacity, non-critical first."""
        candidates = [n for n in self.registry.serving_nodes(now) if n.node_id != primary_id]
        candidates.sort(
            key=lambda node: (
                self.is_critical(node, now),
                -weighted_rendezvous_score(key, node.node_id, node.max_connections),
                node.node_id,
            )
        )
        return candidates[: max(count, 0)]

    def choose_ingest(self, stream: str, now: float) -> NodeInfo | None:
        """Where a teacher publishes `stream`: its live origin if serving, else least load."""
        origin = self.registry.origin_of(stream.strip("/"), now)
        if origin is not None:
            return origin
        return self.least_loaded(self.registry.serving_nodes(now), now)
