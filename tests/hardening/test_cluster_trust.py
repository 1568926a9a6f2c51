"""Whoever answers on the master's or an origin's address is not believed: real slaves, a real
master, and impostors on loopback that answer without the cluster's signature."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airclass.cluster.signing import NONCE_HEADER, REPLY_SIGNATURE_HEADER, sign_reply
from tests.e2e.conftest import Cluster, http_json, publish, wait_for
from tests.e2e.test_relay import serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PATH = "live/stream"


class Impostor:
    """An HTTP server on a loopback port that answers every request with `reply(path)`:
    (status, headers, body). It records what it was asked."""

    def __init__(
        self, port: int, reply: Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]
    ) -> None:
        self.requests: list[str] = []
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                impostor.requests.append(f"{self.command} {self.path}")
                status, headers, body = reply(self.path, dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def impostor(
    reply: Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]], port: int = 0
) -> Iterator[Impostor]:
    server = Impostor(port, reply)
    try:
        yield server
    finally:
        server.close()


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.mark.parametrize("signature", ["none", "wrong key"])
def test_a_slave_follows_nothing_a_fake_master_names(cluster: Cluster, signature: str) -> None:
    """A fake master names a fake origin for a live class and fake peers for every viewer's
    playlist; the slave refuses its replies, asks the fake origin nothing and lists no peer."""
    wrong_key = secrets.token_urlsafe(32)
    with impostor(lambda path, headers: _json(404, {"error": "no"})) as origin:

        def master_reply(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            view = {
                "ok": True, "node_id": "slave-t", "registration": "a" * 32,
                "streams": {PATH: {"origin": "evil", "origin_hls": origin.url,
                                   "origin_api": origin.url}},
                "peers": [{"node_id": "evil", "hls_url": origin.url, "api_url": origin.url,
                           "status": "healthy", "load_percentage": 0}],
            }
            status, out, body = _json(200, view)
            if signature == "wrong key":
                nonce = headers.get(NONCE_HEADER, "0" * 32)
                out[REPLY_SIGNATURE_HEADER] = sign_reply(wrong_key, nonce, status, out, body)
            return status, out, body

        with impostor(master_reply) as master:
            slave = cluster.slave(
                "--heartbeat-interval", "0.5", "--master-url", master.url, node_id="slave-t"
            )
            wait_for(lambda: len(master.requests) >= 4, 20, what="the slave to ask the master")
            time.sleep(2)
            status, health = http_json("GET", f"{slave.api}/health")
            assert status == 200 and health["master"]["registered"] is False, health
            status, stats = http_json("GET", f"{slave.api}/api/stats")
            assert stats["relay"]["following"] == {}, stats["relay"]
            assert origin.requests == []
            assert all(r.startswith(("POST /cluster/register", "POST /cluster/teacher-epoch"))
                       for r in master.requests)
            assert origin.requests == []
            reason = "unsigned reply" if signature == "none" else "bad reply signature"
            assert f"HTTP 200 refused: {reason}" in slave.log()
            # A student signing in on this slave is not handed what the fake master says.
            status, reply = http_json("POST", f"{slave.api}/api/token",
                                      {"user_type": "student", "user_id": "kim",
                                       "stream": PATH})
            assert (status, reply) == (502, {"error": "the master's answer could not be verified"})
            assert all(r.startswith("POST ") for r in master.requests)


def test_an_impostor_on_the_origins_address_is_not_relayed(cluster: Cluster) -> None:
    """The origin's PC goes away and another machine answers on its address with its own
    video: the edge refuses every reply, and its viewers never get a byte of it."""
    interval = ("--heartbeat-interval", "1")
    master = cluster.master(*interval, "--heartbeat-timeout", "30")
    origin = cluster.slave(*interval, master=master, node_id="slave-o")
    edge = cluster.slave(*interval, master=master, node_id="slave-e")
    publisher: subprocess.Popen[bytes] | None = None
    try:
        publisher = publish(f"{origin.rtmp}/{PATH}?key={cluster.stream_key}", 120, gop=25)
        wait_for(lambda: (serving(edge) or {}).get("media_sequence", -1) >= 1, 30,
                 what="the edge to relay the lecture")
        origin.kill()
        publisher.kill()
        before = http_json("GET", f"{edge.api}/api/stats")[1]
        newest = before["streams"][PATH]["media_sequence"]
        bad = b"\x47" + b"\x1f\xff\x10" + b"\xff" * 184  # a TS packet of someone else's

        def reply(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            if path.endswith("/state"):
                return _json(200, {"node_id": "slave-o", "path": PATH, "state": "live",
                                   "publishing": True, "ended": False, "segments": []})
            return 200, {
                "Content-Type": "video/mp2t", "X-AIRClass-Sequence": str(newest + 1),
                "X-AIRClass-Duration": "1.0", "X-AIRClass-Program-Date-Time": str(time.time()),
                "X-AIRClass-Discontinuity": "0", "X-AIRClass-Discontinuity-Sequence": "0",
                "X-AIRClass-Target-Duration": "2", "X-AIRClass-Ended": "0",
                "X-AIRClass-Node": "slave-o",
            }, bad * 100

        with impostor(reply, port=origin.ports["api"]) as fake:
            wait_for(lambda: len(fake.requests) >= 3, 30, what="the edge to ask the impostor")
            time.sleep(1)
            stats = http_json("GET", f"{edge.api}/api/stats")[1]
        assert stats["relay"]["bad_replies"] >= 1, stats["relay"]
        assert stats["relay"]["segments_relayed"] == before["relay"]["segments_relayed"]
        assert stats["streams"][PATH]["media_sequence"] == newest
        assert "refused: unsigned reply" in edge.log()
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()


def test_a_second_publisher_on_another_node_does_not_take_the_class(cluster: Cluster) -> None:
    """A class live on one node: a publish of the same path on another node is refused, and
    every edge keeps the first origin."""
    interval = ("--heartbeat-interval", "1")
    master = cluster.master(*interval)
    first = cluster.slave(*interval, master=master, node_id="slave-1")
    second = cluster.slave(*interval, master=master, node_id="slave-2")
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        publishers.append(publish(f"{first.rtmp}/{PATH}?key={cluster.stream_key}", 60, gop=25))
        wait_for(lambda: (serving(second) or {}).get("media_sequence", -1) >= 1, 30,
                 what="the second node to relay the class")
        rival = publish(f"{second.rtmp}/{PATH}?key={cluster.stream_key}", 60, gop=25)
        publishers.append(rival)
        assert rival.wait(15) != 0  # refused: ffmpeg gives up
        assert f"{PATH} is already live on node slave-1" in second.log()
        nodes = http_json("GET", f"{master.api}/cluster/nodes")[1]["nodes"]
        streams = {node["node_id"]: node["streams"] for node in nodes}
        assert streams == {"slave-1": [PATH], "slave-2": []}
    finally:
        for proc in publishers:
            if proc.poll() is None:
                proc.kill()


def _signed_post(
    url: str, path: str, body: dict[str, Any], key: str, source: str = "127.0.0.1"
) -> tuple[int, Any]:
    """POST a control request signed with the cluster key, from `source` (another PC)."""
    import http.client
    from urllib.parse import urlsplit

    from airclass.cluster.signing import sign

    data = json.dumps(body).encode()
    headers = sign(key, "POST", path, data, time.time())
    headers["Content-Type"] = "application/json"
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5,
                                      source_address=(source, 0))
    try:
        conn.request("POST", path, body=data, headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"null")
    finally:
        conn.close()


def test_a_node_with_the_cluster_key_cannot_act_for_another(cluster: Cluster) -> None:
    """A compromised classroom PC holds the cluster key. It cannot heartbeat or unregister for
    a live slave (it lacks that registration's secret), nor register the slave's id from its
    own address: the master keeps the real slave's figures and routes."""
    master = cluster.master("--heartbeat-interval", "1")
    slave = cluster.slave("--heartbeat-interval", "1", master=master, node_id="slave-1")

    def node() -> dict[str, Any]:
        nodes = http_json("GET", f"{master.api}/cluster/nodes")[1]["nodes"]
        return next(n for n in nodes if n["node_id"] == "slave-1")

    wait_for(lambda: node()["status"] == "healthy", 15, what="slave-1 registered")
    key = cluster.cluster_key
    forged_stats = {"connections": 149, "max_connections": 150, "streams": ["live/stream"]}
    status, reply = _signed_post(master.api, "/cluster/stats", {
        "node_id": "slave-1", "registration": "f" * 32, "stats": forged_stats,
    }, key, source="127.0.0.2")
    assert (status, reply) == (404, {"error": "unknown node", "register": True})
    status, reply = _signed_post(master.api, "/cluster/register", {
        "node_id": "slave-1", "api_url": "http://127.0.0.2:8000",
        "hls_url": "http://127.0.0.2:8888", "rtmp_url": "rtmp://127.0.0.2:1935",
    }, key, source="127.0.0.2")
    assert status == 409, reply
    status, reply = _signed_post(master.api, "/cluster/unregister", {
        "node_id": "slave-1", "registration": "f" * 32,
    }, key, source="127.0.0.2")
    assert (status, reply["removed"]) == (200, False)
    time.sleep(1.5)  # a real heartbeat in between
    row = node()
    assert row["hls_url"] == slave.hls and row["current_connections"] == 0, row
    assert row["streams"] == [] and row["status"] == "healthy", row
    status, reply = http_json("POST", f"{master.api}/api/token",
                              {"user_type": "student", "user_id": "kim"})
    assert status == 200 and reply["hls_url"].startswith(slave.hls), reply
