"""Secrets: nodes refuse weak keys at start, and never write a token or key to their logs.

Both are checked on the real commands: `python -m airclass.master`, `python -m airclass.slave`
and `MODE=... python -m airclass`, as scripts and containers start them.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.e2e.conftest import (
    ROOT,
    Cluster,
    free_port,
    http_get,
    http_json,
    publish,
    wait_for,
)
from tests.e2e.test_slave_media import media_playlist_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

GOOD = secrets.token_urlsafe(32)
OTHER = secrets.token_urlsafe(32)


def run_node(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "CLUSTER_KEY", "MASTER_URL", "MODE", "DEMO")
    }
    base.update(env)
    ports = ["--bind", "127.0.0.1", "--api-port", str(free_port())]
    return subprocess.run(
        [sys.executable, "-m", *command, *ports],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
    )


REFUSED = [
    # (role, environment, the key named in the message)
    ("master", {"CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": "", "CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": "changeme", "CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": "Secret", "CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": "short-key", "CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": GOOD}, "CLUSTER_KEY"),
    ("master", {"SECRET_KEY": GOOD, "CLUSTER_KEY": "password"}, "CLUSTER_KEY"),
    ("master", {"SECRET_KEY": GOOD, "CLUSTER_KEY": "1234567890123456"}, "CLUSTER_KEY"),
    ("master", {"SECRET_KEY": GOOD, "CLUSTER_KEY": GOOD}, "must differ"),
    ("slave", {}, "SECRET_KEY"),
    ("slave", {"SECRET_KEY": "your-secret-key"}, "SECRET_KEY"),
    ("slave", {"SECRET_KEY": GOOD, "MASTER_URL": "http://127.0.0.1:9"}, "CLUSTER_KEY"),
    (
        "slave",
        {"SECRET_KEY": GOOD, "MASTER_URL": "http://127.0.0.1:9", "CLUSTER_KEY": "default"},
        "CLUSTER_KEY",
    ),
]


@pytest.mark.parametrize("how", ["module", "MODE"])
@pytest.mark.parametrize(("role", "env", "named"), REFUSED)
def test_weak_or_missing_keys_refuse_to_start(
    role: str, env: dict[str, str], named: str, how: str
) -> None:
    if how == "module":
        done = run_node([f"airclass.{role}"], env)
    else:
        done = run_node(["airclass"], {**env, "MODE": role})
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert done.stderr.startswith(f"airclass {role}: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, "one clear line"
    for value in env.values():
        if len(value) >= 8 and not value.startswith("http"):
            assert value not in done.stderr, "the refused key was echoed"


def test_strong_keys_start(cluster: Cluster) -> None:
    """The control for the refusals above: the same commands start with strong keys."""
    master = cluster.master()
    slave = cluster.slave(master=master)
    assert http_json("GET", f"{master.api}/health")[0] == 200
    assert http_json("GET", f"{slave.api}/health")[0] == 200


def _forged(claims_from: str) -> str:
    """A token with the claims of a real one, signed with another key."""
    claims = jwt.decode(claims_from, options={"verify_signature": False})
    return jwt.encode(claims, OTHER, algorithm="HS256")


def test_no_token_or_key_in_the_logs(cluster: Cluster, tmp_path: Path) -> None:
    master = cluster.master("--log-level", "DEBUG")
    slave = cluster.slave("--log-level", "DEBUG", master=master)
    wait_for(
        lambda: http_json("GET", f"{master.api}/cluster/nodes")[1]["healthy_nodes"] == 1,
        15,
        what="the slave registered",
    )
    secrets_seen: dict[str, str] = {
        "SECRET_KEY": cluster.secret_key,
        "CLUSTER_KEY": cluster.cluster_key,
        "TEACHER_PASSWORD": cluster.teacher_password,
        "STREAM_KEY": cluster.stream_key,
    }

    def token(body: dict[str, str]) -> dict[str, str]:
        status, reply = http_json("POST", f"{master.api}/api/token", body)
        assert status == 200, reply
        secrets_seen[f"token {body['user_id']}"] = reply["token"]
        return dict(reply)

    teacher = token(
        {
            "user_type": "teacher",
            "user_id": "ms-kim",
            "password": cluster.teacher_password,
            "stream": "live/stream",
        }
    )
    publisher = publish(
        f"{teacher['rtmp_url']}/{teacher['stream_key']}", 30, log_path=tmp_path / "ffmpeg.log"
    )
    rejected: list[subprocess.Popen[bytes]] = []
    try:
        student = token({"user_type": "student", "user_id": "student-7", "stream": "live/stream"})
        wait_for(lambda: http_get(student["hls_url"])[0] == 200, 20, what="the first segment")
        media = media_playlist_url(student["hls_url"])
        session = re.search(r"/([A-Za-z0-9_-]{8,96})/media\.m3u8", media)
        assert session is not None
        secrets_seen["session id"] = session.group(1)
        playlist = http_get(media)[1].decode()
        segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
        assert http_get(media.rsplit("/", 1)[0] + "/" + segment)[0] == 200
        # The same token as a bearer header, and a second student on the slave's own token API.
        assert (
            http_get(
                student["hls_url"].split("?")[0],
                headers={"Authorization": f"Bearer {student['token']}"},
            )[0]
            == 200
        )
        status, reply = http_json(
            "POST", f"{slave.api}/api/token", {"user_type": "student", "user_id": "student-8"}
        )
        assert status == 200
        secrets_seen["token student-8"] = reply["token"]

        # Refused: a wrong teacher password, bad and forged tokens, a wrong stream key.
        wrong_password = "wrong-" + secrets.token_urlsafe(12)
        status, _ = http_json(
            "POST",
            f"{master.api}/api/token",
            {"user_type": "teacher", "user_id": "x", "password": wrong_password},
        )
        assert status in (401, 403)
        secrets_seen["wrong password"] = wrong_password
        forged = _forged(student["token"])
        secrets_seen["forged token"] = forged
        assert http_get(student["hls_url"].split("?")[0] + f"?jwt={forged}")[0] == 401
        forged_publish = _forged(teacher["token"])
        secrets_seen["forged publish token"] = forged_publish
        wrong_key = "nope-" + secrets.token_urlsafe(12)
        secrets_seen["wrong stream key"] = wrong_key
        base = f"{slave.rtmp}/live"
        for url in (
            f"{base}/stream?jwt={forged_publish}",
            f"{base}/other?key={wrong_key}",
            f"{base}/stream?jwt=not.a.token",
        ):
            rejected.append(publish(url, 5, log_path=tmp_path / "rejected.log"))
        for proc in rejected:
            assert proc.wait(20) != 0
    finally:
        publisher.kill()
        publisher.wait()
        for proc in rejected:
            proc.kill()
            proc.wait()
    master.stop()
    slave.stop()

    logs = {"master": master.log(), "slave": slave.log()}
    assert "publish refused" in logs["slave"], "the rejected publishes were logged"
    assert len(logs["slave"].splitlines()) > 20 and "DEBUG" in logs["slave"]
    for name, value in secrets_seen.items():
        # A whole token, and also its signature alone (a truncated token would still leak it).
        pieces = [value] + ([value.rsplit(".", 1)[1]] if value.count(".") == 2 else [])
        for piece in pieces:
            for node, text in logs.items():
                assert piece not in text, f"{name} appears in the {node} log"
