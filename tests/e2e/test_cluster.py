"""A real master and real slave processes on loopback: registration, heartbeats, offline
detection, unregistering on SIGTERM, master restarts, a slave serving while its master is
down, and 450 students joining at once over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from airclass.auth.tokens import TokenIssuer
from tests.e2e.conftest import Cluster, Node, free_port, http_get, http_json, publish, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

INTERVAL = 1.0
TIMEOUT = 3.0
MASTER_ARGS = ("--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", str(TIMEOUT))
SLAVE_ARGS = ("--heartbeat-interval", str(INTERVAL))


def nodes(master: Node) -> dict[str, dict[str, Any]]:
    status, snap = http_json("GET", f"{master.api}/cluster/nodes")
    assert status == 200, snap
    return {row["node_id"]: row for row in snap["nodes"]}


def statuses(master: Node) -> dict[str, str]:
    return {node_id: row["status"] for node_id, row in nodes(master).items()}


def student(master: Node, user_id: str) -> dict[str, Any]:
    status, reply = http_json("POST", f"{master.api}/api/token",
                              {"user_type": "student", "user_id": user_id})
    assert status == 200, reply
    return dict(reply)


def test_register_heartbeat_offline_and_unregister(cluster: Cluster) -> None:
    master = cluster.master(*MASTER_ARGS)
    slave1 = cluster.slave(*SLAVE_ARGS, node_id="slave-1", master=master)
    slave2 = cluster.slave(*SLAVE_ARGS, node_id="slave-2", master=master)
    wait_for(lambda: statuses(master) == {"slave-1": "healthy", "slave-2": "healthy"}, 10,
             what="both slaves registered")
    row = nodes(master)["slave-1"]
    assert row["hls_url"] == slave1.hls and row["api_url"] == slave1.api
    assert row["rtmp_url"] == slave1.rtmp and row["max_connections"] == 150
    status, health = http_json("GET", f"{slave1.api}/health")
    assert health["master"] == {"url": master.api, "registered": True}

    # Heartbeats arrive: last_heartbeat moves on (it is reported to the second).
    first = nodes(master)["slave-1"]["last_heartbeat"]
    wait_for(lambda: nodes(master)["slave-1"]["last_heartbeat"] != first, 4,
             what="a later heartbeat")

    # SIGKILL: no unregister; the master marks it offline after the timeout.
    killed_at = time.monotonic()
    slave1.kill()
    wait_for(lambda: statuses(master).get("slave-1") == "offline", TIMEOUT + 3,
             interval=0.1, what="slave-1 offline")
    offline_after = time.monotonic() - killed_at
    print(f"slave-1 offline {offline_after:.2f} s after SIGKILL (timeout {TIMEOUT} s)")
    assert TIMEOUT - 1.5 <= offline_after <= TIMEOUT + 1.5, offline_after
    assert statuses(master)["slave-2"] == "healthy"
    routed = Counter(student(master, f"s{i}")["node_id"] for i in range(30))
    assert routed == {"slave-2": 30}
    status, best = http_json("GET", f"{master.api}/cluster/best-node")
    assert status == 200 and best["node_id"] == "slave-2"

    # SIGTERM: the slave unregisters before it exits.
    assert slave2.stop() == 0
    assert "slave-2" not in nodes(master)
    assert "unregistered" in slave2.log()
    status, reply = http_json("POST", f"{master.api}/api/token",
                              {"user_type": "student", "user_id": "late"})
    assert status == 503 and set(reply) == {"error"}


def test_master_restart_slaves_register_again_within_one_interval(cluster: Cluster) -> None:
    master = cluster.master(*MASTER_ARGS)
    slaves = [cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master) for i in (1, 2)]
    wait_for(lambda: len(statuses(master)) == 2, 10, what="slaves registered")
    before = nodes(master)

    master.kill()
    time.sleep(2 * INTERVAL)  # the slaves' heartbeats now fail
    for slave in slaves:
        assert http_get(f"{slave.api}/health")[0] == 200
    again = cluster.master(*MASTER_ARGS, port=master.ports["api"])
    up_at = time.monotonic()
    wait_for(lambda: statuses(again) == {"slave-1": "healthy", "slave-2": "healthy"},
             INTERVAL + 3, interval=0.05, what="slaves registered again")
    took = time.monotonic() - up_at
    print(f"slaves registered again {took:.2f} s after the master was up")
    assert took <= INTERVAL + 0.75, f"re-registration took {took:.2f} s"
    after = nodes(again)
    for node_id in before:
        for key in ("hls_url", "api_url", "rtmp_url", "max_connections"):
            assert after[node_id][key] == before[node_id][key]
    assert "registered again" in slaves[0].log()


def test_slave_serves_while_its_master_is_down_then_registers(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = free_port()
    master = cluster.master(*MASTER_ARGS, port=port, start=False)
    slave = cluster.slave(*SLAVE_ARGS, node_id="slave-1", master=master)
    status, health = http_json("GET", f"{slave.api}/health")
    assert status == 200 and health["master"]["registered"] is False

    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 30,
                        log_path=tmp_path / "pub.log")
    try:
        token = TokenIssuer(cluster.secret_key).mint(
            user_type="student", user_id="kim", action="read", path="live/stream",
            node_id="slave-1", now=time.time(), ttl=600)
        entry = f"{slave.hls}/live/stream/index.m3u8?jwt={token}"
        wait_for(lambda: http_get(entry)[0] == 200, 20, what="the stream is live")
        text = http_get(entry)[1].decode()
        variant = next(line for line in text.splitlines() if line and not line.startswith("#"))
        media = f"{slave.hls}/live/stream/{variant}"
        status, body, _ = http_get(media)
        assert status == 200, body
        segment = next(line for line in body.decode().splitlines()
                       if line and not line.startswith("#"))
        status, data, _ = http_get(media.rsplit("/", 1)[0] + "/" + segment)
        assert status == 200 and data[:1] == b"\x47"  # an MPEG-TS segment

        # The master comes up: the slave (backing off, capped at one interval) registers,
        # and reports itself as the origin of the stream it ingests.
        master.start()
        up_at = time.monotonic()
        wait_for(lambda: "slave-1" in nodes(master), INTERVAL + 3, interval=0.05,
                 what="registration")
        took = time.monotonic() - up_at
        print(f"slave registered {took:.2f} s after its master came up")
        assert took <= INTERVAL + 0.75
        wait_for(lambda: nodes(master)["slave-1"]["streams"] == ["live/stream"], 3,
                 what="origin reported")
        status, teacher = http_json("POST", f"{master.api}/api/token",
                                    {"user_type": "teacher", "user_id": "ms-kim",
                                     "password": cluster.teacher_password})
        assert status == 200 and teacher["node_id"] == "slave-1"
        assert teacher["rtmp_url"] == f"{slave.rtmp}/live"
    finally:
        publisher.kill()
        publisher.wait(5)


async def _join(master: Node, count: int, concurrency: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> dict[str, Any]:
            async with gate, session.post(
                f"{master.api}/api/token",
                json={"user_type": "student", "user_id": f"student-{i}",
                      "stream": "live/stream"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                assert resp.status == 200, await resp.text()
                return dict(await resp.json())

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_450_students_at_once_spread_150_each(cluster: Cluster) -> None:
    master = cluster.master(*MASTER_ARGS)
    slaves = {f"slave-{i}": cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master)
              for i in (1, 2, 3)}
    wait_for(lambda: len(statuses(master)) == 3, 10, what="three slaves registered")
    started = time.monotonic()
    replies = asyncio.run(_join(master, 450, concurrency=50))
    elapsed = time.monotonic() - started
    counts = Counter(reply["node_id"] for reply in replies)
    print(f"450 tokens in {elapsed:.2f} s: {dict(sorted(counts.items()))}")
    assert set(counts) == set(slaves)
    assert all(148 <= n <= 152 for n in counts.values()), counts
    for reply in replies[:20]:
        assert reply["hls_url"].startswith(f"{slaves[reply['node_id']].hls}/live/stream/")
    snap = http_json("GET", f"{master.api}/cluster/nodes")[1]
    assert snap["total_pending"] == 450
