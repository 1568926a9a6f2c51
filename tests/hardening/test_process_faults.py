"""Process faults with a real lecture playing: a slave or the master is
SIGKILLed, a slave's master does not exist, a slave serving relay long polls is SIGTERMed.

Real master and slave processes on loopback, a real ffmpeg publisher and simulated hls.js
viewers (`python -m airclass.loadtest --fail-on-stall`): "viewers keep watching" means no
viewer's buffer ran dry.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from airclass.auth.tokens import TokenIssuer
from airclass.cluster.signing import sign
from tests.e2e.conftest import (
    ROOT,
    Cluster,
    Node,
    free_port,
    http_get,
    http_json,
    publish,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

INTERVAL = 1.0
TIMEOUT = 3.0
MASTER_ARGS = ("--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", str(TIMEOUT))
SLAVE_ARGS = ("--heartbeat-interval", str(INTERVAL))


def nodes(master: Node) -> dict[str, dict[str, Any]]:
    status, snap = http_json("GET", f"{master.api}/cluster/nodes", timeout=2)
    assert status == 200, snap
    return {row["node_id"]: row for row in snap["nodes"]}


def statuses(master: Node) -> dict[str, str]:
    return {node_id: row["status"] for node_id, row in nodes(master).items()}


def relaying(node: Node) -> bool:
    status, stats = http_json("GET", f"{node.api}/api/stats")
    stream = stats.get("streams", {}).get("live/stream") if status == 200 else None
    return bool(stream and (stream.get("media_sequence") or 0) >= 1)


def entry_variants(cluster: Cluster, node: Node, node_id: str) -> list[str]:
    token = TokenIssuer(cluster.secret_key).mint(
        user_type="student",
        user_id="probe",
        action="read",
        path="live/stream",
        node_id=node_id,
        now=time.time(),
        ttl=600,
    )
    status, body, _ = http_get(f"{node.hls}/live/stream/index.m3u8?jwt={token}")
    if status != 200:
        return []
    return [line for line in body.decode().splitlines() if line and not line.startswith("#")]


@contextmanager
def lecture_on(
    cluster: Cluster, origin: Node, seconds: float = 180
) -> Iterator[subprocess.Popen[bytes]]:
    publisher = publish(
        f"{origin.rtmp}/live/stream?key={cluster.stream_key}",
        seconds,
        log_path=cluster.tmp / "publisher.log",
    )
    try:
        wait_for(lambda: relaying(origin), 20, what="the lecture is live")
        yield publisher
    finally:
        publisher.kill()
        publisher.wait(5)


class Viewers:
    """`python -m airclass.loadtest` in the background."""

    def __init__(self, cluster: Cluster, url: str, count: int, seconds: float) -> None:
        self.out = cluster.tmp / f"viewers-{time.monotonic_ns()}.json"
        self.seconds = seconds
        self.count = count
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airclass.loadtest",
                "--url",
                url,
                "--viewers",
                str(count),
                "--duration",
                str(seconds),
                "--ramp",
                "1",
                "--fail-on-stall",
                "--quiet",
                "--json",
                str(self.out),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def finish(self) -> dict[str, Any]:
        try:
            output, _ = self.proc.communicate(timeout=self.seconds + 60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0, output.decode(errors="replace")
        summary: dict[str, Any] = json.loads(self.out.read_text())
        assert summary["stalls"] == 0 and summary["viewers_started"] == self.count, summary
        print(
            f"viewers: {self.count} over {summary['duration_s']} s, stalls 0, errors "
            f"{summary['errors']}, failovers {summary['failovers']}, by node "
            f"{summary['by_node']}"
        )
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_sigkill_a_slave_mid_lecture_viewers_fail_over(cluster: Cluster) -> None:
    master = cluster.master(*MASTER_ARGS)
    origin = cluster.slave(*SLAVE_ARGS, node_id="slave-1", master=master)
    edges = [cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master) for i in (2, 3)]
    wait_for(lambda: len(statuses(master)) == 3, 10, what="three slaves registered")
    with lecture_on(cluster, origin):
        for edge in edges:
            wait_for(lambda edge=edge: relaying(edge), 20, what=f"{edge.api} relays")
        wait_for(
            lambda: len(entry_variants(cluster, edges[0], "slave-2")) == 3,
            10,
            what="entry playlists list two backups",
        )
        viewers = Viewers(cluster, master.api, count=12, seconds=30)
        try:
            time.sleep(10)
            victim = edges[0]
            assert victim.proc is not None
            killed_at = time.monotonic()
            victim.kill()
            wait_for(
                lambda: statuses(master).get("slave-2") == "offline",
                TIMEOUT + 3,
                interval=0.1,
                what="slave-2 offline",
            )
            offline_after = time.monotonic() - killed_at
            # New viewers are not offered it as a backup once the origin's next heartbeat
            # reply says it is offline.
            wait_for(lambda: not any(victim.hls in uri
                                     for uri in entry_variants(cluster, origin, "slave-1")),
                     2 * INTERVAL + 1, what="slave-2 dropped from the backups")
            summary = viewers.finish()
        finally:
            viewers.kill()
    print(f"slave-2 SIGKILLed: marked offline after {offline_after:.2f} s (timeout {TIMEOUT} s)")
    assert offline_after <= TIMEOUT + 1.5
    on_victim = summary["by_node"].get("slave-2", 0)
    assert on_victim >= 1, summary["by_node"]
    assert summary["failovers"] >= on_victim, summary


def test_sigkill_the_master_viewers_keep_watching_and_it_is_right_again(
    cluster: Cluster,
) -> None:
    master = cluster.master(*MASTER_ARGS)
    origin = cluster.slave(*SLAVE_ARGS, node_id="slave-1", master=master)
    edge = cluster.slave(*SLAVE_ARGS, node_id="slave-2", master=master)
    wait_for(lambda: len(statuses(master)) == 2, 10, what="slaves registered")
    with lecture_on(cluster, origin):
        wait_for(lambda: relaying(edge), 20, what="the edge relays")
        count = 10
        viewers = Viewers(cluster, master.api, count=count, seconds=30)
        try:
            time.sleep(6)
            wait_for(
                lambda: (
                    nodes(master)["slave-1"]["current_connections"]
                    + nodes(master)["slave-2"]["current_connections"]
                    == count
                ),
                10,
                what="every viewer counted",
            )
            before = nodes(master)
            master.kill()
            time.sleep(4 * INTERVAL)  # slaves' heartbeats fail; the lecture goes on
            again = cluster.master(*MASTER_ARGS, port=master.ports["api"])
            up_at = time.monotonic()

            def right() -> bool:
                now = nodes(again)
                return (
                    {k: v["status"] for k, v in now.items()}
                    == {"slave-1": "healthy", "slave-2": "healthy"}
                    and now["slave-1"]["streams"] == ["live/stream"]
                    and sum(v["current_connections"] for v in now.values()) == count
                )

            wait_for(right, INTERVAL + 3, interval=0.05, what="/cluster/nodes right again")
            took = time.monotonic() - up_at
            after = nodes(again)
            summary = viewers.finish()
        finally:
            viewers.kill()
    print(
        f"master restarted: /cluster/nodes right again {took:.2f} s after it was up "
        f"(heartbeat interval {INTERVAL} s)"
    )
    assert took <= INTERVAL + 0.75, took
    for node_id, row in before.items():
        for key in ("hls_url", "api_url", "rtmp_url", "max_connections"):
            assert after[node_id][key] == row[key]
    assert summary["errors"] == 0, summary


_BACKOFF_RE = re.compile(
    r"^(\S+ \S+) INFO airclass\.cluster\.link: node slave-1: next registration attempt in "
    r"([0-9.]+) s \(backoff ([0-9.]+) s, cap ([0-9.]+) s\)$"
)


def test_slave_whose_master_is_nowhere_serves_and_backs_off(cluster: Cluster) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    cap = 4.0
    slave = cluster.slave(
        "--heartbeat-interval", str(cap), "--master-url", nowhere, node_id="slave-1"
    )
    with lecture_on(cluster, slave):
        # Nobody new joins while the master is away: sign-ins are the master's (DESIGN.md §1).
        status, reply = http_json(
            "POST", f"{slave.api}/api/token", {"user_type": "student", "user_id": "s1"}
        )
        assert status == 503 and "master" in reply["error"], reply
        # A student holding a token from before keeps watching.
        token = TokenIssuer(cluster.secret_key).mint(
            user_type="student", user_id="s1", action="read", path="live/stream",
            node_id="slave-1", now=time.time(), ttl=600,
        )
        playlist = f"{slave.hls}/live/stream/index.m3u8?jwt={token}"
        watched_until = time.monotonic() + 15
        while time.monotonic() < watched_until:
            assert http_get(playlist)[0] == 200
            time.sleep(1)  # a player's reload interval, while the slave backs off for real
        status, health = http_json("GET", f"{slave.api}/health")
        assert status == 200 and health["master"] == {"url": nowhere, "registered": False}
    steps = [_BACKOFF_RE.match(line) for line in slave.log().splitlines()]
    found = [
        (m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4))) for m in steps if m
    ]
    levels = [level for _, _, level, _ in found]
    print(
        "registration backoff (drawn delay / level):",
        ", ".join(f"{d:.2f}/{b:.1f}" for _, d, b, _ in found),
    )
    # Doubling from 0.5 s to the cap (one heartbeat interval), then quiet at the cap.
    assert levels == [0.5, 1.0, 2.0, 4.0], levels
    assert all(c == cap and 0 < d <= b for _, d, b, c in found), found
    times = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp() for t, *_ in found]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for (_, delay, _, _), gap in zip(found[:-1], gaps, strict=True):
        assert delay - 0.05 <= gap <= delay + 1.0, (delay, gap)
    assert slave.log().count("register to") >= 1  # the failure itself is logged once


def _long_poll(cluster: Cluster, origin: Node, after: int, wait: float) -> dict[str, Any]:
    """One signed relay long poll (as an edge sends it); its status and when it ended."""
    path = f"/cluster/relay/live/stream?after={after}&wait={wait:g}"
    headers = sign(cluster.cluster_key, "GET", path, b"", time.time())
    started = time.monotonic()
    status: int | str
    try:
        status = http_get(f"{origin.hls}{path}", timeout=wait + 10, headers=headers)[0]
    except OSError as exc:
        status = type(exc).__name__
    return {"status": status, "took": time.monotonic() - started}


def test_sigterm_a_slave_serving_relay_long_polls_exits_promptly(cluster: Cluster) -> None:
    master = cluster.master(*MASTER_ARGS)
    origin = cluster.slave(*SLAVE_ARGS, node_id="slave-1", master=master)
    edges = [cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master) for i in (2, 3)]
    wait_for(lambda: len(statuses(master)) == 3, 10, what="slaves registered")
    results = {}
    with lecture_on(cluster, origin) as publisher:
        for edge in edges:
            wait_for(lambda edge=edge: relaying(edge), 20, what="edges relay")
        # The teacher's encoder drops out: no new segment comes, so every long poll on the
        # origin (the edges', and three of ours) waits its full 10-20 s.
        publisher.kill()
        publisher.wait(5)
        newest = http_json("GET", f"{origin.api}/api/stats")[1]["streams"]["live/stream"][
            "media_sequence"
        ]
        with ThreadPoolExecutor(3) as pool:
            polls = [pool.submit(_long_poll, cluster, origin, newest, 20) for _ in range(3)]
            time.sleep(1.0)
            assert not any(p.done() for p in polls), [p.result() for p in polls if p.done()]
            for node_id, node in (("slave-1", origin), ("slave-2", edges[0])):
                proc = node.proc
                assert proc is not None
                sent_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                gone_at = None
                while proc.poll() is None and time.monotonic() - sent_at < 15:
                    if gone_at is None and node_id not in nodes(master):
                        gone_at = time.monotonic()
                    time.sleep(0.02)
                exited_at = time.monotonic()
                assert proc.wait(5) == 0
                assert node_id not in nodes(master), "the master still lists a stopped slave"
                # Unregistered before the process finished stopping, unless it stopped at once.
                assert gone_at is not None or exited_at - sent_at < 0.3, node.log()[-2000:]
                results[node_id] = (exited_at - sent_at, (gone_at or exited_at) - sent_at)
                assert "unregistered" in node.log()
            held = [p.result() for p in polls]
    for node_id, (exit_s, gone_s) in results.items():
        print(f"{node_id} SIGTERM: unregistered after {gone_s:.2f} s, exited after {exit_s:.2f} s")
        assert exit_s < 3.0, results
        assert gone_s <= exit_s, results
    print(
        f"long polls held at SIGTERM ended after {[round(h['took'], 2) for h in held]} s: "
        f"{[h['status'] for h in held]}"
    )
    assert all(h["took"] < 1.0 + 3.0 for h in held), held
