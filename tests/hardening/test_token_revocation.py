"""Token revocation and the short publish token, on real processes.

- A teacher's tokens are revoked by changing the teacher password: the master restarted with
  another TEACHER_PASSWORD refuses the old tokens (401), and so does a cluster slave that does
  not know the password itself (it asks the master for the current epoch), on its API and on
  RTMP publish; tokens of the new password work on both.
- A publish token is checked when the publish starts, not after: a real ffmpeg publish keeps
  going past the token's expiry (and the clock-skew leeway), while the same token is refused
  for anything new.
"""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from airclass.auth.epoch import TeacherEpochs
from airclass.auth.tokens import DEFAULT_LEEWAY, TokenIssuer
from tests.e2e.conftest import Cluster, Node, http_json, publish, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def teacher_reply(api: str, password: str) -> tuple[int, Any]:
    return http_json(
        "POST",
        f"{api}/api/token",
        {"user_type": "teacher", "user_id": "ms-kim", "password": password},
    )


def dashboard(api: str, token: str) -> int:
    req = urllib.request.Request(
        f"{api}/api/dashboard", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def stream_info(node: Node) -> dict[str, Any]:
    _status, stats = http_json("GET", f"{node.api}/api/stats", timeout=2)
    return dict(stats["streams"].get("live/stream") or {})


def publish_accepted(node: Node, url: str, tmp_path: Path, name: str) -> bool:
    """Publish for a few seconds; True if the slave took it (the stream went live)."""
    proc = publish(url, 4, log_path=tmp_path / f"{name}.log")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if stream_info(node).get("publishing"):
                return True
            time.sleep(0.1)
        return bool(stream_info(node).get("publishing"))
    finally:
        proc.kill()
        proc.wait()
        wait_for(lambda: not stream_info(node).get("publishing"), 10, what="the publisher gone")


def test_changing_the_teacher_password_revokes_teacher_tokens(
    cluster: Cluster, tmp_path: Path
) -> None:
    master = cluster.master()
    slave = cluster.slave("--heartbeat-interval", "0.5", master=master, start=False)
    assert "TEACHER_PASSWORD" not in slave.env  # a cluster slave does not know it
    slave.start()
    wait_for(lambda: http_json("GET", f"{slave.api}/health")[1]["master"]["registered"], 10,
             what="the slave registered")
    old_password = cluster.teacher_password
    status, old = teacher_reply(master.api, old_password)
    assert status == 200, old
    assert dashboard(master.api, old["token"]) == 200
    assert dashboard(slave.api, old["read_token"]) == 200
    assert publish_accepted(slave, old["publish_url"], tmp_path, "before")

    # The IT person changes the password and restarts the master (same address).
    master.stop()
    cluster.teacher_password = secrets.token_urlsafe(12)
    master = cluster.master(port=master.ports["api"])

    assert dashboard(master.api, old["token"]) == 401
    assert dashboard(master.api, old["read_token"]) == 401
    # The slave learns the new epoch within a heartbeat interval.
    wait_for(lambda: dashboard(slave.api, old["read_token"]) == 401, 10,
             what="the slave refusing the old teacher token")
    assert dashboard(slave.api, old["token"]) == 401
    assert not publish_accepted(slave, old["publish_url"], tmp_path, "revoked")
    assert "teacher token revoked (the teacher password changed)" in slave.log()
    assert teacher_reply(master.api, old_password)[0] == 401

    status, new = teacher_reply(master.api, cluster.teacher_password)
    assert status == 200, new
    assert dashboard(master.api, new["token"]) == 200
    assert dashboard(slave.api, new["read_token"]) == 200
    assert publish_accepted(slave, new["publish_url"], tmp_path, "after")
    for node in (master, slave):
        assert "Traceback" not in node.log()


def test_a_publish_outlives_its_token(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave("--publish-token-ttl", "60")
    # The slave's own sign-in hands out publish tokens of the configured life.
    status, reply = teacher_reply(slave.api, cluster.teacher_password)
    assert status == 200 and reply["expires_in"] == 60
    assert reply["expires_at"] - time.time() <= 61

    # A token that stops being accepted (expiry plus the clock-skew leeway) 6 s from now,
    # minted as the slave would mint it (same key, same password epoch).
    issuer = TokenIssuer(
        cluster.secret_key,
        TeacherEpochs.from_password(cluster.secret_key, cluster.teacher_password),
    )
    now = time.time()
    lifetime = 10.0
    token = issuer.mint(user_type="teacher", user_id="ms-kim", action="publish",
                        path="live/stream", node_id="slave-1",
                        now=now + 6 - DEFAULT_LEEWAY - lifetime, ttl=lifetime)
    dead_at = now + 6
    publisher = publish(f"{slave.rtmp}/live/stream?jwt={token}", 18,
                        log_path=tmp_path / "publisher.log")
    try:
        wait_for(lambda: stream_info(slave).get("publishing"), 6, interval=0.05,
                 what="the publish accepted while the token is valid")
        time.sleep(max(0.0, dead_at + 1 - time.time()))
        assert dashboard(slave.api, token) == 401  # the token itself is dead now
        before = stream_info(slave)["media_sequence"]
        time.sleep(6)
        after = stream_info(slave)
        assert after["publishing"], "the publish continued past its token's expiry"
        assert after["media_sequence"] >= before + 2, "segments kept coming after the expiry"
        assert publisher.wait(timeout=30) == 0, (tmp_path / "publisher.log").read_text()
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
    # A new publish with the dead token is refused.
    retry = publish(f"{slave.rtmp}/live/stream?jwt={token}", 3)
    try:
        assert retry.wait(timeout=20) != 0
    except subprocess.TimeoutExpired:
        retry.kill()
        raise
    assert "publish refused: NetStream.Publish.Unauthorized token expired" in slave.log()
