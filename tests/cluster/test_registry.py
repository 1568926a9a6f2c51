from __future__ import annotations

import ast
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from airclass.cluster.registry import (
    Registry,
    RegistryFull,
    iso_utc,
    load_status,
    recommended_nodes,
)
from airclass.cluster.wire import NodeStats, Registration, WireError

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def reg(node_id: str, max_connections: int = 150) -> Registration:
    return Registration(
        node_id=node_id,
        api_url=f"http://{node_id}:8000",
        hls_url=f"http://{node_id}:8888/",
        rtmp_url=f"rtmp://{node_id}:1935",
        max_connections=max_connections,
    )


def stats(connections: int, **more: Any) -> dict[str, Any]:
    return {"connections": connections, "cpu": 10.0, "memory": 20.0, **more}


@pytest.mark.parametrize("module", ["registry", "balancer", "signing"])
def test_pure_modules_import_no_io(module: str) -> None:
    source = Path(__file__).parents[2] / "airclass" / "cluster" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "av", "aiohttp", "time"}


def test_status_thresholds_are_exact() -> None:
    assert load_status(104, 150) == "healthy"
    assert load_status(105, 150) == "warning"  # exactly 70 %
    assert load_status(134, 150) == "warning"
    assert load_status(135, 150) == "critical"  # exactly 90 %
    assert load_status(7, 10) == "warning"
    assert load_status(9, 10) == "critical"
    assert load_status(200, 150) == "critical"
    for m in range(1, 400):
        for c in range(0, m + 2):
            load = Fraction(c, m)
            expected = ("critical" if load >= Fraction(9, 10)
                        else "warning" if load >= Fraction(7, 10) else "healthy")
            assert load_status(c, m) == expected, (c, m)


def test_heartbeat_drives_status() -> None:
    r = Registry(heartbeat_timeout=30.0)
    r.register(reg("slave-1"), T0)
    assert r.status("slave-1", T0) == "healthy"
    for connections, expected in [(104, "healthy"), (105, "warning"), (135, "critical"),
                                  (10, "healthy")]:
        assert r.heartbeat("slave-1", stats(connections), T0 + 1)
        assert r.status("slave-1", T0 + 1) == expected


def test_offline_after_timeout_and_comeback() -> None:
    r = Registry(heartbeat_timeout=30.0)
    r.register(reg("slave-1"), T0)
    assert r.heartbeat("slave-1", stats(120), T0 + 5)
    assert r.status("slave-1", T0 + 34.999) == "warning"
    assert r.status("slave-1", T0 + 35) == "offline"
    assert [n.node_id for n in r.serving_nodes(T0 + 35)] == []
    assert [n.node_id for n in r.nodes(T0 + 35)] == ["slave-1"]
    # It comes back: serving again at its first heartbeat.
    assert r.heartbeat("slave-1", stats(3), T0 + 100)
    assert r.status("slave-1", T0 + 100) == "healthy"
    assert [n.node_id for n in r.serving_nodes(T0 + 100)] == ["slave-1"]


def test_unknown_node_must_register_again() -> None:
    r = Registry()
    assert not r.heartbeat("slave-1", stats(1), T0)
    r.register(reg("slave-1"), T0)
    assert r.heartbeat("slave-1", stats(1), T0 + 1)
    assert r.unregister("slave-1")
    assert not r.unregister("slave-1")
    assert not r.heartbeat("slave-1", stats(1), T0 + 2)


def test_offline_nodes_are_forgotten() -> None:
    r = Registry(heartbeat_timeout=30.0, forget_after=600.0)
    r.register(reg("slave-1"), T0)
    r.register(reg("slave-2"), T0 + 500)
    assert [n.node_id for n in r.nodes(T0 + 629.9)] == ["slave-1", "slave-2"]
    assert [n.node_id for n in r.nodes(T0 + 630)] == ["slave-2"]
    assert not r.heartbeat("slave-1", stats(0), T0 + 631)


def test_register_again_starts_afresh() -> None:
    r = Registry()
    r.register(reg("slave-1"), T0)
    r.heartbeat("slave-1", stats(50, streams=["live/stream"]), T0 + 5)
    r.add_pending("slave-1", T0 + 6)
    node = r.register(reg("slave-1", 300), T0 + 7)
    assert (node.current_connections, node.max_connections, node.streams) == (0, 300, frozenset())
    assert r.pending("slave-1", T0 + 7) == 0
    assert node.registered_at == T0 + 7


