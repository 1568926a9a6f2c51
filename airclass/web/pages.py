"""The classroom pages: student `/`, teacher `/teacher`, dashboard `/dashboard`, and their files.

Served by the master, and by a slave too, so a school with one PC and no master still gets
the student and teacher pages (its dashboard then shows that one node).

    GET /                  student page (name, class code when set → plays the lecture)
    GET /teacher           teacher page (password → OBS settings, preview, viewers)
    GET /dashboard         cluster dashboard (teacher password)
    GET /static/<file>     the pages' CSS/JS, and hls.js from the npm package
    GET /api/info          {"class_code_required", "teacher_enabled", "role", "node_id", …}
    GET /api/dashboard     the dashboard's numbers; needs a teacher token (Authorization: Bearer)

The dashboard's data sits behind a teacher token, not just behind a password prompt in the
page: the page signs in with `POST /api/token` (which rate-limits wrong passwords) and sends
the token it gets. The master's `GET /cluster/nodes` has the node list's numbers too, under
the same rule from outside the trusted networks (`web.operator`); `/api/dashboard` adds
per-stream details (keyframe interval, viewers per stream).
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web

from airclass import __version__
from airclass.auth.authorize import extract_token
from airclass.auth.errors import AuthError
from airclass.cluster.registry import iso_utc, load_status, recommended_nodes
from airclass.web.http import HttpError, json_response
from airclass.web.token_api import TOKEN_FORWARDER, TOKEN_SERVICE

log = logging.getLogger(__name__)

Role = Literal["master", "slave"]
DashboardSource = Callable[[], "dict[str, Any] | Awaitable[dict[str, Any]]"]
"""Returns the dashboard's numbers: the `GET /cluster/nodes` shape, plus optional extras."""

STATIC_DIR: Final = Path(__file__).with_name("static")
HLS_JS_RELATIVE: Final = Path("node_modules/hls.js/dist/hls.min.js")
_STATIC_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(css|js|svg|png|ico)$")
_PAGES: Final = {"/": "student.html", "/teacher": "teacher.html", "/dashboard": "dashboard.html"}
_NEEDS_HLS_JS: Final = frozenset({"student.html", "teacher.html"})

PAGE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Players fetch HLS from other nodes (other origins); hls.js runs its worker from a blob.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src *; media-src * blob:; worker-src blob:; frame-ancestors 'none'"
    ),
}


def find_hls_js(extra: tuple[Path, ...] = ()) -> Path | None:
    """hls.min.js from the npm package: next to the source tree, or in the working directory."""
    package_root = Path(__file__).resolve().parents[2]
    for base in (*extra, package_root, Path.cwd()):
        candidate = base / HLS_JS_RELATIVE
        if candidate.is_file():
            return candidate
    return None


@dataclass(slots=True)
class PageContext:
    """What the page handlers need, under one app key."""

    role: Role
    hls_js: Path | None
    dashboard: DashboardSource | None


PAGES: web.AppKey[PageContext] = web.AppKey("pages", PageContext)


class RateMeter:
    """Bytes per second from a cumulative byte counter, between consecutive samples."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.rate = 0.0

    def sample(self, total: int, now: float) -> float:
        if self._last is not None:
            then, before = self._last
            if now - then >= 0.5:
                self.rate = max(0, total - before) / (now - then)
                self._last = (now, total)
        else:
            self._last = (now, total)
        return self.rate


def slave_dashboard(stats: dict[str, Any], now: float, bandwidth: float) -> dict[str, Any]:
    """A standalone slave's stats in the `GET /cluster/nodes` shape: a cluster of one node."""
    connections = int(stats.get("connections", 0))
    capacity = int(stats.get("max_connections", 1)) or 1
    streams: dict[str, Any] = stats.get("streams", {})
    publishing = sorted(path for path, s in streams.items() if s.get("publishing"))
    load = round(connections * 100 / capacity, 1)
    status = load_status(connections, capacity)
    recommended = recommended_nodes(connections)
    to_add = max(0, recommended - 1)
    node = {
        "node_id": stats.get("node_id", ""),
        "node_name": stats.get("node_id", ""),
        "current_connections": connections,
        "max_connections": capacity,
        "load_percentage": load,
        "cpu_usage": round(float(stats.get("cpu", 0.0)), 1),
        "memory_usage": round(float(stats.get("memory", 0.0)), 1),
        "status": status,
        "last_heartbeat": iso_utc(now),
        "streams": publishing,
        "serving": sorted(streams),
        "bandwidth": round(bandwidth, 1),
    }
    return {
        "role": "slave",
        "total_nodes": 1,
        "healthy_nodes": 1,
        "total_connections": connections,
        "total_capacity": capacity,
        "utilization": load,
        "nodes": [node],
        "advice": {
            "students": connections,
            "recommended_nodes": recommended,
            "nodes_to_add": to_add,
            "rule": "max(1, ceil(ceil(students / 150) * 1.3))",
            # Like the master: urge more nodes only once every serving node is full.
            "message": (
                f"this node is critical ({connections} students): add {to_add} slaves"
                if status == "critical"
                else None
            ),
        },
        "stream_details": {
            path: {
                key: s.get(key)
                for key in (
                    "state",
                    "publishing",
                    "viewers",
                    "resolution",
                    "keyframe_interval",
                    "target_duration",
                    "bandwidth",
                )
            }
            for path, s in streams.items()
        },
    }


