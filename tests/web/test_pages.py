"""The classroom pages, their files and their small JSON endpoints, on an in-process slave."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from airclass.cluster.registry import iso_utc
from airclass.config import Config
from airclass.web.http import error_middleware
from airclass.web.pages import (
    STATIC_DIR,
    RateMeter,
    add_page_routes,
    find_hls_js,
    slave_dashboard,
)
from airclass.web.token_api import TOKEN_SERVICE
from tests.web.conftest import NODE_ID, T0, Slave, SlaveFactory

PAGES = {"/": "join-form", "/teacher": "signin-form", "/dashboard": "signin-form"}


async def json_of(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    return json.loads(text)


@pytest.mark.parametrize(("path", "marker"), sorted(PAGES.items()))
async def test_pages_are_html_with_safe_headers(slave: Slave, path: str, marker: str) -> None:
    resp = await slave.client.get(path)
    text = await resp.text()
    assert resp.status == 200, text
    assert resp.content_type == "text/html"
    assert f'id="{marker}"' in text
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-cache"
    # Everything a page loads comes from /static/ and is served.
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', text):
        asset = await slave.client.get(src)
        assert asset.status == 200, src


async def test_student_and_teacher_pages_load_hls_js(slave: Slave) -> None:
    for path in ("/", "/teacher"):
        text = await (await slave.client.get(path)).text()
        assert '<script src="/static/hls.min.js"' in text
    resp = await slave.client.get("/static/hls.min.js")
    assert resp.status == 200, "hls.js missing: run `npm install` in the repository"
    assert resp.content_type in ("application/javascript", "text/javascript")
    body = await resp.text()
    assert "Hls" in body and len(body) > 100_000


@pytest.mark.parametrize(
    ("name", "kind"),
    [("common.css", "text/css"), ("i18n.js", "javascript"), ("player.js", "javascript"),
     ("student.js", "javascript"), ("teacher.js", "javascript"), ("dashboard.js", "javascript")],
)
async def test_static_files_have_their_content_types(slave: Slave, name: str, kind: str) -> None:
    resp = await slave.client.get(f"/static/{name}")
    assert resp.status == 200
    assert kind in resp.content_type


@pytest.mark.parametrize(
    "name",
    ["student.html", "..%2Fpages.py", "missing.js", ".hidden.js", "x" * 80 + ".js", "i18n.JS"],
)
async def test_static_serves_only_its_own_files(slave: Slave, name: str) -> None:
    body = await json_of(await slave.client.get(f"/static/{name}"), 404)
    assert set(body) == {"error"}


async def test_static_refuses_path_traversal(slave: Slave) -> None:
    resp = await slave.client.get("/static/../pages.py")
    assert resp.status == 404
    assert "add_page_routes" not in await resp.text()


def _dictionary(lang: str) -> dict[str, str]:
    text = (STATIC_DIR / "i18n.js").read_text()
    block = re.search(rf"\n    {lang}: \{{(.*?)\n    \}}", text, re.S)
    assert block, lang
    return dict(re.findall(r'"([a-z0-9_.]+)": "((?:[^"\\]|\\.)*)"', block.group(1)))


def test_english_and_korean_cover_the_same_keys() -> None:
    en, ko = _dictionary("en"), _dictionary("ko")
    assert len(en) > 50
    assert set(en) == set(ko)
    for key in ("student.title", "state.waiting", "teacher.keyframe", "dash.advice.add"):
        assert re.search("[가-힣]", ko[key]), f"{key} is not Korean: {ko[key]}"
        assert not re.search("[가-힣]", en[key]), f"{key} is not English: {en[key]}"
    for key in en:  # placeholders match across languages
        assert set(re.findall(r"\{\w\}", en[key])) == set(re.findall(r"\{\w\}", ko[key])), key


def test_every_text_key_used_by_the_pages_exists() -> None:
    en = _dictionary("en")
    used: set[str] = set()
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        if path.suffix == ".html":
            used |= set(re.findall(r'data-i18n(?:-placeholder|-doc|-title)?="([^"]+)"', text))
        elif path.suffix == ".js" and path.name != "i18n.js":
            used |= set(re.findall(r'\bt\("([a-z0-9_.]+)"', text))
            prefixes = "state|status|dash|teacher|student|err"
            used |= set(re.findall(rf'"((?:{prefixes})\.[a-z0-9_.]+)"', text))
    used = {key for key in used if not key.endswith(".")}
    assert used, "no keys found"
    assert used - set(en) == set()


async def test_pages_carry_english_text_and_the_dictionary_carries_korean(slave: Slave) -> None:
    student = await (await slave.client.get("/")).text()
    assert "Join the lecture" in student and "Your name" in student
    teacher = await (await slave.client.get("/teacher")).text()
    assert "Stream Key" in teacher and "Keyframe Interval" in teacher
    i18n = await (await slave.client.get("/static/i18n.js")).text()
    waiting = "선생님이 방송을 시작하기를 기다리는 중"
    for korean in ("수업 참여하기", waiting, "스트림 키", "클러스터 대시보드"):
        assert korean in i18n
    assert "navigator.languages" in i18n


async def test_info_reports_what_the_student_page_needs(slave: Slave) -> None:
    body = await json_of(await slave.client.get("/api/info"), 200)
    assert body["class_code_required"] is False
    assert body["teacher_enabled"] is True
    assert body["role"] == "slave"
    assert body["node_id"] == NODE_ID
    assert body["segment_duration"] == 2.0


async def test_info_says_when_a_class_code_is_required(make_slave: SlaveFactory) -> None:
    slave = await make_slave(class_code="4B-science", teacher_password="")
    body = await json_of(await slave.client.get("/api/info"), 200)
    assert body["class_code_required"] is True
    assert body["teacher_enabled"] is False
    assert "4B-science" not in json.dumps(body)


async def test_dashboard_data_needs_a_teacher_token(slave: Slave) -> None:
    assert "error" in await json_of(await slave.client.get("/api/dashboard"), 401)
    bad = {"Authorization": "Bearer not-a-token"}
    assert "error" in await json_of(await slave.client.get("/api/dashboard", headers=bad), 401)
    student = {"Authorization": f"Bearer {slave.token()}"}
    body = await json_of(await slave.client.get("/api/dashboard", headers=student), 403)
    assert body == {"error": "the dashboard is for teachers"}


async def test_dashboard_data_via_the_password_sign_in(live: Slave) -> None:
    password = live.config.teacher_password
    reply = await json_of(
        await live.client.post("/api/token", json={"user_type": "teacher", "user_id": "t",
                                                   "password": password}),
        200,
    )
    await live.enter()
    # A viewer counts from its first media request.
    sid = await live.enter()
    assert (await live.client.get(f"/live/stream/{sid}/media.m3u8")).status == 200
    headers = {"Authorization": f"Bearer {reply['token']}"}
    body = await json_of(await live.client.get("/api/dashboard", headers=headers), 200)
    assert body["role"] == "slave"
    assert body["total_nodes"] == body["healthy_nodes"] == 1
    assert body["total_connections"] == 1
    assert body["total_capacity"] == live.config.max_connections
    (node,) = body["nodes"]
    assert node["node_id"] == NODE_ID
    assert node["status"] == "healthy"
    assert node["streams"] == ["live/stream"] and node["serving"] == ["live/stream"]
    assert set(node) >= {"cpu_usage", "memory_usage", "bandwidth", "last_heartbeat",
                         "current_connections", "max_connections", "load_percentage"}
    details = body["stream_details"]["live/stream"]
    assert details["viewers"] == 1 and details["publishing"] is True
    assert details["keyframe_interval"] == pytest.approx(2.0, abs=0.1)
    # The user's rule for one student: ceil(ceil(1 / 150) * 1.3) = 2 nodes, but no alarm while
    # the node is not critical.
    assert body["advice"]["recommended_nodes"] == 2
    assert body["advice"]["message"] is None


async def test_pages_say_clearly_when_hls_js_is_missing(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = web.Application(middlewares=[error_middleware])
    add_page_routes(app, role="slave", hls_js=tmp_path / "missing.js")
    client = await aiohttp_client(app)
    for path in ("/", "/teacher"):
        resp = await client.get(path)
        text = await resp.text()
        assert resp.status == 503 and resp.content_type == "text/html"
        assert "npm install" in text and "hls.js" in text
    assert (await client.get("/dashboard")).status == 200
    assert (await client.get("/static/hls.min.js")).status == 404


def test_hls_js_is_found_in_the_repository() -> None:
    found = find_hls_js()
    assert found is not None, "run `npm install` in the repository"
    assert found.name == "hls.min.js"


def test_slave_dashboard_status_and_advice() -> None:
    stats = {"node_id": "n1", "connections": 140, "max_connections": 150, "cpu": 12.345,
             "memory": 40.0, "streams": {"live/a": {"publishing": True, "viewers": 140},
                                         "live/b": {"publishing": False}}}
    data = slave_dashboard(stats, T0, bandwidth=1_000_000.0)
    (node,) = data["nodes"]
    assert node["status"] == "critical"
    assert node["load_percentage"] == 93.3
    assert node["cpu_usage"] == 12.3
    assert node["last_heartbeat"] == iso_utc(T0)
    assert node["streams"] == ["live/a"] and node["serving"] == ["live/a", "live/b"]
    # ceil(ceil(140 / 150) * 1.3) = 2 nodes for 140 students: add one.
    assert data["advice"]["recommended_nodes"] == 2
    assert data["advice"]["nodes_to_add"] == 1
    assert data["advice"]["message"] == "this node is critical (140 students): add 1 slaves"
    busy = slave_dashboard({**stats, "connections": 110}, T0, 0.0)
    assert busy["nodes"][0]["status"] == "warning"


def test_rate_meter_measures_between_samples() -> None:
    meter = RateMeter()
    assert meter.sample(1000, T0) == 0.0
    assert meter.sample(3000, T0 + 0.1) == 0.0  # too soon: keeps the last rate
    assert meter.sample(5000, T0 + 2.0) == 2000.0
    assert meter.sample(5000, T0 + 4.0) == 0.0


async def test_master_serves_the_pages_and_its_registry_as_dashboard(aiohttp_client: Any) -> None:
    master_app = pytest.importorskip("airclass.web.master_app")
    import secrets

    from airclass.config import finalize

    config = finalize(Config(role="master", node_id="master", bind="127.0.0.1",
                             public_host="127.0.0.1", secret_key=secrets.token_urlsafe(32),
                             cluster_key=secrets.token_urlsafe(32), teacher_password="pw-123456"))
    app = master_app.create_master_app(config)
    client = await aiohttp_client(app)
    assert (await client.get("/")).status == 200
    info = await json_of(await client.get("/api/info"), 200)
    assert info["role"] == "master" and info["class_code_required"] is False
    token = app[TOKEN_SERVICE].issuer.mint(user_type="teacher", user_id="t", action="publish",
                                           path="live/stream", node_id="any",
                                           now=__import__("time").time(), ttl=60)
    body = await json_of(
        await client.get("/api/dashboard", headers={"Authorization": f"Bearer {token}"}), 200
    )
    public = await json_of(await client.get("/cluster/nodes"), 200)
    assert body["role"] == "master"
    assert body["nodes"] == public["nodes"] == []
    assert body["advice"]["recommended_nodes"] == public["advice"]["recommended_nodes"]