def test_registry_is_bounded() -> None:
    r = Registry(max_nodes=2, forget_after=10.0)
    r.register(reg("a"), T0)
    r.register(reg("b"), T0)
    r.register(reg("a"), T0 + 1)  # re-registering is always allowed
    with pytest.raises(RegistryFull):
        r.register(reg("c"), T0 + 1)
    r.register(reg("c"), T0 + 40)  # "a" and "b" forgotten by then


def test_heartbeat_fields() -> None:
    r = Registry()
    r.register(reg("slave-1"), T0)
    assert r.heartbeat("slave-1", {"connections": 45, "cpu": 25.5, "memory": 35.2,
                                   "max_connections": 200, "streams": ["/live/stream/"],
                                   "serving": ["live/stream", "live/b"], "bandwidth": 1.5e6,
                                   "uptime": 12, "note": {"nested": 1}}, T0 + 5)
    node = r.get("slave-1")
    assert node is not None
    assert (node.current_connections, node.cpu_usage, node.memory_usage,
            node.max_connections) == (45, 25.5, 35.2, 200)
    assert node.streams == frozenset({"live/stream"})
    assert node.serving == frozenset({"live/stream", "live/b"})
    assert node.bandwidth == 1.5e6
    assert node.extra == {"uptime": 12}
    assert r.origin_of("live/stream", T0 + 5) is node
    assert r.origin_of("live/b", T0 + 5) is None
    assert r.origin_of("live/stream", T0 + 35) is None  # offline origin is no origin


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "stats must be an object"),
        ({}, "stats.connections missing"),
        ({"connections": "45"}, "stats.connections must be an integer"),
        ({"connections": True}, "stats.connections must be an integer"),
        ({"connections": -1}, "stats.connections out of range"),
        ({"connections": 1, "cpu": "high"}, "stats.cpu must be a number"),
        ({"connections": 1, "memory": float("nan")}, "stats.memory out of range"),
        ({"connections": 1, "max_connections": 0}, "stats.max_connections out of range"),
        ({"connections": 1, "streams": "live/stream"},
         "stats.streams must be a list of at most 256 paths"),
        ({"connections": 1, "serving": [1]}, "stats.serving must be a list of paths"),
        ({"connections": 1, "sessions_opened": -1}, "stats.sessions_opened out of range"),
    ],
)
def test_bad_stats(body: Any, reason: str) -> None:
    r = Registry()
    r.register(reg("slave-1"), T0)
    with pytest.raises(WireError) as info:
        r.heartbeat("slave-1", body, T0 + 1)
    assert info.value.reason == reason


def test_registration_from_json() -> None:
    got = Registration.from_json({
        "node_id": "slave-1", "api_url": "http://10.0.0.2:8000/", "hls_url": "http://10.0.0.2:8888",
        "rtmp_url": "rtmp://10.0.0.2:1935", "stats": {"connections": 3},
    })
    assert got == Registration("slave-1", "http://10.0.0.2:8000", "http://10.0.0.2:8888",
                               "rtmp://10.0.0.2:1935", 150, "slave-1", NodeStats(3))
    for bad in [
        None,
        {"node_id": "", "api_url": "http://a", "hls_url": "http://a", "rtmp_url": "rtmp://a"},
        {"node_id": "../x", "api_url": "http://a", "hls_url": "http://a", "rtmp_url": "rtmp://a"},
        {"node_id": "a", "api_url": "ftp://a", "hls_url": "http://a", "rtmp_url": "rtmp://a"},
        {"node_id": "a", "api_url": "http://a", "hls_url": "http://a b", "rtmp_url": "rtmp://a"},
        {"node_id": "a", "api_url": "http://a", "hls_url": "http://a", "rtmp_url": "http://a"},
        {"node_id": "a", "api_url": "http://a", "hls_url": "http://a", "rtmp_url": "rtmp://a",
         "max_connections": 0},
        {"node_id": "a", "api_url": "http://a", "hls_url": "http://a", "rtmp_url": "rtmp://a",
         "stats": {"connections": "x"}},
    ]:
        with pytest.raises(WireError):
            Registration.from_json(bad)


