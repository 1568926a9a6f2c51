"""The master node as one aiohttp application (DESIGN.md §1).

`create_master_app(config)` serves `POST /api/token` (students to the least-loaded node,
teachers to the node that ingests their stream), the signed control plane
(`POST /cluster/register`, `/cluster/stats`, `/cluster/unregister`) and the operator's views
(`GET /cluster/nodes`, `/cluster/best-node`, `/health`, `/api/stats`).

All routing state lives in one `MasterState` under an AppKey: the registry, the balancer
and plain counters of what the master decided (metrics read them later). A background task
started by `cleanup_ctx` watches for nodes going offline and for a cluster that is full.

The register and heartbeat replies tell each slave about the cluster, in one shape the relay
depends on: `{"ok", "node_id", "streams": {path: {"origin", "origin_hls", "origin_api"}},
"peers": [{"node_id", "hls_url", "api_url", "status", "load_percentage"}]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from airclass import __version__
from airclass.auth.epoch import TeacherEpochs
from airclass.auth.tokens import TokenIssuer
from airclass.cluster.balancer import Balancer
from airclass.cluster.registry import (
    InvalidRequest,
    NodeInfo,
    NodeStats,
    Registration,
    Registry,
    RegistryFull,
)
from airclass.cluster.signing import ReplayCache, SignatureError, verify
from airclass.cluster.teacher_epoch import TEACHER_EPOCH_PATH
from airclass.config import Config
from airclass.web import metrics
from airclass.web.http import (
    HttpError,
    json_response,
    parse_json_object,
    preflight,
    read_body,
)
from airclass.web.pages import add_page_routes
from airclass.web.token_api import TOKEN_SERVICE, NodeTarget, TokenService, token_handler

log = logging.getLogger(__name__)

MAX_CONTROL_BODY = 64 * 1024
"""Largest register/heartbeat body (a heartbeat lists at most 256 stream paths)."""
ADVICE_LOG_INTERVAL = 60.0
"""Seconds between two "add N slaves" warnings while the cluster stays full."""
NO_NODE_RETRY_AFTER = "5"


@dataclass(slots=True)
class MasterState:
    """Everything the master holds; one instance per app."""

    config: Config
    registry: Registry
    balancer: Balancer
    issuer: TokenIssuer
    replay: ReplayCache
    clock: Callable[[], float]
    started_at: float
    routed: Counter[str] = field(default_factory=Counter)
    """Students routed per node id since start."""
    ingests: Counter[str] = field(default_factory=Counter)
    """Teacher publish tokens issued per node id."""
    no_node: int = 0
    """Token requests refused with 503 because no node was serving."""
    signature_failures: Counter[str] = field(default_factory=Counter)
    """Refused control-plane requests by reason."""
    bad_requests: Counter[str] = field(default_factory=Counter)
    """Malformed (400) control-plane requests by endpoint."""
    unknown_heartbeats: int = 0
    offline: set[str] = field(default_factory=set)
    """Nodes last seen offline by `check`, to log each transition once."""
    last_advice_at: float | None = None

    def check(self, now: float) -> list[str]:
        """Log nodes that went offline or came back, and the scaling advice when every serving
        node is critical (at most once per `ADVICE_LOG_INTERVAL`). Returns the messages."""
        messages: list[str] = []
        offline_now: set[str] = set()
        for node in self.registry.nodes(now):
            if not self.registry.is_serving(node, now):
                offline_now.add(node.node_id)
        for node_id in sorted(offline_now - self.offline):
            info = self.registry.get(node_id)
            silence = now - info.last_heartbeat if info is not None else 0.0
            messages.append(f"node {node_id} is offline: no heartbeat for {silence:.0f} s")
        for node_id in sorted(self.offline - offline_now):
            if node_id in self.registry:
                messages.append(f"node {node_id} is serving again")
        self.offline = offline_now
        advice = self.advice(now)
        if advice is not None and (
            self.last_advice_at is None or now - self.last_advice_at >= ADVICE_LOG_INTERVAL
        ):
            self.last_advice_at = now
            messages.append(advice)
        for message in messages:
            log.warning("%s", message)
        return messages

    def advice(self, now: float, snapshot: dict[str, Any] | None = None) -> str | None:
        """The operator's "add N slaves" message if every serving node is critical."""
        snap = snapshot if snapshot is not None else self.registry.snapshot(now)
        serving = snap["healthy_nodes"]
        if serving == 0 or snap["status_counts"]["critical"] < serving:
            return None
        advice = snap["advice"]
        return (
            f"all {serving} serving nodes are critical ({advice['students']} students): "
            f"add {advice['nodes_to_add']} slaves "
            f"(recommended {advice['recommended_nodes']} = ceil(students / 150) x 1.3)"
        )

    def cluster_view(self, node_id: str, now: float) -> dict[str, Any]:
        """The register/heartbeat reply: which node is origin of each stream, and the peers."""
        streams: dict[str, dict[str, str]] = {}
        peers: list[dict[str, Any]] = []
        for node in self.registry.serving_nodes(now):
            for path in sorted(node.streams):
                streams.setdefault(
                    path,
                    {
                        "origin": node.node_id,
                        "origin_hls": node.hls_url,
                        "origin_api": node.api_url,
                    },
                )
            if node.node_id != node_id:
                peers.append(
                    {
                        "node_id": node.node_id,
                        "hls_url": node.hls_url,
                        "api_url": node.api_url,
                        "status": self.registry.status(node, now),
                        "load_percentage": _load_percentage(node),
                    }
                )
        return {"ok": True, "node_id": node_id, "streams": streams, "peers": peers}


