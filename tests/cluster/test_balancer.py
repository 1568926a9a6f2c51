from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from airclass.cluster.balancer import Balancer, rendezvous_order, rendezvous_score
from airclass.cluster.registry import Registry
from airclass.cluster.wire import NodeStats, Registration

T0 = 1_700_000_000.0


def registration(node_id: str, max_connections: int = 150, *,
                 opened: int | None = 0) -> Registration:
    return Registration(node_id, f"http://{node_id}:8000", f"http://{node_id}:8888",
                        f"rtmp://{node_id}:1935", max_connections,
                        stats=NodeStats(0, sessions_opened=opened))


def cluster(*caps: int, opened: int | None = 0) -> tuple[Registry, Balancer]:
    registry = Registry(heartbeat_timeout=30.0)
    for i, cap in enumerate(caps):
        registry.register(registration(f"slave-{i + 1}", cap, opened=opened), T0)
    return registry, Balancer(registry)


@dataclass
class FakeSlave:
    """A slave as the master sees it: viewers arrive a little after being routed."""

    node_id: str
    opened_base: int = 0
    arrivals: list[float] = field(default_factory=list)

    def stats(self, now: float, *, with_counter: bool) -> dict[str, int]:
        arrived = sum(1 for t in self.arrivals if t <= now)
        out = {"connections": arrived}
        if with_counter:
            out["sessions_opened"] = self.opened_base + arrived
        return out


def run_burst(
    registry: Registry,
    balancer: Balancer,
    viewers: int,
    heartbeat_times: dict[str, list[float]],
    *,
    with_counter: bool,
    seed: int = 1,
) -> Counter[str]:
    rng = random.Random(seed)
    slaves = {node.node_id: FakeSlave(node.node_id) for node in registry.nodes(T0)}
    events: list[tuple[float, int, str]] = []
    for i in range(viewers):
        events.append((T0 + i / viewers, 1, "route"))
    for node_id, times in heartbeat_times.items():
        events.extend((T0 + t, 0, node_id) for t in times)
    events.sort()
    routed: Counter[str] = Counter()
    for now, _, what in events:
        if what == "route":
            node = balancer.route(now)
            assert node is not None
            routed[node.node_id] += 1
            slaves[node.node_id].arrivals.append(now + rng.uniform(0.02, 0.6))
        else:
            registry.heartbeat(what, slaves[what].stats(now, with_counter=with_counter), now)
    return routed


def test_burst_spreads_exactly_without_heartbeats() -> None:
    registry, balancer = cluster(150, 150, 150)
    routed = run_burst(registry, balancer, 450, {}, with_counter=True)
    assert routed == {"slave-1": 150, "slave-2": 150, "slave-3": 150}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_burst_spreads_with_heartbeats_mid_burst(seed: int) -> None:
    registry, balancer = cluster(150, 150, 150)
    # Heartbeats land at different moments of the one-second burst and after it.
    beats = {"slave-1": [0.1, 0.35, 5.1], "slave-2": [0.5, 5.5], "slave-3": [0.77, 0.9, 5.77]}
    routed = run_burst(registry, balancer, 450, beats, with_counter=True, seed=seed)
    assert routed == {"slave-1": 150, "slave-2": 150, "slave-3": 150}
    now = T0 + 6
    for node in registry.serving_nodes(now):
        # Every viewer has arrived and been reported: nothing pending, nothing lost.
        assert node.current_connections == 150
        assert registry.pending(node, now) == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_burst_without_counter_spreads_too(seed: int) -> None:
    registry, balancer = cluster(150, 150, 150, opened=None)
    # Without the counter, heartbeats must be further apart than a viewer takes to arrive.
    beats = {"slave-1": [0.1, 5.1], "slave-2": [0.5, 5.5], "slave-3": [0.77, 5.77]}
    routed = run_burst(registry, balancer, 450, beats, with_counter=False, seed=seed)
    # The rise in connections stands for arrivals: nobody leaves during a burst.
    assert routed == {"slave-1": 150, "slave-2": 150, "slave-3": 150}