def test_iso_utc() -> None:
    assert iso_utc(T0) == "2023-11-14T22:13:20Z"
    assert iso_utc(T0 + 0.999) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    ("students", "expected"),
    [(0, 1), (1, 2), (150, 2), (151, 3), (300, 3), (450, 4), (451, 6), (1000, 10), (1500, 13),
     (1501, 15)],
)
def test_recommended_nodes(students: int, expected: int) -> None:
    # ceil(ceil(students / 150) * 1.3), at least 1, computed exactly.
    assert recommended_nodes(students) == expected


def test_snapshot_exact() -> None:
    r = Registry(heartbeat_timeout=30.0)
    r.register(reg("slave-1"), T0)
    r.register(reg("slave-2"), T0)
    r.register(Registration("slave-3", "http://s3:8000", "http://s3:8888", "rtmp://s3:1935",
                            300, "Room 3"), T0)
    r.register(reg("slave-4"), T0)
    r.heartbeat("slave-1", stats(45, cpu=25.5, memory=35.2, streams=["live/stream"],
                                 serving=["live/stream"], bandwidth=312500.0), T0 + 20)
    r.heartbeat("slave-2", stats(140, cpu=80.04, memory=50.0), T0 + 21)
    r.heartbeat("slave-3", stats(211), T0 + 22)
    r.add_pending("slave-1", T0 + 23, count=3)
    # slave-4 stays silent since T0: offline at T0 + 30.
    snap = r.snapshot(T0 + 30)
    expected = {
        "total_nodes": 4,
        "healthy_nodes": 3,
        "total_connections": 396,
        "total_capacity": 600,
        "utilization": 66.0,
        "nodes": [
            {"node_id": "slave-1", "node_name": "slave-1", "current_connections": 45,
             "max_connections": 150, "load_percentage": 30.0, "cpu_usage": 25.5,
             "memory_usage": 35.2, "status": "healthy",
             "last_heartbeat": "2023-11-14T22:13:40Z",
             "api_url": "http://slave-1:8000", "hls_url": "http://slave-1:8888",
             "rtmp_url": "rtmp://slave-1:1935", "streams": ["live/stream"],
             "serving": ["live/stream"], "bandwidth": 312500.0, "pending": 3,
             "registered_at": "2023-11-14T22:13:20Z"},
            {"node_id": "slave-2", "node_name": "slave-2", "current_connections": 140,
             "max_connections": 150, "load_percentage": 93.3, "cpu_usage": 80.0,
             "memory_usage": 50.0, "status": "critical",
             "last_heartbeat": "2023-11-14T22:13:41Z",
             "api_url": "http://slave-2:8000", "hls_url": "http://slave-2:8888",
             "rtmp_url": "rtmp://slave-2:1935", "streams": [], "serving": [],
             "bandwidth": 0.0, "pending": 0, "registered_at": "2023-11-14T22:13:20Z"},
            {"node_id": "slave-3", "node_name": "Room 3", "current_connections": 211,
             "max_connections": 300, "load_percentage": 70.3, "cpu_usage": 10.0,
             "memory_usage": 20.0, "status": "warning",
             "last_heartbeat": "2023-11-14T22:13:42Z",
             "api_url": "http://s3:8000", "hls_url": "http://s3:8888",
             "rtmp_url": "rtmp://s3:1935", "streams": [], "serving": [],
             "bandwidth": 0.0, "pending": 0, "registered_at": "2023-11-14T22:13:20Z"},
            {"node_id": "slave-4", "node_name": "slave-4", "current_connections": 0,
             "max_connections": 150, "load_percentage": 0.0, "cpu_usage": 0.0,
             "memory_usage": 0.0, "status": "offline",
             "last_heartbeat": "2023-11-14T22:13:20Z",
             "api_url": "http://slave-4:8000", "hls_url": "http://slave-4:8888",
             "rtmp_url": "rtmp://slave-4:1935", "streams": [], "serving": [],
             "bandwidth": 0.0, "pending": 0, "registered_at": "2023-11-14T22:13:20Z"},
        ],
        "status_counts": {"healthy": 1, "warning": 1, "critical": 1, "offline": 1},
        "total_pending": 3,
        "advice": {"students": 399, "recommended_nodes": 4, "nodes_to_add": 1,
                   "rule": "max(1, ceil(ceil(students / 150) * 1.3))"},
    }
    assert snap == expected
    # Key order is part of the contract: the docs/design.md §1 keys first, in their order.
    assert list(snap)[:6] == ["total_nodes", "healthy_nodes", "total_connections",
                              "total_capacity", "utilization", "nodes"]
    assert list(snap["nodes"][0])[:9] == ["node_id", "node_name", "current_connections",
                                          "max_connections", "load_percentage", "cpu_usage",
                                          "memory_usage", "status", "last_heartbeat"]
    assert json.loads(json.dumps(snap)) == snap