MASTER: web.AppKey[MasterState] = web.AppKey("master", MasterState)


class MasterChooser:
    """Picks nodes for `TokenService` with the balancer; counts each routed student."""

    def __init__(self, state: MasterState) -> None:
        self.state = state

    def viewer_node(self, stream: str, user_id: str) -> NodeTarget:
        state = self.state
        node = state.balancer.pick(state.clock(), stream=stream)
        if node is None:
            return self._none(stream)
        return _target(node)

    def ingest_node(self, stream: str) -> NodeTarget:
        state = self.state
        node = state.balancer.choose_ingest(stream, state.clock())
        if node is None:
            return self._none(stream)
        state.ingests[node.node_id] += 1
        return _target(node)

    def routed(self, target: NodeTarget, stream: str) -> None:
        state = self.state
        if target.node_id in state.registry:
            state.registry.add_pending(target.node_id, state.clock())
        state.routed[target.node_id] += 1

    def _none(self, stream: str) -> NodeTarget:
        self.state.no_node += 1
        log.warning("no serving node for %s: refusing with 503", stream)
        raise HttpError(
            503,
            "no streaming node is available; try again shortly",
            {"Retry-After": NO_NODE_RETRY_AFTER},
        )


def _target(node: NodeInfo) -> NodeTarget:
    return NodeTarget(node.node_id, node.hls_url, node.rtmp_url)


def _load_percentage(node: NodeInfo) -> float:
    if node.max_connections <= 0:
        return 100.0
    return round(node.current_connections * 100 / node.max_connections, 1)


# Signed control plane


async def _signed_json(request: web.Request) -> dict[str, Any]:
    """The JSON body of a request signed with the cluster key, or 401/400/413."""
    state = request.app[MASTER]
    body = await read_body(request, MAX_CONTROL_BODY)
    try:
        verify(
            state.config.cluster_key,
            request.method,
            request.path_qs,
            body,
            request.headers,
            state.clock(),
            replay=state.replay,
        )
    except SignatureError as exc:
        state.signature_failures[exc.reason] += 1
        log.warning(
            "refused %s %s from %s: %s", request.method, request.path, request.remote, exc.reason
        )
        raise HttpError(401, f"control request refused: {exc.reason}") from None
    return parse_json_object(body)


def _node_id(body: dict[str, Any]) -> str:
    node_id = body.get("node_id")
    if not isinstance(node_id, str) or not node_id or len(node_id) > 64:
        raise HttpError(400, "node_id invalid")
    return node_id