def slave_dashboard_source(
    stats: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.time
) -> DashboardSource:
    """The dashboard source of a slave: its own stats, with bandwidth measured between polls."""
    meter = RateMeter()

    def source() -> dict[str, Any]:
        now = clock()
        current = stats()
        reported = current.get("bandwidth")
        if isinstance(reported, int | float):
            bandwidth = float(reported)
        else:
            bandwidth = meter.sample(int(current.get("bytes_served", 0)), now)
        return slave_dashboard(current, now, bandwidth)

    return source


def _config_of(app: web.Application) -> Any:
    service = app.get(TOKEN_SERVICE)
    return None if service is None else service.config


async def page(request: web.Request) -> web.StreamResponse:
    ctx = request.app[PAGES]
    name = _PAGES[request.path]
    if name in _NEEDS_HLS_JS and ctx.hls_js is None:
        return _missing_hls_js()
    return web.FileResponse(STATIC_DIR / name, headers=PAGE_HEADERS)


def _missing_hls_js() -> web.Response:
    log.error("hls.js is missing: run `npm install` in the AIRClass directory")
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>AIRClass: player missing</title>"
        "<body style='font:18px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;"
        "padding:0 1em'>"
        "<h1>The video player (hls.js) is not installed</h1>"
        "<p lang=ko>동영상 플레이어(hls.js)가 설치되지 않았습니다. 관리자에게 알려 주세요.</p>"
        "<p>Ask the person who runs this server to install it: in the AIRClass directory run "
        "<code>npm install</code> (or <code>scripts/install.sh run</code>), then reload.</p>"
    )
    return web.Response(
        status=503,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Retry-After": "30"},
    )


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "hls.min.js":
        path = request.app[PAGES].hls_js
        if path is None:
            raise HttpError(404, "hls.js is not installed: run `npm install`")
    elif _STATIC_NAME.match(name) and (STATIC_DIR / name).is_file():
        path = STATIC_DIR / name
    else:
        raise HttpError(404, "no such file")
    return web.FileResponse(
        path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    )


async def info(request: web.Request) -> web.Response:
    ctx = request.app[PAGES]
    config = _config_of(request.app)
    sign_in = {
        "class_code_required": bool(config and config.class_code),
        "teacher_enabled": bool(config and config.teacher_password),
    }
    forwarder = request.app.get(TOKEN_FORWARDER)
    if forwarder is not None:  # a slave of a cluster: the master decides
        sign_in.update(await forwarder.sign_in_info(time.monotonic()))
    return json_response(
        {
            "role": ctx.role,
            "node_id": config.node_id if config else "",
            **sign_in,
            "segment_duration": config.segment_duration if config else None,
            "version": __version__,
        },
        headers={"Cache-Control": "no-cache"},
    )


async def dashboard_data(request: web.Request) -> web.Response:
    ctx = request.app[PAGES]
    service = request.app.get(TOKEN_SERVICE)
    token = extract_token({}, request.headers.get("Authorization"))
    if service is None or not token:
        raise HttpError(401, "sign in as a teacher (Authorization: Bearer <teacher token>)")
    try:
        claims = service.issuer.verify(token, now=service.clock())
    except AuthError as exc:
        raise HttpError(exc.status, exc.reason) from None
    if claims.user_type != "teacher":
        raise HttpError(403, "the dashboard is for teachers")
    source = ctx.dashboard
    if source is None:
        raise HttpError(501, "this node has no dashboard data")
    result = source()
    data = await result if inspect.isawaitable(result) else result
    data = dict(data)
    data.setdefault("role", ctx.role)
    data["generated_at"] = time.time()
    return json_response(data, headers={"Cache-Control": "no-store"})


def add_page_routes(
    app: web.Application,
    *,
    role: Role,
    dashboard: DashboardSource | None = None,
    hls_js: Path | None = None,
) -> None:
    """Add the pages, their files, `/api/info` and `/api/dashboard` to `app`.

    `dashboard` supplies the dashboard's numbers (the master passes its registry snapshot; a
    slave its own stats via `slave_dashboard`). `hls_js` overrides where hls.min.js is found.
    """
    if hls_js is not None:
        found: Path | None = hls_js if hls_js.is_file() else None
    else:
        found = find_hls_js()
    if found is None:
        log.warning(
            "hls.js not found (%s): the student and teacher pages will say so; run `npm install`",
            HLS_JS_RELATIVE,
        )
    app[PAGES] = PageContext(role=role, hls_js=found, dashboard=dashboard)
    for path in _PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/dashboard", dashboard_data)


__all__ = [
    "PAGES",
    "DashboardSource",
    "PageContext",
    "RateMeter",
    "add_page_routes",
    "find_hls_js",
    "slave_dashboard",
    "slave_dashboard_source",
]
