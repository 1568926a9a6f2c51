"""`POST /api/token` on a standalone slave: reply shapes, every refusal, and the brute-force brake.

Each refusal is checked for its exact status and a JSON `{"error": ...}` body, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airclass.web.http import HttpError
from airclass.web.token_api import TokenService
from tests.web.conftest import NODE_ID, PATH, T0, Slave, SlaveFactory

PASSWORD = "correct horse battery"


async def error_of(resp: ClientResponse, status: int) -> str:
    """The JSON error message of a refusal, after checking status and shape."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    assert "Traceback" not in text
    body = json.loads(text)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def post(slave: Slave, body: Any) -> ClientResponse:
    return await slave.client.post("/api/token", json=body)


async def test_student_token_shape_and_claims(slave: Slave) -> None:
    resp = await post(slave, {"user_type": "student", "user_id": "alice", "stream": PATH})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    body = await resp.json()
    assert set(body) == {"token", "hls_url", "node_id", "expires_in", "expires_at"}
    assert body["node_id"] == NODE_ID
    assert body["expires_in"] == 3600
    assert body["expires_at"] == int(T0) + 3600
    url = urlsplit(body["hls_url"])
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8888", f"/{PATH}/index.m3u8")
    assert parse_qs(url.query)["jwt"] == [body["token"]]
    claims = slave.issuer.verify(body["token"], now=T0)
    assert (claims.user_type, claims.user_id, claims.action, claims.path, claims.node_id) == (
        "student", "alice", "read", PATH, NODE_ID,
    )
    assert claims.exp == body["expires_at"]


async def test_student_defaults_and_hls_url_plays(slave: Slave) -> None:
    slave.publish()
    resp = await post(slave, {"user_id": "bob"})
    body = await resp.json()
    assert resp.status == 200, body
    url = urlsplit(body["hls_url"])
    assert url.path == "/live/stream/index.m3u8"
    entry = await slave.client.get(f"{url.path}?{url.query}")
    assert entry.status == 200
    assert "#EXT-X-STREAM-INF" in await entry.text()


async def test_teacher_needs_the_password(slave: Slave) -> None:
    wrong = await post(slave, {"user_type": "teacher", "user_id": "t", "password": "nope"})
    assert await error_of(wrong, 401) == "wrong teacher password"
    missing = await post(slave, {"user_type": "teacher", "user_id": "t"})
    assert await error_of(missing, 401) == "wrong teacher password"
    not_a_string = await post(slave, {"user_type": "teacher", "user_id": "t", "password": 12})
    await error_of(not_a_string, 401)


async def test_teacher_gets_obs_settings(slave: Slave) -> None:
    resp = await post(
        slave, {"user_type": "teacher", "user_id": "mr-kim", "password": PASSWORD,
                "stream": "live/math"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert {"token", "hls_url", "node_id", "expires_in", "expires_at", "rtmp_url",
            "stream_key"} <= set(body)
    assert body["rtmp_url"].startswith("rtmp://127.0.0.1:")
    assert body["rtmp_url"].endswith("/live")
    name, _, query = body["stream_key"].partition("?")
    assert name == "math"
    publish_token = parse_qs(query)["jwt"][0]
    assert publish_token == body["token"]
    claims = slave.issuer.verify(publish_token, now=T0)
    assert (claims.user_type, claims.action, claims.path, claims.node_id) == (
        "teacher", "publish", "live/math", NODE_ID,
    )
    # OBS joins Server and Stream Key with '/': that must be the path the RTMP server checks.
    watch = parse_qs(urlsplit(body["hls_url"]).query)["jwt"][0]
    assert slave.issuer.verify(watch, now=T0).action == "read"


async def test_teacher_disabled_without_a_configured_password(make_slave: SlaveFactory) -> None:
    slave = await make_slave(teacher_password="")
    resp = await post(slave, {"user_type": "teacher", "user_id": "t", "password": ""})
    await error_of(resp, 403)


async def test_password_brute_force_is_braked_per_client(slave: Slave) -> None:
    for _ in range(5):
        resp = await post(slave, {"user_type": "teacher", "user_id": "t", "password": "guess"})
        await error_of(resp, 401)
    blocked = await post(slave, {"user_type": "teacher", "user_id": "t", "password": "guess"})
    assert "too many" in await error_of(blocked, 429)
    retry = int(blocked.headers["Retry-After"])
    assert retry >= 1
    assert blocked.headers["Access-Control-Allow-Origin"] == "*"
    # Even the right password waits: otherwise the brake tells a guesser nothing.
    right = await post(slave, {"user_type": "teacher", "user_id": "t", "password": PASSWORD})
    await error_of(right, 429)
    # Students are not affected.
    student = await post(slave, {"user_id": "s"})
    assert student.status == 200
    slave.clock.advance(retry)
    again = await post(slave, {"user_type": "teacher", "user_id": "t", "password": PASSWORD})
    assert again.status == 200, await again.text()


async def test_class_code_required_when_set(make_slave: SlaveFactory) -> None:
    slave = await make_slave(class_code="7B-math")
    await error_of(await post(slave, {"user_id": "alice"}), 403)
    await error_of(await post(slave, {"user_id": "alice", "class_code": "7b-math"}), 403)
    await error_of(await post(slave, {"user_id": "alice", "class_code": 7}), 403)
    ok = await post(slave, {"user_id": "alice", "class_code": " 7B-math "})
    assert ok.status == 200, await ok.text()


async def test_class_code_ignored_when_unset(slave: Slave) -> None:
    resp = await post(slave, {"user_id": "alice", "class_code": "anything"})
    assert resp.status == 200


@pytest.mark.parametrize(
    "user_id",
    ["", "   ", None, 42, ["alice"], "a" * 65, "al\nice", "al\x00ice", "tab\tbed", "del\x7f"],
)
async def test_bad_user_id_is_400(slave: Slave, user_id: Any) -> None:
    body: dict[str, Any] = {"user_type": "student", "stream": PATH}
    if user_id is not None:
        body["user_id"] = user_id
    msg = await error_of(await post(slave, body), 400)
    assert "user_id" in msg


async def test_user_id_limits_are_inclusive(slave: Slave) -> None:
    resp = await post(slave, {"user_id": "é" * 64})
    assert resp.status == 200
    claims = slave.issuer.verify((await resp.json())["token"], now=T0)
    assert claims.user_id == "é" * 64


@pytest.mark.parametrize("user_type", ["admin", "", "Student", 1, None, ["student"], {}])
async def test_unknown_user_type_is_400(slave: Slave, user_type: Any) -> None:
    resp = await post(slave, {"user_type": user_type, "user_id": "alice"})
    assert "user_type" in await error_of(resp, 400)


@pytest.mark.parametrize(
    "stream",
    ["live", "live/", "/live/stream", "live/stream/x", "live/../etc", "live/str eam",
     "live/stréam", "live/" + "a" * 65, "", 5, None],
)
async def test_bad_stream_name_is_400(slave: Slave, stream: Any) -> None:
    resp = await post(slave, {"user_id": "alice", "stream": stream})
    assert "stream" in await error_of(resp, 400)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe{}", b'{"user_id": "a",}', b"[" * 8000 + b"]" * 8000,
     b'{"user_id": ' + b"[" * 8000 + b"]" * 8000 + b"}"],
    ids=["empty", "truncated", "text", "not-utf8", "trailing-comma", "deep-array", "deep-value"],
)
async def test_bad_json_is_400(slave: Slave, raw: bytes) -> None:
    resp = await slave.client.post(
        "/api/token", data=raw, headers={"Content-Type": "application/json"}
    )
    await error_of(resp, 400)


