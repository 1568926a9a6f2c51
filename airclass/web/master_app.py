"""The master node as one aiohttp application (docs/design.md §1).

`create_master_app(config)` serves `POST /api/token` (students to the least-loaded node,
teachers to the node that ingests their stream), the signed control plane
(`POST /cluster/register`, `/cluster/stats`, `/cluster/unregister`) and the operator's views
(`GET /cluster/nodes`, `/cluster/best-node`, `/health`, `/api/stats`); the node list, the
Prometheus targets, `/api/stats` and `/metrics` only to trusted networks or with a metrics or
teacher token (`web.operator`).

All routing state lives in one `MasterState` under an AppKey: the registry, the balancer
and plain counters of what the master decided (metrics read them later). A background task
started by `cleanup_ctx` watches for nodes going offline and for a cluster that is full.

The control plane's messages are the typed ones of `airclass.cluster.wire`; the register and
heartbeat replies are a `ClusterView`. Every reply to a verified control request is signed
(`signing.sign_reply`, bound to the request's nonce), and slaves act on no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from airclass import __version__
from airclass.auth.epoch import TeacherEpochs
from airclass.auth.tokens import TokenIssuer
from airclass.cluster.balancer import Balancer
from airclass.cluster.registry import NodeInfo, Registry, RegistryFull
from airclass.cluster.signing import ReplayCache, SignatureError, request_nonce, verify
from airclass.cluster.teacher_epoch import TEACHER_EPOCH_PATH
from airclass.cluster.wire import (
    NODE_ID,
    ClusterView,
    Heartbeat,
    Peer,
    Registration,
    StreamOrigin,
    Unregister,
    WireError,
)
from airclass.config import Config
from airclass.logtext import ThrottledWarnings, printable
from airclass.web import metrics, operator
from airclass.web.http import (
    HttpError,
    json_response,
    parse_json_object,
    preflight,
    read_body,
    signed_reply,
)
from airclass.web.operator import operator_only
from airclass.web.pages import add_page_routes
from airclass.web.token_api import TOKEN_SERVICE, NodeTarget, TokenService, token_handler

log = logging.getLogger(__name__)

Message = TypeVar("Message")
refusals = ThrottledWarnings(log)
"""Refused control requests, logged at most once per 10 s per kind."""

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

    def cluster_view(self, node_id: str, now: float, registration: str = "") -> ClusterView:
        """The register/heartbeat reply: which node is origin of each stream, and the peers."""
        streams: dict[str, StreamOrigin] = {}
        peers: list[Peer] = []
        serving = self.registry.serving_nodes(now)
        for node in serving:
            for path in sorted(node.streams):
                if self.registry.origin_of(path, now) is node:
                    streams[path] = StreamOrigin(node.node_id, node.hls_url, node.api_url)
            if node.node_id != node_id:
                peers.append(Peer(
                    node.node_id, node.hls_url, node.api_url, self.registry.status(node, now),
                    _load_percentage(node),
                ))
        me = self.registry.get(node_id)
        refused = me.refused if me is not None else frozenset()
        return ClusterView(node_id, streams, tuple(peers), registration, refused)


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


async def _signed_json(request: web.Request) -> tuple[dict[str, Any], str]:
    """The JSON body of a request signed with the cluster key and its nonce, or 401/400/413."""
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
        refusals.warning(
            "signature", "refused %s %s from %s: %s", printable(request.method),
            printable(request.path), request.remote, exc.reason,
        )
        raise HttpError(401, f"control request refused: {exc.reason}") from None
    return parse_json_object(body), request_nonce(request.headers)


def _signed_reply(
    state: MasterState, nonce: str, payload: dict[str, Any], status: int = 200
) -> web.Response:
    """A JSON reply the slave can tell came from this master, for this request."""
    return signed_reply(json_response(payload, status=status), state.config.cluster_key, nonce)


async def _signed_message(
    request: web.Request, parse: Callable[[object], Message], what: str
) -> tuple[Message, str]:
    """A signed control request's message, parsed (`wire`), and its nonce; 400 when malformed,
    counted under `what`."""
    body, nonce = await _signed_json(request)
    try:
        return parse(body), nonce
    except WireError as exc:
        request.app[MASTER].bad_requests[what] += 1
        raise HttpError(400, exc.reason) from None


async def register(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    reg, nonce = await _signed_message(request, Registration.from_json, "register")
    now = state.clock()
    address = request.remote or ""
    existing = state.registry.get(reg.node_id)
    if (
        existing is not None
        and state.registry.is_serving(existing, now)
        and (existing.api_url != reg.api_url or existing.address != address)
    ):
        # A live node's id is its own: another machine taking it would take its heartbeats,
        # its streams and its viewers. The same machine restarting keeps its address and URL.
        state.bad_requests["node id conflict"] += 1
        wait = state.registry.heartbeat_timeout - (now - existing.last_heartbeat)
        log.warning(
            "node id %s is alive at %s (%s): refusing the registration from %s (%s)",
            reg.node_id, existing.api_url, existing.address, reg.api_url, address,
        )
        raise HttpError(
            409,
            f"node id {reg.node_id} is in use by {existing.api_url}; give this node its own "
            f"--node-id, or wait {max(wait, 0):.0f} s if that node has stopped",
        )
    try:
        node = state.registry.register(reg, now, address)
    except RegistryFull as exc:
        raise HttpError(503, str(exc)) from None
    state.offline.discard(reg.node_id)
    view = state.cluster_view(reg.node_id, now, node.registration)
    return _signed_reply(state, nonce, view.to_json())


def _registered(state: MasterState, node_id: str, registration: str) -> bool:
    """Whether `registration` is `node_id`'s current one (constant time)."""
    node = state.registry.get(node_id)
    return node is not None and hmac.compare_digest(node.registration, registration)


