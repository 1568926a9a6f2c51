"""The master app in process (pytest-aiohttp), with an injected clock: every endpoint, every
way a control-plane signature can be wrong, routing of bursts, offline nodes and advice."""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from airclass.auth.tokens import TokenIssuer
from airclass.cluster.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    request_nonce,
    sign,
    verify_reply,
)
from airclass.config import Config
from airclass.web.master_app import MASTER, MasterState, create_master_app
from tests.web.conftest import Clock

SECRET = secrets.token_urlsafe(32)
CLUSTER_KEY = secrets.token_urlsafe(32)
PASSWORD = "correct horse battery"


class Master:
    """A master app and a client, with helpers that sign like a slave does."""

    def __init__(self, client: TestClient[Any, Any], clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.registrations: dict[str, str] = {}
        """node id -> the registration secret its register reply carried."""

    @property
    def state(self) -> MasterState:
        return self.client.app[MASTER]  # type: ignore[index]

    async def signed(
        self, path: str, body: dict[str, Any], *, key: str = CLUSTER_KEY,
        headers: dict[str, str] | None = None, raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        sent = headers if headers is not None else sign(key, "POST", path, data, self.clock())
        resp = await self.client.post(path, data=data, headers=sent)
        assert resp.content_type == "application/json"
        if resp.status in (200, 404):  # what a slave acts on is signed for its request
            verify_reply(CLUSTER_KEY, request_nonce(sent), resp.status, resp.headers,
                         await resp.read())
        return resp.status, await resp.json()

    async def register(self, node_id: str, max_connections: int = 150,
                       **stats: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "node_id": node_id,
            "api_url": f"http://{node_id}:8000",
            "hls_url": f"http://{node_id}:8888",
            "rtmp_url": f"rtmp://{node_id}:1935",
            "max_connections": max_connections,
        }
        if stats:
            body["stats"] = stats
        status, reply = await self.signed("/cluster/register", body)
        assert status == 200, reply
        self.registrations[node_id] = reply["registration"]
        return dict(reply)

    async def heartbeat(self, node_id: str, connections: int = 0,
                        **more: Any) -> tuple[int, Any]:
        return await self.signed(
            "/cluster/stats",
            {"node_id": node_id, "registration": self.registrations.get(node_id, "0" * 32),
             "stats": {"connections": connections, "cpu": 12.5, "memory": 40.0, **more}},
        )

    async def get(self, path: str) -> tuple[int, Any]:
        resp = await self.client.get(path)
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()

    async def token(self, **body: Any) -> tuple[int, Any]:
        body.setdefault("user_id", "kim")
        resp = await self.client.post("/api/token", json=body)
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()

    async def nodes(self) -> dict[str, Any]:
        status, snap = await self.get("/cluster/nodes")
        assert status == 200
        return dict(snap)


def master_config(**overrides: Any) -> Config:
    values: dict[str, Any] = {
        "role": "master",
        "node_id": "master",
        "bind": "127.0.0.1",
        "public_host": "127.0.0.1",
        "secret_key": SECRET,
        "cluster_key": CLUSTER_KEY,
        "teacher_password": PASSWORD,
        "heartbeat_interval": 5.0,
        "heartbeat_timeout": 30.0,
    }
    values.update(overrides)
    return Config(**values)


@pytest.fixture
async def master(aiohttp_client: Any) -> Master:
    clock = Clock()
    return Master(await aiohttp_client(create_master_app(master_config(), clock=clock)), clock)


@pytest.fixture
async def sticky_master(aiohttp_client: Any) -> Master:
    clock = Clock()
    app = create_master_app(master_config(sticky=True), clock=clock)
    return Master(await aiohttp_client(app), clock)


# Control plane


async def test_register_replies_with_the_cluster_view(master: Master) -> None:
    await master.register("slave-1")
    await master.heartbeat("slave-1", 3, streams=["live/stream"])
    reply = await master.register("slave-2", connections=0)
    assert len(reply.pop("registration")) == 32
    assert reply == {
        "ok": True,
        "node_id": "slave-2",
        "streams": {"live/stream": {"origin": "slave-1", "origin_hls": "http://slave-1:8888",
                                    "origin_api": "http://slave-1:8000"}},
        "peers": [{"node_id": "slave-1", "hls_url": "http://slave-1:8888",
                   "api_url": "http://slave-1:8000", "status": "healthy",
                   "load_percentage": 2.0}],
    }
    status, beat = await master.heartbeat("slave-1", 3, streams=["live/stream"])
    assert status == 200
    assert [p["node_id"] for p in beat["peers"]] == ["slave-2"]
    assert beat["streams"]["live/stream"]["origin"] == "slave-1"


async def test_nodes_snapshot_has_the_design_shape(master: Master) -> None:
    await master.register("slave-1")
    await master.heartbeat("slave-1", 45)
    snap = await master.nodes()
    assert {"total_nodes", "healthy_nodes", "total_connections", "total_capacity",
            "utilization", "nodes"} <= set(snap)
    assert snap["total_nodes"] == 1 and snap["total_connections"] == 45
    assert snap["utilization"] == 30.0
    row = snap["nodes"][0]
    assert {"node_id", "node_name", "current_connections", "max_connections",
            "load_percentage", "cpu_usage", "memory_usage", "status", "last_heartbeat"} <= set(row)
    assert row["cpu_usage"] == 12.5 and row["memory_usage"] == 40.0
    assert row["last_heartbeat"] == "2023-11-14T22:13:20Z"
    assert snap["advice"]["message"] is None


async def test_heartbeat_from_unknown_node_asks_it_to_register(master: Master) -> None:
    status, reply = await master.heartbeat("ghost", 1)
    assert status == 404
    assert reply == {"error": "unknown node", "register": True}
    assert "ghost" not in master.state.registry
    assert master.state.unknown_heartbeats == 1


async def test_unregister_removes_the_node(master: Master) -> None:
    await master.register("slave-1")
    leaving = {"node_id": "slave-1", "registration": master.registrations["slave-1"]}
    status, reply = await master.signed("/cluster/unregister", leaving)
    assert (status, reply) == (200, {"ok": True, "node_id": "slave-1", "removed": True})
    assert (await master.nodes())["total_nodes"] == 0
    status, reply = await master.signed("/cluster/unregister", leaving)
    assert status == 200 and reply["removed"] is False


async def test_a_node_cannot_act_for_another(master: Master) -> None:
    """Heartbeats and unregister count only with the registration's own secret, and a live
    node's id cannot be registered again from another address."""
    await master.register("slave-1")
    await master.heartbeat("slave-1", 7)
    forged = {"node_id": "slave-1", "registration": "f" * 32,
              "stats": {"connections": 140, "streams": ["live/stream"]}}
    status, reply = await master.signed("/cluster/stats", forged)
    assert (status, reply) == (404, {"error": "unknown node", "register": True})
    status, reply = await master.signed(
        "/cluster/unregister", {"node_id": "slave-1", "registration": "f" * 32}
    )
    assert (status, reply) == (200, {"ok": True, "node_id": "slave-1", "removed": False})
    node = master.state.registry.get("slave-1")
    assert node is not None and node.current_connections == 7 and node.streams == frozenset()
    # The same node id from another machine while slave-1 is alive: refused.
    status, reply = await master.signed("/cluster/register", {
        "node_id": "slave-1", "api_url": "http://impostor:8000", "hls_url": "http://impostor:8888",
        "rtmp_url": "rtmp://impostor:1935",
    })
    assert status == 409 and "in use by http://slave-1:8000" in reply["error"]
    # The same machine restarting gets a new registration; the old one stops counting.
    old = master.registrations["slave-1"]
    await master.register("slave-1")
    assert master.registrations["slave-1"] != old
    status, _ = await master.signed(
        "/cluster/stats", {"node_id": "slave-1", "registration": old, "stats": {"connections": 1}}
    )
    assert status == 404


async def test_a_live_path_has_one_origin_cluster_wide(master: Master) -> None:
    await master.register("slave-1")
    await master.register("slave-2")
    status, one = await master.heartbeat("slave-1", 0, streams=["live/math"])
    assert status == 200 and "refused" not in one
    status, two = await master.heartbeat("slave-2", 0, streams=["live/math", "live/art"])
    assert status == 200
    assert two["refused"] == ["live/math"]
    assert two["streams"]["live/math"]["origin"] == "slave-1"
    assert two["streams"]["live/art"]["origin"] == "slave-2"
    # The owner keeps it while it claims it; once it stops, the other may take it.
    status, one = await master.heartbeat("slave-1", 0, streams=["live/math"])
    assert one["streams"]["live/math"]["origin"] == "slave-1"
    await master.heartbeat("slave-1", 0, streams=[])
    status, two = await master.heartbeat("slave-2", 0, streams=["live/math"])
    assert "refused" not in two and two["streams"]["live/math"]["origin"] == "slave-2"
    # An owner that goes silent loses it to the next claimer.
    await master.heartbeat("slave-1", 0, streams=[])
    master.clock.advance(31)
    await master.register("slave-1")
    status, one = await master.heartbeat("slave-1", 0, streams=["live/math"])
    assert "refused" not in one and one["streams"]["live/math"]["origin"] == "slave-1"


async def test_node_urls_are_checked_before_anyone_sees_them(master: Master) -> None:
    for bad in ["http://h:1/\r\nX: 1", "http://h:1 x", "http://h:1/path", "javascript:x",
                "http://user@h:1", 'http://h:1"', "http://h:99999", "http://"]:
        status, reply = await master.signed("/cluster/register", {
            "node_id": "slave-x", "api_url": "http://h:8000", "hls_url": bad,
            "rtmp_url": "rtmp://h:1935",
        })
        assert (status, reply) == (400, {"error": "hls_url invalid"}), bad


@pytest.mark.parametrize("endpoint", ["/cluster/register", "/cluster/stats",
                                      "/cluster/unregister"])
@pytest.mark.parametrize(
    "attack",
    ["unsigned", "wrong key", "stale", "future", "tampered body", "other path", "replay",
     "malformed signature"],
)
async def test_bad_signatures_get_401_and_change_nothing(
    master: Master, endpoint: str, attack: str
) -> None:
    await master.register("slave-1")
    await master.heartbeat("slave-1", 10)
    before = (await master.nodes())["nodes"]
    bodies = {
        "/cluster/register": {"node_id": "rogue", "api_url": "http://evil:8000",
                              "hls_url": "http://evil:8888", "rtmp_url": "rtmp://evil:1935"},
        "/cluster/stats": {"node_id": "slave-1", "stats": {"connections": 149}},
        "/cluster/unregister": {"node_id": "slave-1"},
    }
    body = bodies[endpoint]
    data = json.dumps(body).encode()
    now = master.clock()
    headers: dict[str, str] | None
    raw: bytes | None = None
    if attack == "unsigned":
        headers = {}
    elif attack == "wrong key":
        headers = sign(secrets.token_urlsafe(32), "POST", endpoint, data, now)
    elif attack == "stale":
        headers = sign(CLUSTER_KEY, "POST", endpoint, data, now - 120)
    elif attack == "future":
        headers = sign(CLUSTER_KEY, "POST", endpoint, data, now + 120)
    elif attack == "tampered body":
        headers = sign(CLUSTER_KEY, "POST", endpoint, data, now)
        raw = data.replace(b"slave-1", b"slave-2").replace(b"rogue", b"rogu3")
    elif attack == "other path":
        other = "/cluster/stats" if endpoint != "/cluster/stats" else "/cluster/register"
        headers = sign(CLUSTER_KEY, "POST", other, data, now)
    elif attack == "malformed signature":
        headers = sign(CLUSTER_KEY, "POST", endpoint, data, now)
        headers[SIGNATURE_HEADER] = "zz" * 32
    else:  # replay: the legitimate request goes through once, then is replayed
        headers = sign(CLUSTER_KEY, "POST", endpoint, json.dumps({"node_id": "x"}).encode(), now)
        raw = json.dumps({"node_id": "x"}).encode()
        first, _ = await master.signed(endpoint, {}, headers=headers, raw=raw)
        assert first in (200, 400, 404)
        before = (await master.nodes())["nodes"]
    status, reply = await master.signed(endpoint, body, headers=headers, raw=raw)
    assert status == 401, reply
    assert set(reply) == {"error"} and "refused" in reply["error"]
    assert (await master.nodes())["nodes"] == before
    assert sum(master.state.signature_failures.values()) == 1


async def test_signature_headers_are_all_required(master: Master) -> None:
    data = json.dumps({"node_id": "slave-1"}).encode()
    for missing in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER):
        headers = sign(CLUSTER_KEY, "POST", "/cluster/unregister", data, master.clock())
        del headers[missing]
        status, reply = await master.signed("/cluster/unregister", {}, headers=headers, raw=data)
        assert status == 401 and reply["error"].endswith("missing signature headers")


async def test_signed_but_malformed_bodies_are_400(master: Master) -> None:
    status, reply = await master.signed("/cluster/register", {"node_id": "bad id!"})
    assert status == 400 and reply == {"error": "node_id invalid"}
    await master.register("slave-1")
    status, reply = await master.signed("/cluster/stats", {"node_id": "slave-1",
                                                           "stats": {"connections": 3}})
    assert status == 400 and reply == {"error": "registration missing or invalid"}
    status, reply = await master.signed(
        "/cluster/stats",
        {"node_id": "slave-1", "registration": master.registrations["slave-1"],
         "stats": {"cpu": 3}},
    )
    assert status == 400 and reply == {"error": "stats.connections missing"}
    status, reply = await master.signed("/cluster/stats", {}, raw=b"[1, 2")
    assert status == 400 and reply == {"error": "body is not valid JSON"}
    resp = await master.client.post("/cluster/register", data=b"x" * 70_000)
    assert resp.status == 413 and set(await resp.json()) == {"error"}


# Routing


async def test_no_node_means_503_json(master: Master) -> None:
    status, reply = await master.token(user_type="student")
    assert status == 503 and set(reply) == {"error"}
    status, reply = await master.token(user_type="teacher", password=PASSWORD)
    assert status == 503 and set(reply) == {"error"}
    status, reply = await master.get("/cluster/best-node")
    assert status == 503 and set(reply) == {"error"}
    assert master.state.no_node == 2


async def test_a_burst_of_450_spreads_150_each_with_node_bound_tokens(master: Master) -> None:
    for node_id in ("slave-a", "slave-b", "slave-c"):
        await master.register(node_id, connections=0, sessions_opened=0)
    issuer = TokenIssuer(SECRET)
    counts: Counter[str] = Counter()
    for i in range(450):
        status, reply = await master.token(user_type="student", user_id=f"s{i}")
        assert status == 200, reply
        claims = issuer.verify(reply["token"], now=master.clock())
        assert claims.node_id == reply["node_id"] and claims.action == "read"
        assert claims.path == "live/stream" and claims.exp - claims.iat == 3600
        assert reply["hls_url"].startswith(f"http://{reply['node_id']}:8888/live/stream/")
        counts[reply["node_id"]] += 1
    assert counts == {"slave-a": 150, "slave-b": 150, "slave-c": 150}
    assert master.state.routed == counts
    # Full: nobody is refused, the spread stays fair, and the operator is told to add nodes.
    for i in range(30):
        status, reply = await master.token(user_type="student", user_id=f"late{i}")
        assert status == 200
        counts[reply["node_id"]] += 1
    assert sorted(counts.values()) == [160, 160, 160]


async def test_pending_viewers_are_reconciled_by_heartbeats(master: Master) -> None:
    await master.register("slave-a", connections=0, sessions_opened=0)
    await master.register("slave-b", connections=0, sessions_opened=0)
    for i in range(10):
        await master.token(user_type="student", user_id=f"s{i}")
    assert master.state.registry.pending("slave-a", master.clock()) == 5
    master.clock.advance(5)
    await master.heartbeat("slave-a", 5, sessions_opened=5)
    assert master.state.registry.pending("slave-a", master.clock()) == 0
    assert master.state.registry.pending("slave-b", master.clock()) == 5


async def test_offline_node_gets_no_students_and_comes_back(master: Master) -> None:
    await master.register("slave-a", connections=0, sessions_opened=0)
    await master.register("slave-b", connections=110, sessions_opened=110)
    master.clock.advance(20)
    await master.heartbeat("slave-b", 110, sessions_opened=110)
    master.clock.advance(10)  # slave-a silent for 30 s
    snap = await master.nodes()
    assert {n["node_id"]: n["status"] for n in snap["nodes"]} == {
        "slave-a": "offline", "slave-b": "warning"}
    assert snap["healthy_nodes"] == 1
    for i in range(20):
        status, reply = await master.token(user_type="student", user_id=f"s{i}")
        assert status == 200 and reply["node_id"] == "slave-b"
    messages = master.state.check(master.clock())
    assert messages == ["node slave-a is offline: no heartbeat for 30 s"]
    assert master.state.check(master.clock()) == []
    status, _ = await master.heartbeat("slave-a", 0)
    assert status == 200
    assert master.state.registry.status("slave-a", master.clock()) == "healthy"
    assert master.state.check(master.clock()) == ["node slave-a is serving again"]
    status, reply = await master.token(user_type="student", user_id="back")
    assert reply["node_id"] == "slave-a"


async def test_teacher_is_sent_to_the_origin_of_the_stream(master: Master) -> None:
    await master.register("slave-a", connections=0)
    await master.register("slave-b", connections=50)
    await master.heartbeat("slave-b", 50, streams=["live/stream"])
    status, reply = await master.token(user_type="teacher", user_id="ms-kim",
                                       password=PASSWORD)
    assert status == 200, reply
    assert reply["node_id"] == "slave-b"
    assert reply["rtmp_url"] == "rtmp://slave-b:1935/live"
    assert reply["stream_key"].startswith("stream?jwt=")
    claims = TokenIssuer(SECRET).verify(reply["token"], now=master.clock())
    assert (claims.action, claims.node_id, claims.user_type) == ("publish", "slave-b", "teacher")
    # Another stream, not live anywhere: the least-loaded node ingests it.
    status, reply = await master.token(user_type="teacher", user_id="mr-lee",
                                       password=PASSWORD, stream="live/math")
    assert reply["node_id"] == "slave-a"
    status, reply = await master.token(user_type="teacher", user_id="x", password="nope")
    assert status == 401 and set(reply) == {"error"}
    assert master.state.ingests == {"slave-b": 1, "slave-a": 1}


async def test_sticky_mode_keeps_a_stream_on_one_node(sticky_master: Master) -> None:
    m = sticky_master
    for node_id in ("slave-a", "slave-b", "slave-c"):
        await m.register(node_id, connections=0, sessions_opened=0)
    chosen = set()
    for i in range(20):
        status, reply = await m.token(user_type="student", user_id=f"s{i}", stream="live/bio")
        assert status == 200
        chosen.add(reply["node_id"])
    assert len(chosen) == 1


async def test_best_node_and_health(master: Master) -> None:
    await master.register("slave-a", connections=120)
    await master.register("slave-b", connections=30)
    status, best = await master.get("/cluster/best-node")
    assert (status, best) == (200, {
        "node_id": "slave-b", "hls_url": "http://slave-b:8888", "api_url": "http://slave-b:8000",
        "rtmp_url": "rtmp://slave-b:1935", "load_percentage": 20.0, "status": "healthy"})
    status, health = await master.get("/health")
    assert status == 200
    assert health["status"] == "ok" and health["role"] == "master"
    assert health["total_nodes"] == 2 and health["serving_nodes"] == 2
    status, stats = await master.get("/api/stats")
    assert status == 200 and stats["tokens_issued"] == {"student": 0, "teacher": 0}


async def test_all_critical_gives_advice_in_reply_and_log(
    master: Master, caplog: pytest.LogCaptureFixture
) -> None:
    await master.register("slave-a", connections=140)
    await master.register("slave-b", connections=150)
    with caplog.at_level(logging.WARNING, logger="airclass.web.master_app"):
        snap = await master.nodes()
    advice = snap["advice"]
    # 290 students: ceil(290 / 150) = 2, × 1.3 → 3 nodes recommended, 1 to add.
    assert (advice["students"], advice["recommended_nodes"], advice["nodes_to_add"]) == (290, 3, 1)
    assert advice["message"].startswith("all 2 serving nodes are critical (290 students): add 1")
    assert any("add 1 slaves" in r.getMessage() for r in caplog.records)
    # The background check logs it too, at most once a minute.
    caplog.clear()
    master.state.last_advice_at = None
    assert master.state.check(master.clock())[-1].startswith("all 2 serving nodes")
    assert master.state.check(master.clock()) == []
    master.clock.advance(60)
    await master.heartbeat("slave-a", 140)
    await master.heartbeat("slave-b", 150)
    assert master.state.check(master.clock())[-1].startswith("all 2 serving nodes")


async def test_token_request_errors_are_json(master: Master) -> None:
    await master.register("slave-a")
    status, reply = await master.token(user_type="admin")
    assert status == 400 and set(reply) == {"error"}
    resp = await master.client.post("/api/token", data=b"{not json")
    assert resp.status == 400 and set(await resp.json()) == {"error"}
    resp = await master.client.options("/api/token")
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_second_machine_with_the_same_node_id_is_refused(master: Master) -> None:
    await master.register("slave-1")
    body = {"node_id": "slave-1", "api_url": "http://other:8000", "hls_url": "http://other:8888",
            "rtmp_url": "rtmp://other:1935"}
    status, reply = await master.signed("/cluster/register", body)
    assert status == 409 and "own --node-id" in reply["error"]
    assert master.state.registry.get("slave-1").api_url == "http://slave-1:8000"  # type: ignore[union-attr]
    # Once the first one is offline, the id is free (a slave that moved to a new address).
    master.clock.advance(30)
    status, reply = await master.signed("/cluster/register", body)
    assert status == 200
    # The same machine registering again (after a restart) is always welcome.
    status, reply = await master.signed("/cluster/register", body)
    assert status == 200


def test_entry_points_refuse_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from airclass.__main__ import main as airclass_main
    from airclass.master import main as master_main

    assert master_main(["--secret-key", "secret", "--cluster-key", CLUSTER_KEY]) == 2
    assert "SECRET_KEY is too weak" in capsys.readouterr().err
    assert airclass_main([], environ={}) == 2
    assert "MODE is not set" in capsys.readouterr().err
    assert airclass_main([], environ={"MODE": "primary"}) == 2
    assert "MODE='primary'" in capsys.readouterr().err


async def test_forwarded_sign_ins_are_limited_per_browser(master: Master) -> None:
    """A slave forwards sign-ins signed with the cluster key, naming the browser's address."""
    await master.register("slave-1")
    wrong = {"user_type": "teacher", "user_id": "t", "password": "nope-nope-nope"}

    async def forwarded(client: str, body: dict[str, Any], key: str = CLUSTER_KEY) -> int:
        data = json.dumps(body).encode()
        headers = sign(key, "POST", f"/api/token?client={client}", data, master.clock())
        headers["X-AIRClass-Client"] = client
        status, _ = await master.signed("/api/token", body, headers=headers, raw=data)
        return status

    assert [await forwarded("10.0.0.7", wrong) for _ in range(6)] == [401] * 5 + [429]
    # Another browser behind the same slave (the same socket address here) is not limited.
    right = {**wrong, "password": PASSWORD}
    assert await forwarded("10.0.0.8", right) == 200
    # The address is covered by the signature: claiming another one is refused.
    data = json.dumps(right).encode()
    headers = sign(CLUSTER_KEY, "POST", "/api/token?client=10.0.0.8", data, master.clock())
    headers["X-AIRClass-Client"] = "10.0.0.9"
    assert (await master.signed("/api/token", right, headers=headers, raw=data))[0] == 401
    assert await forwarded("10.0.0.9", right, key=secrets.token_urlsafe(32)) == 401
    assert await forwarded("not-an-address", right) == 400
async def test_teacher_epoch_is_told_to_signed_requests_only(master: Master) -> None:
    from airclass.auth.epoch import password_epoch

    status, reply = await master.signed("/cluster/teacher-epoch", {"node_id": "slave-1"})
    assert status == 200
    assert reply == {"teacher_epoch": password_epoch(SECRET, "teacher", PASSWORD)}
    data = json.dumps({"node_id": "slave-1"}).encode()
    for headers in ({}, sign(secrets.token_urlsafe(32), "POST", "/cluster/teacher-epoch", data,
                              master.clock())):
        status, reply = await master.signed("/cluster/teacher-epoch", {}, headers=headers,
                                            raw=data)
        assert status == 401 and set(reply) == {"error"}


async def test_teacher_epoch_is_null_without_a_teacher_password(aiohttp_client: Any) -> None:
    clock = Clock()
    app = create_master_app(master_config(teacher_password=""), clock=clock)
    bare = Master(await aiohttp_client(app), clock)
    status, reply = await bare.signed("/cluster/teacher-epoch", {"node_id": "slave-1"})
    assert (status, reply) == (200, {"teacher_epoch": None})
