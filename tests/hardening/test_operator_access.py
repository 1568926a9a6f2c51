"""The operator views of a real master and slave from a client outside the trusted networks.

The node list, the Prometheus targets, `/api/stats` and `/metrics` name every node's address
and every stream. The nodes trust only 127.0.0.1 here, and the client binds its socket to
127.0.0.2: without credentials, with a bad token, a forged or a student's token, each view
answers a JSON 401/403 that names nothing; with the metrics token or a teacher's token it
answers 200, as it does to 127.0.0.1 without credentials. The slave's /health says only that
it is up to anyone else.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import urllib.parse
from pathlib import Path

import pytest

from airclass.auth.tokens import TokenIssuer
from tests.e2e.conftest import Cluster, http_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

OUTSIDER = "127.0.0.2"
NEEDS_CREDENTIALS = (
    "this needs credentials from outside the trusted networks: "
    "Authorization: Bearer <metrics token or teacher token>"
)


def get(
    url: str, source: str = OUTSIDER, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """GET `url` from a socket bound to `source`."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=5, source_address=(source, 0)
    )
    try:
        conn.request("GET", parts.path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_operator_views_need_a_trusted_network_or_a_token(
    cluster: Cluster, tmp_path: Path
) -> None:
    metrics_token = secrets.token_urlsafe(32)
    token_file = tmp_path / "metrics_token"
    token_file.write_text(metrics_token + "\n")
    access = ["--trusted-networks", "127.0.0.1/32", f"--metrics-token-file={token_file}"]
    master = cluster.master("--heartbeat-interval", "1", *access)
    slave = cluster.slave("--heartbeat-interval", "1", *access, master=master, node_id="slave-1")
    wait_for(
        lambda: http_json("GET", f"{master.api}/cluster/nodes")[1]["healthy_nodes"] == 1,
        15, what="the slave's registration",
    )
    status, teacher = http_json(
        "POST", f"{master.api}/api/token",
        {"user_type": "teacher", "user_id": "ms-lee", "password": cluster.teacher_password},
    )
    assert status == 200, teacher
    status, student = http_json(
        "POST", f"{master.api}/api/token", {"user_type": "student", "user_id": "yuna"}
    )
    assert status == 200, student
    forged = TokenIssuer(secrets.token_urlsafe(32)).mint(
        user_type="teacher", user_id="mallory", action="publish", path="live/stream",
        node_id="slave-1", now=time.time(), ttl=600,
    )
    views = [
        f"{master.api}/cluster/nodes",
        f"{master.api}/cluster/prometheus-targets",
        f"{master.api}/api/stats",
        f"{master.api}/metrics",
        f"{slave.api}/api/stats",
        f"{slave.api}/metrics",
        f"{slave.hls}/api/stats",  # what the teacher page asks the ingest node for
    ]
    refusals = [
        ({}, 401, NEEDS_CREDENTIALS),
        (bearer(secrets.token_urlsafe(32)), 401, "bad token"),
        (bearer(metrics_token + "x"), 401, "bad token"),
        ({"Authorization": f"Basic {metrics_token}"}, 401, NEEDS_CREDENTIALS),
        ({"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}, 401, NEEDS_CREDENTIALS),
        (bearer(forged), 401, "bad token signature"),
        (bearer(student["token"]), 403, "only teachers may see the cluster's numbers"),
    ]
    for url in views:
        for headers, expected, message in refusals:
            status, body, reply_headers = get(url, headers=headers)
            assert (status, json.loads(body)) == (expected, {"error": message}), (url, headers)
            assert reply_headers["Content-Type"] == "application/json"
            assert b"127.0.0.1:" not in body and b"slave-1" not in body
            if expected == 401:
                assert reply_headers["WWW-Authenticate"] == 'Bearer realm="airclass"'
        for headers in (bearer(metrics_token), bearer(teacher["token"])):
            status, body, _ = get(url, headers=headers)
            assert status == 200, (url, headers, body)
        assert get(url, source="127.0.0.1")[0] == 200, url
    # The slave's /health answers every probe (a Kubernetes kubelet is not on loopback), but
    # names its streams and its master only to operators.
    status, body, _ = get(f"{slave.api}/health")
    assert status == 200 and set(json.loads(body)) == {"status", "role", "node_id", "version"}
    status, body, _ = get(f"{slave.api}/health", headers=bearer(metrics_token))
    assert status == 200 and json.loads(body)["master"]["url"] == master.api
    # What the granted views show is what the refused ones withheld.
    status, body, _ = get(f"{master.api}/cluster/nodes", headers=bearer(metrics_token))
    assert json.loads(body)["nodes"][0]["node_id"] == "slave-1"
    status, body, _ = get(f"{master.api}/cluster/prometheus-targets",
                          headers=bearer(teacher["token"]))
    assert json.loads(body)[0]["targets"] == [slave.api.removeprefix("http://")]
