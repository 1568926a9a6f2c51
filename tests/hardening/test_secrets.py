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
import yaml

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
EXAMPLE: dict[str, str] = yaml.safe_load(
    (ROOT / "deploy/k8s/secret.example.yaml").read_text()
)["stringData"]
EXAMPLE_VALUES = sorted(EXAMPLE.items())


def run_node(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k.removesuffix("_FILE")
        not in ("SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD", "STREAM_KEY", "CLASS_CODE")
        and k not in ("MASTER_URL", "MODE", "DEMO")
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
    # Long enough for the old length check, and still guessable or copied from an example.
    ("master", {"SECRET_KEY": "a" * 40, "CLUSTER_KEY": GOOD}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": GOOD[:24], "CLUSTER_KEY": OTHER}, "SECRET_KEY"),
    *(
        ("master", {"SECRET_KEY": GOOD, "CLUSTER_KEY": OTHER, name: value}, name)
        for name, value in EXAMPLE_VALUES
        if name != "SECRET_KEY"
    ),
    ("master", {"SECRET_KEY": EXAMPLE["SECRET_KEY"], "CLUSTER_KEY": OTHER}, "SECRET_KEY"),
    ("master", {"SECRET_KEY": GOOD, "CLUSTER_KEY": OTHER, "CLASS_CODE": "123456"}, "CLASS_CODE"),
    ("slave", {"SECRET_KEY": GOOD, "STREAM_KEY": "obs-stream-1"}, "STREAM_KEY"),
    ("slave", {"SECRET_KEY": GOOD, "TEACHER_PASSWORD": "teacher1"}, "TEACHER_PASSWORD"),
    (
        "slave",
        {
            "SECRET_KEY": GOOD,
            "CLUSTER_KEY": OTHER,
            "MASTER_URL": "http://127.0.0.1:9",
            "TEACHER_PASSWORD": secrets.token_urlsafe(12),
        },
        "TEACHER_PASSWORD",
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


def test_secrets_from_files_stay_out_of_ps_and_the_environment(tmp_path: Path) -> None:
    """What compose and Kubernetes now do: every secret in a file named by *_FILE."""
    values = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "TEACHER_PASSWORD": secrets.token_urlsafe(12),
        "STREAM_KEY": secrets.token_urlsafe(12),
        "CLASS_CODE": "kdwmqazp",
    }
    env = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in values}
    env.pop("CLUSTER_KEY", None)
    env.pop("MASTER_URL", None)
    for name, value in values.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        path.chmod(0o600)
        env[f"{name}_FILE"] = str(path)
    api, hls = free_port(), free_port()
    log_path = tmp_path / "slave.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airclass.slave", "--bind", "127.0.0.1", "--api-port",
             str(api), "--hls-port", str(hls), "--rtmp-port", str(free_port())],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{api}"), 15, what="the slave started")
        seen = Path(f"/proc/{proc.pid}/environ").read_bytes()
        seen += Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        for name, value in values.items():
            assert value.encode() not in seen, f"{name} is visible in ps or the environment"
        # And it uses them: the teacher signs in with the password from the file.
        status, reply = http_json(
            "POST",
            f"http://127.0.0.1:{api}/api/token",
            {"user_type": "teacher", "user_id": "t", "password": values["TEACHER_PASSWORD"]},
        )
        assert status == 200 and reply["stream_key"]
        status, _ = http_json(
            "POST",
            f"http://127.0.0.1:{api}/api/token",
            {"user_type": "student", "user_id": "s", "class_code": values["CLASS_CODE"]},
        )
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(15)
    text = log_path.read_text()
    assert "readable by other users" not in text
    assert all(value not in text for value in values.values())


def _healthy(api: str) -> bool:
    try:
        return http_json("GET", f"{api}/health", timeout=1)[0] == 200
    except OSError:
        return False