async def heartbeat(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    beat, nonce = await _signed_message(request, Heartbeat.from_json, "stats")
    now = state.clock()
    if not _registered(state, beat.node_id, beat.registration):
        state.unknown_heartbeats += 1
        if beat.node_id in state.registry:
            refusals.warning("registration", "heartbeat for node %s from %s does not carry its "
                             "registration: asking it to register", beat.node_id,
                             request.remote)
        else:
            log.info("heartbeat from unknown node %s: asking it to register", beat.node_id)
        return _signed_reply(state, nonce, {"error": "unknown node", "register": True}, 404)
    state.registry.heartbeat(beat.node_id, beat.stats, now)
    return _signed_reply(state, nonce, state.cluster_view(beat.node_id, now).to_json())


async def unregister(request: web.Request) -> web.Response:
    state = request.app[MASTER]
    leaving, nonce = await _signed_message(request, Unregister.from_json, "unregister")
    removed = False
    if _registered(state, leaving.node_id, leaving.registration):
        removed = state.registry.unregister(leaving.node_id)
        state.offline.discard(leaving.node_id)
    elif leaving.node_id in state.registry:
        refusals.warning("registration", "unregister for node %s from %s does not carry its "
                         "registration: ignored", leaving.node_id, request.remote)
    return _signed_reply(
        state, nonce, {"ok": True, "node_id": leaving.node_id, "removed": removed}
    )


async def teacher_epoch(request: web.Request) -> web.Response:
    """The current teacher password epoch, for slaves that check teacher tokens without
    knowing the password (auth/epoch.py); null when this master has no teacher password."""
    state = request.app[MASTER]
    body, nonce = await _signed_json(request)
    node_id = body.get("node_id")
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise HttpError(400, "node_id invalid")
    epochs = state.issuer.epochs
    return _signed_reply(
        state, nonce, {"teacher_epoch": epochs.current() if epochs is not None else None}
    )


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
    operator.install(app, config, state.issuer, clock)
    app.router.add_get("/api/stats", operator_only(api_stats))
    app.router.add_post("/cluster/register", register)
    app.router.add_post("/cluster/stats", heartbeat)
    app.router.add_post("/cluster/unregister", unregister)
    app.router.add_post(TEACHER_EPOCH_PATH, teacher_epoch)
    app.router.add_get("/cluster/nodes", operator_only(cluster_nodes))
    app.router.add_get("/cluster/best-node", best_node)
    app.router.add_get("/health", health)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_get("/cluster/prometheus-targets", operator_only(prometheus_targets))
    add_master_pages(app, state)
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


def add_master_pages(app: web.Application, state: MasterState) -> None:
    """The web pages (`/`, `/teacher`, `/dashboard`, `/static/...`, `/api/info`,
    `/api/dashboard`); the dashboard reads the registry snapshot."""

    def dashboard() -> dict[str, Any]:
        now = state.clock()
        snapshot = state.registry.snapshot(now)
        snapshot["advice"]["message"] = state.advice(now, snapshot)
        return snapshot

    add_page_routes(app, role="master", dashboard=dashboard)


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