@pytest.mark.parametrize("value", [[], ["user_id", "alice"], "alice", 1, None, True])
async def test_json_that_is_not_an_object_is_400(slave: Slave, value: Any) -> None:
    resp = await slave.client.post(
        "/api/token", data=json.dumps(value), headers={"Content-Type": "application/json"}
    )
    assert "object" in await error_of(resp, 400)


async def test_body_over_16_kib_is_413(slave: Slave) -> None:
    body = json.dumps({"user_id": "alice", "pad": "x" * (16 * 1024)}).encode()
    resp = await slave.client.post(
        "/api/token", data=body, headers={"Content-Type": "application/json"}
    )
    await error_of(resp, 413)


async def test_chunked_body_over_16_kib_is_413(slave: Slave) -> None:
    async def chunks() -> Any:
        yield b'{"user_id": "alice", "pad": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    resp = await slave.client.post(
        "/api/token", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "Content-Length" not in resp.request_info.headers
    await error_of(resp, 413)


async def test_body_of_exactly_16_kib_is_accepted(slave: Slave) -> None:
    head = b'{"user_id": "alice", "pad": "'
    tail = b'"}'
    body = head + b"x" * (16 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == 16 * 1024
    resp = await slave.client.post(
        "/api/token", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()


async def test_wrong_method_is_a_json_405(slave: Slave) -> None:
    resp = await slave.client.get("/api/token")
    await error_of(resp, 405)
    assert "POST" in resp.headers.get("Allow", "")


async def test_token_api_preflight(slave: Slave) -> None:
    resp = await slave.client.options(
        "/api/token",
        headers={"Origin": "http://master:8000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "content-type" in resp.headers["Access-Control-Allow-Headers"].lower()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "user_type": st.sampled_from(["student", "teacher"]) | _json,
        "user_id": st.text(max_size=80) | _json,
        "stream": st.sampled_from(["live/stream", "live/a"]) | st.text(max_size=80) | _json,
        "password": st.sampled_from([PASSWORD, ""]) | _json,
        "class_code": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_fields)
def test_any_body_gets_a_reply_or_a_4xx(body: dict[str, Any]) -> None:
    """Whatever the fields hold, issue() answers or raises HttpError 4xx; nothing else."""
    from airclass.auth.tokens import TokenIssuer
    from airclass.web.slave_app import SelfChooser
    from tests.web.conftest import make_config

    config = make_config()
    service = TokenService(config, TokenIssuer(config.secret_key), SelfChooser(config),
                           clock=lambda: T0)
    try:
        reply = service.issue(body, "127.0.0.1")
    except HttpError as exc:
        assert 400 <= exc.status < 500
        assert exc.message
    else:
        assert reply["node_id"] == NODE_ID


async def test_publish_token_is_short_and_the_read_token_is_the_teachers_session(
    make_slave: SlaveFactory,
) -> None:
    slave = await make_slave(publish_token_ttl=600.0)
    resp = await post(slave, {"user_type": "teacher", "user_id": "mr-kim", "password": PASSWORD})
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["expires_in"], body["expires_at"]) == (600, int(T0) + 600)
    publish = slave.issuer.verify(body["token"], now=T0)
    assert (publish.action, publish.exp - publish.iat) == ("publish", 600)
    read = slave.issuer.verify(body["read_token"], now=T0)
    assert (read.action, read.user_type, read.exp - read.iat) == ("read", "teacher", 12 * 3600)
    assert body["read_expires_at"] == int(T0) + 12 * 3600
    assert parse_qs(urlsplit(body["hls_url"]).query)["jwt"][0] == body["read_token"]
    # Both carry the epoch of the password they were minted under.
    assert publish.pwe is not None and publish.pwe == read.pwe