def test_empty_snapshot() -> None:
    snap = Registry().snapshot(T0)
    assert snap["total_nodes"] == 0
    assert snap["utilization"] == 0.0
    assert snap["advice"] == {"students": 0, "recommended_nodes": 1, "nodes_to_add": 1,
                              "rule": "max(1, ceil(ceil(students / 150) * 1.3))"}


# Pending viewers


def test_pending_reconciled_by_sessions_opened() -> None:
    r = Registry(pending_ttl=15.0)
    r.register(Registration("n", "http://n", "http://n", "rtmp://n", 150,
                            stats=NodeStats(0, sessions_opened=1000)), T0)
    r.add_pending("n", T0 + 1, count=10)
    # 4 of the 10 arrived before the heartbeat was taken.
    r.heartbeat("n", stats(4, sessions_opened=1004), T0 + 2)
    assert r.pending("n", T0 + 2) == 6
    node = r.get("n")
    assert node is not None and r.effective_connections(node, T0 + 2) == 10
    r.heartbeat("n", stats(10, sessions_opened=1010), T0 + 7)
    assert r.pending("n", T0 + 7) == 0


def test_arrivals_beyond_pending_do_not_go_negative() -> None:
    r = Registry()
    r.register(Registration("n", "http://n", "http://n", "rtmp://n", 150,
                            stats=NodeStats(0, sessions_opened=0)), T0)
    r.add_pending("n", T0, count=2)
    r.heartbeat("n", stats(9, sessions_opened=9), T0 + 1)
    assert r.pending("n", T0 + 1) == 0


def test_counter_reset_counts_from_zero() -> None:
    r = Registry()
    r.register(Registration("n", "http://n", "http://n", "rtmp://n", 150,
                            stats=NodeStats(0, sessions_opened=500)), T0)
    r.add_pending("n", T0, count=5)
    r.heartbeat("n", stats(3, sessions_opened=3), T0 + 1)  # the slave restarted: 3 arrivals
    assert r.pending("n", T0 + 1) == 2


def test_pending_fallback_without_counter() -> None:
    r = Registry()
    r.register(reg("n"), T0)
    r.add_pending("n", T0 + 1, count=5)
    r.heartbeat("n", stats(3), T0 + 5)
    # Connections rose by 3: three of the five arrived.
    assert r.pending("n", T0 + 5) == 2
    r.add_pending("n", T0 + 6, count=2)
    r.heartbeat("n", stats(1), T0 + 10)
    # Connections fell (viewers left): no arrival can be inferred, but the 2 routed before
    # the heartbeat at T0+5 have had a whole interval to arrive.
    assert r.pending("n", T0 + 10) == 2
    r.add_pending("n", T0 + 11, count=3)
    r.heartbeat("n", stats(4), T0 + 12)
    assert r.pending("n", T0 + 12) == 2


def test_first_heartbeat_sets_the_counter_baseline() -> None:
    r = Registry()
    r.register(reg("n"), T0)
    r.add_pending("n", T0 + 1, count=5)
    r.heartbeat("n", stats(2, sessions_opened=777), T0 + 5)  # no baseline yet: fallback
    assert r.pending("n", T0 + 5) == 3
    r.heartbeat("n", stats(5, sessions_opened=780), T0 + 10)
    assert r.pending("n", T0 + 10) == 0


def test_pending_expires_after_ttl() -> None:
    r = Registry(pending_ttl=15.0)
    r.register(reg("n"), T0)
    r.add_pending("n", T0, count=3)
    r.add_pending("n", T0 + 10)
    assert r.pending("n", T0 + 14.9) == 4
    assert r.pending("n", T0 + 15) == 1
    assert r.pending("n", T0 + 25) == 0
