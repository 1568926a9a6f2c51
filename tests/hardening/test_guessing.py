"""Guessing secrets online, against real processes: the stream key over RTMP, the class code,
the teacher password from many addresses at once, and through a slave of a cluster.

Each client is another 127.0.0.0/8 source address, which the servers see as another client.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Cluster, free_port, http_json
from tests.hardening.conftest import RawPeer
from tests.rtmp.publisher import Publisher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLASS_CODE = "kdwmqazp"


def post_token(
    port: int, body: dict[str, Any], source: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(
            "POST",
            "/api/token",
            json.dumps(body),
            {"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


def teacher(port: int, password: str, source: str) -> tuple[int, dict[str, str], Any]:
    return post_token(
        port, {"user_type": "teacher", "user_id": "ms-kim", "password": password}, source
    )


def rtmp_publish(port: int, name: str, source: str) -> tuple[bytes, bool]:
    """One publish attempt on its own connection: (what the server said, whether it closed)."""
    peer = RawPeer(port, source=source)
    try:
        peer.send(Publisher().up_to_publish(name))
        # The answer to `publish` is the onStatus (onFCPublish, before it, says Start anyway).
        peer.read_until(b"onStatus", 5)
        status = bytes(peer.read_until(b"clientid", 5)).split(b"onStatus", 1)[1]
        if b"NetStream.Publish.Start" in status:
            return status, False
        return status, peer.closed_by_server(5)
    finally:
        peer.close()


def test_stream_key_guessing_over_rtmp_is_limited_per_address(cluster: Cluster) -> None:
    slave = cluster.slave()
    port = slave.ports["rtmp"]
    attacker, teacher_pc = "127.0.3.7", "127.0.3.8"
    said = []
    for i in range(8):
        reply, closed = rtmp_publish(port, f"stream?key=guess-{i}-{secrets.token_hex(4)}", attacker)
        assert closed, "a refused publish ends the connection"
        assert b"NetStream.Publish.Unauthorized" in reply
        said.append(b"too many refused publishes" in reply)
    print(f"limited answers to 8 wrong keys from one address: {said}")
    assert said == [False] * 5 + [True] * 3
    # Once limited, even the right key is refused without being looked at.
    reply, closed = rtmp_publish(port, f"stream?key={cluster.stream_key}", attacker)
    assert closed and b"too many refused publishes" in reply
    # Another address publishes with the right key.
    reply, closed = rtmp_publish(port, f"stream?key={cluster.stream_key}", teacher_pc)
    assert not closed and b"NetStream.Publish.Start" in reply
    log = slave.log()
    assert f"from {attacker} rate-limited" in log
    assert cluster.stream_key not in log and "guess-" not in log


def test_class_code_guessing_is_limited_per_address(cluster: Cluster) -> None:
    slave = cluster.slave(f"--class-code={CLASS_CODE}")
    port = slave.ports["api"]
    attacker, student = "127.0.4.7", "127.0.4.8"

    def join(code: str, source: str) -> tuple[int, dict[str, str], Any]:
        body = {"user_type": "student", "user_id": "s1", "class_code": code}
        return post_token(port, body, source)

    statuses = [join(f"{i:08d}", attacker)[0] for i in range(8)]
    print(f"wrong class codes from one address: {statuses}")
    assert statuses == [403] * 5 + [429] * 3
    status, headers, reply = join(CLASS_CODE, attacker)
    assert status == 429 and int(headers["Retry-After"]) >= 1 and set(reply) == {"error"}
    status, _, reply = join(CLASS_CODE, student)
    assert status == 200 and reply["token"]
    assert f"wrong class code from {attacker}" in slave.log()
    assert CLASS_CODE not in slave.log()


def test_many_addresses_hit_the_global_ceiling(cluster: Cluster) -> None:
    """Nine addresses, none near its own allowance, together exceed a ceiling of six."""
    slave = cluster.slave("--guess-global-limit", "6")
    port = slave.ports["api"]
    password = cluster.teacher_password
    botnet = [f"127.0.5.{i}" for i in range(1, 10)]
    # Below the ceiling an address may guess again.
    assert teacher(port, "guess-a", botnet[0])[0] == 401
    assert teacher(port, "guess-b", botnet[0])[0] == 401
    statuses = [teacher(port, f"guess-{i}", source)[0] for i, source in enumerate(botnet[1:])]
    assert statuses == [401] * 8, "each new address gets its attempt"
    # Now every address that failed recently waits, although each failed only once or twice.
    waits = []
    for source in botnet:
        status, headers, _ = teacher(port, "guess-again", source)
        assert status == 429
        waits.append(int(headers["Retry-After"]))
    print(f"Retry-After under the global ceiling: {waits}")
    assert all(1 <= w <= 600 for w in waits)
    # The teacher, on an address that has not failed, still signs in.
    status, _, reply = teacher(port, password, "127.0.5.100")
    assert status == 200 and reply["stream_key"]


def run_slave(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k.removesuffix("_FILE")
        not in ("SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD", "STREAM_KEY", "CLASS_CODE")
        and k not in ("MASTER_URL", "MODE")
    }
    return subprocess.run(
        [sys.executable, "-m", "airclass.slave", "--bind", "127.0.0.1",
         "--api-port", str(free_port()), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("name", ["TEACHER_PASSWORD", "CLASS_CODE"])
def test_a_slave_of_a_cluster_refuses_sign_in_secrets(name: str) -> None:
    value = secrets.token_urlsafe(12)
    env = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "CLUSTER_KEY": secrets.token_urlsafe(32),
        "MASTER_URL": "http://127.0.0.1:9",
        name: value,
    }
    done = run_slave(env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"airclass slave: {name} is set on a slave of a cluster")
    assert value not in done.stderr and "Traceback" not in done.stderr
    # The same settings without a master: a standalone slave takes sign-ins itself.
    del env["MASTER_URL"]
    del env["CLUSTER_KEY"]
    node = subprocess.Popen(
        [sys.executable, "-m", "airclass.slave", "--bind", "127.0.0.1",
         "--api-port", str(free_port()), "--rtmp-port", "0", "--hls-port", str(free_port())],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            node.wait(3)  # still running: it started
    finally:
        node.terminate()
        node.wait(10)


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()


def test_sign_in_through_a_slave_of_a_cluster_is_limited_per_browser(cluster: Cluster) -> None:
    master = cluster.master()
    slave = cluster.slave(master=master)
    password = cluster.teacher_password
    assert slave.proc is not None
    assert password.encode() not in _environ(slave.proc.pid), "the slave holds the password"
    port = slave.ports["api"]
    # The slave's pages sign in through it; the master answers.
    status, _, reply = teacher(port, password, "127.0.6.1")
    assert status == 200 and reply["stream_key"], reply
    assert http_json("GET", f"{slave.api}/api/info")[1]["teacher_enabled"] is True
    # One browser guessing through the slave is limited by its own address ...
    statuses = [teacher(port, f"guess-{i}", "127.0.6.2")[0] for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2, statuses
    # ... which the master counts as that browser's, whichever way it comes in,
    master_port = master.ports["api"]
    assert teacher(master_port, password, "127.0.6.2")[0] == 429
    # ... while another browser behind the same slave is not affected.
    assert teacher(port, password, "127.0.6.3")[0] == 200
    # Nobody but a slave can claim an address: a forged forward is refused.
    forged = {
        "X-AIRClass-Client": "127.9.9.9",
        "X-AIRClass-Timestamp": "1.000",
        "X-AIRClass-Nonce": "0" * 32,
        "X-AIRClass-Signature": "0" * 64,
    }
    body = {"user_type": "teacher", "user_id": "x", "password": "guess"}
    status, _, reply = post_token(master_port, body, "127.0.6.4", forged)
    assert status == 401 and "forwarded sign-in refused" in reply["error"]
    master_log = master.log()
    assert "wrong teacher password from 127.0.6.2" in master_log
    assert password not in master_log and password not in slave.log()
