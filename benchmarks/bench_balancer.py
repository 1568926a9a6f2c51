"""Cost of routing a viewer: run with
`python -m pytest benchmarks/bench_balancer.py --benchmark-only` from the repository root.

`POST /api/token` on the master picks a node for every joining student.
"""

from __future__ import annotations

from typing import Any

from airclass.cluster.balancer import Balancer
from airclass.cluster.registry import Registry
from airclass.cluster.wire import NodeStats, Registration

NOW = 1_700_000_000.0


def ten_nodes() -> Registry:
    registry = Registry()
    for i in range(10):
        node_id = f"slave-{i}"
        registry.register(Registration(node_id, f"http://{node_id}:8000",
                                       f"http://{node_id}:8888", f"rtmp://{node_id}:1935",
                                       150, stats=NodeStats(i * 10, sessions_opened=0)), NOW)
    return registry


def test_pick_least_load_10_nodes(benchmark: Any) -> None:
    balancer = Balancer(ten_nodes())
    node = benchmark(balancer.pick, NOW + 1)
    assert node is not None and node.node_id == "slave-0"


def test_route_10_nodes(benchmark: Any) -> None:
    registry = ten_nodes()
    balancer = Balancer(registry)
    benchmark.pedantic(balancer.route, args=(NOW + 1,), rounds=1000, iterations=1)
    assert sum(registry.pending(n, NOW + 1) for n in registry.nodes(NOW + 1)) == 1000


def test_pick_sticky_10_nodes(benchmark: Any) -> None:
    balancer = Balancer(ten_nodes(), sticky=True)
    assert benchmark(balancer.pick, NOW + 1, stream="live/stream") is not None


def test_choose_backup_10_nodes(benchmark: Any) -> None:
    balancer = Balancer(ten_nodes())
    assert len(benchmark(balancer.choose_backup, "slave-0", NOW + 1, key="jti-1")) == 1


def test_snapshot_10_nodes(benchmark: Any) -> None:
    registry = ten_nodes()
    assert benchmark(registry.snapshot, NOW + 1)["total_nodes"] == 10