async def register(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    body = await _signed_json(request)
    try:
        reg = Registration.from_json(body)
    except InvalidRequest as exc:
        state.bad_requests["register"] += 1
        raise HttpError(400, exc.reason) from None
    now = state.clock()
    existing = state.registry.get(reg.node_id)
    if (
        existing is not None
        and existing.api_url != reg.api_url.rstrip("/")
        and state.registry.is_serving(existing, now)
    ):
        # Two machines with one node id would overwrite each other on every heartbeat.
        state.bad_requests["node id conflict"] += 1
        log.warning(
            "node id %s is in use by %s: refusing %s", reg.node_id, existing.api_url, reg.api_url
        )
        raise HttpError(
            409,
            f"node id {reg.node_id} is in use by {existing.api_url}; "
            "give this node its own --node-id",
        )
    try:
        state.registry.register(reg, now)
    except RegistryFull as exc:
        raise HttpError(503, str(exc)) from None
    state.offline.discard(reg.node_id)
    return json_response(state.cluster_view(reg.node_id, now))


async def heartbeat(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    body = await _signed_json(request)
    node_id = _node_id(body)
    try:
        stats = NodeStats.from_json(body.get("stats"))
    except InvalidRequest as exc:
        state.bad_requests["stats"] += 1
        raise HttpError(400, exc.reason) from None
    now = state.clock()
    if not state.registry.heartbeat(node_id, stats, now):
        state.unknown_heartbeats += 1
        log.info("heartbeat from unknown node %s: asking it to register", node_id)
        return json_response({"error": "unknown node", "register": True}, status=404)
    return json_response(state.cluster_view(node_id, now))


async def unregister(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    body = await _signed_json(request)
    node_id = _node_id(body)
    removed = state.registry.unregister(node_id)
    state.offline.discard(node_id)
    return json_response({"ok": True, "node_id": node_id, "removed": removed})


async def teacher_epoch(request: web.Request) -> web.Response:
    """The current teacher password epoch, for slaves that check teacher tokens without
    knowing the password (auth/epoch.py); null when this master has no teacher password."""
    state = request.app[MASTER]
    _node_id(await _signed_json(request))
    epochs = state.issuer.epochs
    return json_response({"teacher_epoch": epochs.current() if epochs is not None else None})


# Views


async def cluster_nodes(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    now = state.clock()
    snapshot = state.registry.snapshot(now)
    message = state.advice(now, snapshot)
    snapshot["advice"]["message"] = message
    if message is not None and (
        state.last_advice_at is None or now - state.last_advice_at >= ADVICE_LOG_INTERVAL
    ):
        state.last_advice_at = now
        log.warning("%s", message)
    return json_response(snapshot)


async def best_node(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    now = state.clock()
    node = state.balancer.pick(now, stream=request.query.get("stream"))
    if node is None:
        raise HttpError(503, "no streaming node is available", {"Retry-After": NO_NODE_RETRY_AFTER})
    return json_response(
        {
            "node_id": node.node_id,
            "hls_url": node.hls_url,
            "api_url": node.api_url,
            "rtmp_url": node.rtmp_url,
            "load_percentage": _load_percentage(node),
            "status": state.registry.status(node, now),
        }
    )


async def health(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    now = state.clock()
    nodes = state.registry.nodes(now)
    serving = sum(1 for node in nodes if state.registry.is_serving(node, now))
    return json_response(
        {
            "status": "ok",
            "role": "master",
            "node_id": state.config.node_id,
            "version": __version__,
            "total_nodes": len(nodes),
            "serving_nodes": serving,
            "uptime": round(now - state.started_at, 1),
        }
    )


async def api_stats(request: web.Request) -> web.Response:
    """The master's own counters: what it decided and what it refused."""
    state = request.app[MASTER]
    tokens = request.app[TOKEN_SERVICE]
    return json_response(
        {
            "role": "master",
            "tokens_issued": dict(tokens.issued),
            "routed": dict(state.routed),
            "ingests": dict(state.ingests),
            "no_node": state.no_node,
            "signature_failures": dict(state.signature_failures),
            "bad_requests": dict(state.bad_requests),
            "unknown_heartbeats": state.unknown_heartbeats,
            "replay_cache": len(state.replay),
        }
    )


def create_master_app(config: Config, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The master's app; `clock` is replaceable so tests can move time."""
    app = web.Application(client_max_size=MAX_CONTROL_BODY)
    registry = Registry(config.heartbeat_timeout)
    state = MasterState(
        config=config,
        registry=registry,
        balancer=Balancer(registry, sticky=config.sticky),
        issuer=TokenIssuer(
            config.secret_key,
            TeacherEpochs.from_password(config.secret_key, config.teacher_password),
        ),
        replay=ReplayCache(),
        clock=clock,
        started_at=clock(),
    )
    app[MASTER] = state
    app[TOKEN_SERVICE] = TokenService(config, state.issuer, MasterChooser(state), clock=clock)

    app.router.add_post("/api/token", token_handler)
    app.router.add_get("/api/stats", api_stats)
    app.router.add_post("/cluster/register", register)
    app.router.add_post("/cluster/stats", heartbeat)
    app.router.add_post("/cluster/unregister", unregister)
    app.router.add_post(TEACHER_EPOCH_PATH, teacher_epoch)
    app.router.add_get("/cluster/nodes", cluster_nodes)
    app.router.add_get("/cluster/best-node", best_node)
    app.router.add_get("/health", health)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_get("/cluster/prometheus-targets", prometheus_targets)
    add_master_pages(app)
    http_metrics = metrics.install(app, lambda: metrics.master_families(state))
    app.middlewares.append(http_metrics.middleware())
    app.cleanup_ctx.append(_monitor_ctx)
    return app


async def prometheus_targets(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: every registered slave's API address, so slaves
    added on new PCs or with --scale are scraped without editing the Prometheus config."""
    state = request.app[MASTER]
    now = state.clock()
    groups = []
    for node in state.registry.nodes(now):
        address = urlsplit(node.api_url).netloc
        if address:
            groups.append(
                {"targets": [address], "labels": {"node_id": node.node_id, "role": "slave"}}
            )
    return json_response(groups)


def add_master_pages(app: web.Application) -> None:
    """The web pages (`/`, `/teacher`, `/dashboard`, `/static/...`, `/api/info`,
    `/api/dashboard`); the dashboard reads the registry snapshot."""
    add_page_routes(app, role="master")


async def _monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[MASTER]
    interval = max(0.2, min(state.config.heartbeat_interval, state.config.heartbeat_timeout / 4))

    async def monitor() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                state.check(state.clock())
            except Exception:
                log.exception("cluster check failed")

    task = asyncio.create_task(monitor())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["MASTER", "MasterChooser", "MasterState", "add_master_pages", "create_master_app"]