def test_uneven_capacity_burst() -> None:
    registry, balancer = cluster(300, 150, 150)
    routed = run_burst(registry, balancer, 600, {"slave-2": [0.4]}, with_counter=True)
    assert routed == {"slave-1": 300, "slave-2": 150, "slave-3": 150}


def test_all_full_keeps_spreading_fairly() -> None:
    registry, balancer = cluster(150, 150, 300)
    for node_id, n in [("slave-1", 150), ("slave-2", 150), ("slave-3", 300)]:
        registry.heartbeat(node_id, {"connections": n, "sessions_opened": n}, T0 + 1)
    routed = Counter(balancer.route(T0 + 2).node_id for _ in range(400))  # type: ignore[union-attr]
    assert routed == {"slave-1": 100, "slave-2": 100, "slave-3": 200}
    assert all(registry.status(node, T0 + 2) == "critical" for node in registry.nodes(T0 + 2))


def test_critical_node_only_when_all_are_critical() -> None:
    registry, balancer = cluster(150, 150)
    registry.heartbeat("slave-1", {"connections": 136}, T0 + 1)  # critical
    registry.heartbeat("slave-2", {"connections": 120}, T0 + 1)  # warning
    picks = [balancer.route(T0 + 2).node_id for _ in range(16)]  # type: ignore[union-attr]
    # slave-2 takes viewers until it is as loaded as slave-1, then they alternate.
    assert picks == ["slave-2"] * 16
    assert balancer.route(T0 + 2).node_id == "slave-1"  # type: ignore[union-attr]
    assert balancer.route(T0 + 2).node_id == "slave-2"  # type: ignore[union-attr]


def test_offline_nodes_are_never_picked() -> None:
    registry, balancer = cluster(150, 150)
    registry.heartbeat("slave-2", {"connections": 140}, T0 + 20)
    # slave-1 has been silent since T0: offline at T0 + 30, though it is empty.
    assert balancer.pick(T0 + 30).node_id == "slave-2"  # type: ignore[union-attr]
    assert balancer.pick(T0 + 50) is None
    assert balancer.route(T0 + 50) is None


def test_pick_does_not_record_and_route_does() -> None:
    registry, balancer = cluster(150)
    balancer.pick(T0)
    assert registry.pending("slave-1", T0) == 0
    balancer.route(T0)
    assert registry.pending("slave-1", T0) == 1


# Sticky mode


def test_rendezvous_is_stable_and_not_pythons_hash() -> None:
    assert rendezvous_score("live/stream", "slave-1") == rendezvous_score("live/stream", "slave-1")
    assert rendezvous_score("live/stream", "slave-1") != rendezvous_score("live/stream", "slave-2")
    # BLAKE2b of the node and key: the same on every machine and in every process.
    digest = hashlib.blake2b(b"slave-1\0live/stream", digest_size=8,
                             person=b"airclass-hrw").digest()
    assert rendezvous_score("live/stream", "slave-1") == int.from_bytes(digest, "big")


def test_sticky_removing_one_node_moves_only_its_streams() -> None:
    registry, balancer = cluster(150, 150, 150, 150, 150)
    sticky = Balancer(registry, sticky=True)
    streams = [f"live/class-{i}" for i in range(1000)]
    before = {s: sticky.pick(T0, stream=s).node_id for s in streams}  # type: ignore[union-attr]
    counts = Counter(before.values())
    assert all(150 <= n <= 250 for n in counts.values()), counts
    registry.unregister("slave-3")
    after = {s: sticky.pick(T0, stream=s).node_id for s in streams}  # type: ignore[union-attr]
    moved = {s for s in streams if before[s] != after[s]}
    assert moved == {s for s in streams if before[s] == "slave-3"}
    assert 150 <= len(moved) <= 250
    # Adding a node takes streams only onto itself.
    registry.register(registration("slave-9"), T0)
    added = {s: sticky.pick(T0, stream=s).node_id for s in streams}  # type: ignore[union-attr]
    assert {after[s] != added[s] for s in streams if added[s] != "slave-9"} <= {False}
    assert 100 <= sum(1 for s in streams if added[s] == "slave-9") <= 300
    # Least-load mode would have ignored the stream.
    assert balancer.sticky is False


