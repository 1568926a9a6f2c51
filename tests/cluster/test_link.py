"""The slave's MasterLink: pure pieces with injected time, and `step()` driven against a real
master app on a loopback test server (no sleeping: each step returns its delay)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from airclass.cluster.link import Backoff, BandwidthMeter, MasterLink, heartbeat_stats
from airclass.cluster.wire import ClusterView, StreamOrigin
from airclass.config import Config
from airclass.web.master_app import MASTER, create_master_app
from tests.e2e.conftest import free_port
from tests.web.test_master_app import CLUSTER_KEY, Clock, master_config

# Pure pieces


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    no_jitter = Backoff(0.5, 5.0, rng=lambda: 0.0)
    assert [no_jitter.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    no_jitter.reset()
    assert no_jitter.next() == 0.5
    full_jitter = Backoff(0.5, 5.0, jitter=0.5, rng=lambda: 1.0)
    assert [full_jitter.next() for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.5]
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(1, 0.5)


def test_backoff_after_many_failures_stays_at_the_cap() -> None:
    backoff = Backoff(0.5, 5.0, rng=lambda: 0.0)
    for _ in range(10_000):
        delay = backoff.next()
    assert delay == 5.0


def test_bandwidth_meter() -> None:
    meter = BandwidthMeter()
    assert meter.sample(1000, 100.0) == 0.0
    assert meter.sample(6000, 105.0) == 1000.0
    assert meter.sample(6000, 105.0) == 0.0  # no time passed
    assert meter.sample(10, 110.0) == 0.0  # counter reset


def test_heartbeat_stats_from_slave_stats() -> None:
    node_stats = {
        "connections": 45, "cpu": 25.5, "memory": 35.2, "max_connections": 150,
        "sessions_opened": 51, "bytes_served": 123, "uptime": 9.5, "role": "slave",
        "streams": {"live/stream": {"publishing": True}, "live/relayed": {"publishing": False}},
    }
    assert heartbeat_stats(node_stats, 2048.04).to_json() == {
        "connections": 45, "cpu": 25.5, "memory": 35.2, "max_connections": 150,
        "sessions_opened": 51, "streams": ["live/stream"],
        "serving": ["live/relayed", "live/stream"], "bandwidth": 2048.0,
        "bytes_served": 123, "uptime": 9.5,
    }


def test_cluster_view_parses_and_skips_malformed_entries() -> None:
    view = ClusterView.from_json({
        "ok": True, "node_id": "slave-2",
        "streams": {"live/stream": {"origin": "slave-1", "origin_hls": "http://h:1",
                                    "origin_api": "http://h:2"},
                    "live/bad": {"origin": 3}},
        "peers": [{"node_id": "slave-1", "hls_url": "http://h:1", "api_url": "http://h:2",
                   "status": "healthy", "load_percentage": 2}, {"node_id": None}, "x"],
    })
    assert view.node_id == "slave-2"
    assert view.streams == {"live/stream": StreamOrigin("slave-1", "http://h:1", "http://h:2")}
    assert [(p.node_id, p.load_percentage) for p in view.peers] == [("slave-1", 2.0)]
    with pytest.raises(ValueError):
        ClusterView.from_json([])


# Against a real master app


class FakeNode:
    """Stands in for `SlaveNode.stats()`."""

    def __init__(self) -> None:
        self.connections = 0
        self.opened = 0
        self.bytes_served = 0
        self.publishing: list[str] = []

    def __call__(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "cpu": 5.0, "memory": 30.0,
            "max_connections": 150, "sessions_opened": self.opened,
            "bytes_served": self.bytes_served,
            "streams": {p: {"publishing": True} for p in self.publishing},
        }


def slave_config(master_url: str, node_id: str = "slave-1", **more: Any) -> Config:
    values: dict[str, Any] = {
        "role": "slave", "node_id": node_id, "master_url": master_url,
        "public_host": "127.0.0.1", "hls_port": 18888, "api_port": 18000, "rtmp_port": 11935,
        "secret_key": secrets.token_urlsafe(32), "cluster_key": CLUSTER_KEY,
        "heartbeat_interval": 5.0, "heartbeat_timeout": 30.0,
    }
    values.update(more)
    return Config(**values)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def server(aiohttp_server: Any) -> TestServer:
    clock = Clock()
    app = create_master_app(master_config(), clock=clock)
    srv: TestServer = await aiohttp_server(app)
    srv.clock = clock  # type: ignore[attr-defined]
    return srv


def make_link(server: TestServer, session: aiohttp.ClientSession, node: FakeNode,
              **config: Any) -> MasterLink:
    url = str(server.make_url("")).rstrip("/")
    return MasterLink(slave_config(url, **config), node, session=session,
                      clock=server.clock, backoff=Backoff(0.5, 5.0, rng=lambda: 0.0))  # type: ignore[attr-defined]


async def test_register_then_heartbeat(server: TestServer,
                                       session: aiohttp.ClientSession) -> None:
    node = FakeNode()
    node.publishing = ["live/stream"]
    link = make_link(server, session, node)
    views: list[ClusterView] = []
    link.add_listener(views.append)
    registry = server.app[MASTER].registry
    assert await link.step() == 5.0
    assert link.registered and "slave-1" in registry
    info = registry.get("slave-1")
    assert info is not None and info.hls_url == "http://127.0.0.1:18888"
    assert info.rtmp_url == "rtmp://127.0.0.1:11935" and info.streams == {"live/stream"}
    node.connections, node.opened, node.bytes_served = 45, 45, 50_000
    server.clock.advance(5)  # type: ignore[attr-defined]
    assert await link.step() == 5.0
    assert info.current_connections == 45 and info.bandwidth == 10_000.0
    assert link.heartbeats == 1
    assert [v.streams["live/stream"].node_id for v in views] == ["slave-1", "slave-1"]


async def test_master_that_forgot_us_gets_a_registration_at_once(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    link = make_link(server, session, node)
    registry = server.app[MASTER].registry
    await link.step()
    registry.unregister("slave-1")  # what a master restart looks like from here
    node.connections = node.opened = 12
    assert await link.step() == 0.0
    assert not link.registered
    assert await link.step() == 5.0
    assert link.registered and link.registrations == 2
    info = registry.get("slave-1")
    assert info is not None and info.current_connections == 12  # stats came with it


async def test_master_down_backs_off_then_registers(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    dead = f"http://127.0.0.1:{free_port()}"
    link = MasterLink(slave_config(dead), node, session=session,
                      backoff=Backoff(0.5, 5.0, rng=lambda: 0.0))
    delays = [await link.step() for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert not link.registered and link.failures == 6
    # The master comes up at that address: the next attempt registers.
    link.master_url = str(server.make_url("")).rstrip("/")
    link.clock = server.clock  # type: ignore[attr-defined]
    assert await link.step() == 5.0
    assert link.registered and link.failures == 0
    assert link.backoff.attempts == 0


async def test_heartbeats_keep_their_interval_while_the_master_is_unreachable(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(server, session, FakeNode())
    await link.step()
    link.master_url = f"http://127.0.0.1:{free_port()}"
    assert [await link.step() for _ in range(3)] == [5.0, 5.0, 5.0]
    assert link.registered and link.failures == 3


async def test_close_unregisters(server: TestServer, session: aiohttp.ClientSession) -> None:
    link = make_link(server, session, FakeNode())
    await link.step()
    await link.close()
    assert "slave-1" not in server.app[MASTER].registry
    assert not link.registered


async def test_wrong_cluster_key_is_refused_and_nothing_joins(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    link = make_link(server, session, FakeNode(), cluster_key=secrets.token_urlsafe(32))
    assert await link.step() == 0.5
    assert not link.registered
    assert len(server.app[MASTER].registry) == 0
    assert server.app[MASTER].signature_failures == {"bad signature": 1}


async def test_master_url_with_a_path_prefix_signs_the_full_path(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    master = create_master_app(master_config(), clock=clock)
    outer = web.Application()
    outer.add_subapp("/master", master)
    srv = await aiohttp_server(outer)
    url = str(srv.make_url("/master"))
    link = MasterLink(slave_config(url), FakeNode(), session=session, clock=clock)
    assert await link.step() == 5.0
    assert "slave-1" in master[MASTER].registry


async def test_start_and_close_run_the_loop(server: TestServer) -> None:
    url = str(server.make_url("")).rstrip("/")
    link = MasterLink(slave_config(url), FakeNode(), clock=server.clock)  # type: ignore[attr-defined]
    registered = asyncio.Event()
    link.add_listener(lambda view: registered.set())
    await link.start()
    await asyncio.wait_for(registered.wait(), 5)
    assert link.registered
    await link.close()
    assert "slave-1" not in server.app[MASTER].registry