def test_sticky_matches_rendezvous_order() -> None:
    registry, _ = cluster(150, 150, 150)
    sticky = Balancer(registry, sticky=True)
    order = rendezvous_order("live/stream", ["slave-1", "slave-2", "slave-3"])
    assert sticky.pick(T0, stream="/live/stream").node_id == order[0]  # type: ignore[union-attr]


def test_sticky_spills_over_in_rendezvous_order_when_critical() -> None:
    registry, _ = cluster(150, 150, 150)
    sticky = Balancer(registry, sticky=True)
    first, second, third = rendezvous_order("live/stream", ["slave-1", "slave-2", "slave-3"])
    routed = Counter(sticky.route(T0, stream="live/stream").node_id  # type: ignore[union-attr]
                     for _ in range(450))
    # 135 (90 %) on each in the stream's order, then least load fills the rest evenly.
    assert routed == {first: 150, second: 150, third: 150}
    registry2, _ = cluster(150, 150, 150)
    sticky2 = Balancer(registry2, sticky=True)
    picks = [sticky2.route(T0, stream="live/stream").node_id  # type: ignore[union-attr]
             for _ in range(136)]
    assert picks == [first] * 135 + [second]


def test_sticky_without_stream_is_least_load() -> None:
    registry, _ = cluster(150, 150)
    registry.heartbeat("slave-1", {"connections": 50}, T0)
    assert Balancer(registry, sticky=True).pick(T0).node_id == "slave-2"  # type: ignore[union-attr]


# Backups and ingest


def test_backup_excludes_primary_and_prefers_non_critical() -> None:
    registry, balancer = cluster(150, 150, 150)
    registry.heartbeat("slave-2", {"connections": 140}, T0)
    backups = balancer.choose_backup("slave-1", T0, key="viewer-1", count=2)
    assert [n.node_id for n in backups] == ["slave-3", "slave-2"]
    # slave-2 is critical: it comes after every non-critical node.
    assert [n.node_id for n in balancer.choose_backup("slave-3", T0, key="x", count=5)] == [
        "slave-1", "slave-2"]
    assert balancer.choose_backup("slave-1", T0, key="x", count=0) == []


def test_backups_spread_in_proportion_to_capacity() -> None:
    _, balancer = cluster(150, 150, 150, 300)
    chosen = Counter(balancer.choose_backup("slave-1", T0, key=f"viewer-{i}")[0].node_id
                     for i in range(6000))
    # Weights 150 : 150 : 300 over the three other nodes.
    assert abs(chosen["slave-2"] - 1500) < 150
    assert abs(chosen["slave-3"] - 1500) < 150
    assert abs(chosen["slave-4"] - 3000) < 150


def test_backup_is_stable_per_viewer() -> None:
    _, balancer = cluster(150, 150, 150, 150)
    first = [balancer.choose_backup("slave-1", T0, key=f"v{i}")[0].node_id for i in range(50)]
    again = [balancer.choose_backup("slave-1", T0, key=f"v{i}")[0].node_id for i in range(50)]
    assert first == again


def test_ingest_prefers_the_live_origin() -> None:
    registry, balancer = cluster(150, 150, 150)
    registry.heartbeat("slave-2", {"connections": 120, "streams": ["live/stream"]}, T0 + 1)
    registry.heartbeat("slave-1", {"connections": 3}, T0 + 25)
    registry.heartbeat("slave-3", {"connections": 5}, T0 + 25)
    assert balancer.choose_ingest("/live/stream", T0 + 2).node_id == "slave-2"  # type: ignore[union-attr]
    assert balancer.choose_ingest("live/other", T0 + 2).node_id == "slave-1"  # type: ignore[union-attr]
    # The origin went offline: the least loaded node takes the teacher.
    assert balancer.choose_ingest("live/stream", T0 + 40).node_id == "slave-1"  # type: ignore[union-attr]
    assert registry.pending("slave-1", T0 + 40) == 0  # a teacher is not a viewer
