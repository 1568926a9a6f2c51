"""The slave (edge) node as one aiohttp application.

`create_app(config)` builds everything the node runs: the stream table and hub, the RTMP
listener, the HLS and API routes, and (issue "Master") the registration and heartbeat with
the master. Long-lived pieces are started and stopped by `cleanup_ctx`, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
from aiohttp import web

from airclass import __version__
from airclass.auth.authorize import verify_and_authorize
from airclass.auth.epoch import TeacherEpochs
from airclass.auth.errors import AuthError
from airclass.auth.sessions import SessionSigner, SessionTable
from airclass.auth.tokens import TokenIssuer
from airclass.cluster.link import MasterLink
from airclass.cluster.relay import RelayManager
from airclass.cluster.teacher_epoch import EpochFollower
from airclass.cluster.wire import ClusterView, StreamOrigin
from airclass.config import Config
from airclass.hls.packager import PackagerConfig
from airclass.media.hub import StreamHub
from airclass.media.names import NAME_RE
from airclass.rtmp.server import PublishDenied, RtmpLimits, RtmpServer
from airclass.streams import StreamTable
from airclass.tls import client_context, server_context
from airclass.web import hls_views, metrics, operator
from airclass.web.fastpath import FastPath
from airclass.web.hls_views import HLS_CONTEXT, HlsContext
from airclass.web.http import HttpError, json_response, preflight
from airclass.web.operator import operator_allowed, operator_only
from airclass.web.pages import add_page_routes, slave_dashboard_source
from airclass.web.ratelimit import GuessLimiter, TokenBucket, guess_policy
from airclass.web.relay_views import RelayOrigin
from airclass.web.token_api import (
    TOKEN_FORWARDER,
    TOKEN_SERVICE,
    NodeTarget,
    TokenForwarder,
    TokenService,
    forward_token_handler,
    token_handler,
)

log = logging.getLogger(__name__)



@dataclass(slots=True)
class SlaveNode:
    """Everything one slave holds; one instance per app (no module globals)."""

    config: Config
    streams: StreamTable
    hls: HlsContext
    tokens: TokenService
    rtmp: RtmpServer
    started_at: float
    process: psutil.Process

    def stats(self) -> dict[str, Any]:
        """The node's live numbers: what /health, /api/stats and the heartbeat report."""
        now = self.hls.clock()
        sessions = self.hls.sessions
        streams: dict[str, Any] = {}
        viewers = sessions.count_by_path(now)
        bytes_by_path = sessions.bytes_by_path()
        for path, stream in sorted(self.streams.streams.items()):
            packager = stream.packager
            streams[path] = {
                "state": packager.state,
                "publishing": stream.publishing,
                "viewers": viewers.get(path, 0),
                "bytes_served": bytes_by_path.get(path, 0),
                "media_sequence": packager.newest_sequence,
                "bandwidth": packager.bandwidth,
                "codecs": packager.codecs,
                "resolution": list(packager.resolution) if packager.resolution else None,
                "keyframe_interval": packager.keyframe_interval,
                "target_duration": packager.target_duration,
                "ring_bytes": packager.total_bytes,
                "ingest_lag": round(stream.lag.current, 3),
                "ingest_falls_behind": stream.lag.falls,
            }
        with self.process.oneshot():
            rss = self.process.memory_info().rss
            process_cpu = self.process.cpu_percent(None)
        return {
            "node_id": self.config.node_id,
            "role": "slave",
            "version": __version__,
            "connections": sessions.count(now),
            "max_connections": self.config.max_connections,
            "streams": streams,
            "bytes_served": sessions.bytes_served,
            "sessions_opened": sessions.sessions_opened,
            "sessions_closed": sessions.sessions_closed,
            "cpu": psutil.cpu_percent(None),
            "memory": psutil.virtual_memory().percent,
            "process_cpu": process_cpu,
            "process_rss": rss,
            "rtmp_connections": self.rtmp.connections,
            "uptime": round(now - self.started_at, 1),
        }


SLAVE: web.AppKey[SlaveNode] = web.AppKey("slave", SlaveNode)
MASTER_LINK: web.AppKey[MasterLink] = web.AppKey("master_link", MasterLink)
RELAY: web.AppKey[RelayManager] = web.AppKey("relay", RelayManager)
FAST_PATH: web.AppKey[FastPath] = web.AppKey("fast_path", FastPath)
EPOCH_FOLLOWER: web.AppKey[EpochFollower] = web.AppKey("epoch_follower", EpochFollower)


class SelfChooser:
    """A standalone slave routes every viewer and publisher to itself."""

    def __init__(self, config: Config) -> None:
        self.target = NodeTarget(config.node_id, config.hls_base, config.rtmp_base)

    def viewer_node(self, stream: str, user_id: str) -> NodeTarget:
        return self.target

    def ingest_node(self, stream: str) -> NodeTarget:
        return self.target

    def routed(self, target: NodeTarget, stream: str) -> None:
        pass


def one_origin(
    authorize: Callable[[str, str, Mapping[str, str], str], tuple[str, str]],
    live_elsewhere: Callable[[str], StreamOrigin | None],
) -> Callable[[str, str, Mapping[str, str], str], tuple[str, str]]:
    """`authorize`, refusing a publish of a path the cluster has live on another node (one
    origin per path: the master would not list this node as its origin)."""

    def check(app: str, name: str, query: Mapping[str, str], client: str) -> tuple[str, str]:
        path, owner = authorize(app, name, query, client)
        origin = live_elsewhere(path)
        if origin is not None:
            raise PublishDenied(
                "NetStream.Publish.BadName",
                f"{path} is already live on node {origin.node_id}; publish to another name",
            )
        return path, owner

    return check


def make_publish_authorizer(
    config: Config, issuer: TokenIssuer, limiter: GuessLimiter | None = None
) -> Any:
    """authorize(app, name, query, client) -> (path, owner) for the RTMP server.

    A wrong stream key or a bad publish token counts as a failed guess of the client's
    address in `limiter` (the same policy as teacher passwords and class codes); while the
    address is limited, its publishes are refused without looking at the key.
    """
    limiter = limiter or GuessLimiter(guess_policy(config), "stream key")

    def authorize(app: str, name: str, query: Mapping[str, str], client: str) -> tuple[str, str]:
        if not NAME_RE.fullmatch(app) or not NAME_RE.fullmatch(name):
            raise PublishDenied(
                "NetStream.Publish.BadName", "stream names use letters, digits, - and _"
            )
        path = f"{app}/{name}"
        now = time.time()
        wait = limiter.check(client, now)
        if wait > 0:
            log.warning(
                "node %s: publish of %s from %s rate-limited (%.0f s)",
                config.node_id, path, client, wait,
            )
            raise PublishDenied(
                "NetStream.Publish.Unauthorized",
                f"too many refused publishes; try again in {math.ceil(wait)} s",
            )
        token = query.get("jwt")
        if token:
            try:
                claims = verify_and_authorize(issuer, token, "publish", path, config.node_id, now)
            except AuthError as exc:
                limiter.failed(client, now)
                raise PublishDenied("NetStream.Publish.Unauthorized", exc.reason) from None
            limiter.succeeded(client)
            return path, f"teacher:{claims.user_id}"
        key = query.get("key")
        if (
            key
            and config.stream_key
            and hmac.compare_digest(key.encode(), config.stream_key.encode())
        ):
            limiter.succeeded(client)
            return path, "stream-key"
        limiter.failed(client, now)
        raise PublishDenied(
            "NetStream.Publish.Unauthorized",
            "publishing needs a teacher token (?jwt=) or the stream key (?key=)",
        )

    return authorize


def evict_refused(hub: StreamHub, view: ClusterView) -> None:
    """Stop local publishers of paths the master says another node publishes (two teachers
    started the same class on two nodes at once: the first to reach the master keeps it)."""
    for path in sorted(view.refused):
        hub.evict(path, f"{path} is already live on another node; publish to another name")


async def health(request: web.Request) -> web.Response:
    """The node's numbers to operators; to anyone else (a probe from outside the trusted
    networks) only that it is up, since the numbers name the streams and the master."""
    node = request.app[SLAVE]
    if not operator_allowed(request):
        return json_response(
            {"status": "ok", "role": "slave", "node_id": node.config.node_id,
             "version": __version__}
        )
    stats = node.stats()
    stats["status"] = "ok"
    link = request.app.get(MASTER_LINK)
    if link is not None:
        stats["master"] = {"url": link.master_url, "registered": link.registered}
    return json_response(stats)


async def api_stats(request: web.Request) -> web.Response:
    stats = request.app[SLAVE].stats()
    stats["relay"] = request.app[RELAY].stats()
    stats["tasks"] = len(asyncio.all_tasks())
    return json_response(stats)


def packager_config(config: Config) -> PackagerConfig:
    """Packaging from the node's settings. LL-HLS lists seven segments, one more than
    CAN-SKIP-UNTIL (six target durations), so that a delta update skips at least one."""
    if not config.low_latency:
        return PackagerConfig(target_duration=config.segment_duration)
    return PackagerConfig(
        target_duration=config.segment_duration,
        playlist_segments=7,
        low_latency=True,
        part_target=min(config.part_duration, config.segment_duration),
    )


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    # A cluster slave learns the teacher password epoch from its master (auth/epoch.py).
    epochs = (
        TeacherEpochs()
        if config.master_url
        else TeacherEpochs.from_password(config.secret_key, config.teacher_password)
    )
    issuer = TokenIssuer(config.secret_key, epochs)
    streams = StreamTable(packager_config(config))
    sessions = SessionTable(
        window=config.viewer_window,
        capacity=config.max_connections,
        hard_limit=config.hard_limit,
        per_token=config.sessions_per_token,
    )
    hls = HlsContext(
        config.node_id, streams, issuer, SessionSigner(config.secret_key, config.node_id), sessions
    )
    hls.entry_limiter = TokenBucket(config.entry_burst, config.entry_refill)
    if config.tls:
        # TLS bodies are encrypted per connection: memory-file copies would never be sent.
        hls.files.enabled = False
    tokens = TokenService(config, issuer, SelfChooser(config))
    def live_elsewhere(path: str) -> StreamOrigin | None:
        link = app.get(MASTER_LINK)
        return link.live_elsewhere(path) if link is not None else None

    rtmp = RtmpServer(
        streams.hub,
        one_origin(make_publish_authorizer(config, issuer), live_elsewhere),
        RtmpLimits(
            handshake_timeout=config.rtmp_handshake_timeout,
            publish_timeout=config.rtmp_publish_timeout,
            max_connections=config.rtmp_max_connections,
            max_connections_per_address=config.rtmp_max_connections_per_address,
            max_live_paths=config.max_streams,
        ),
    )
    node = SlaveNode(config, streams, hls, tokens, rtmp, time.time(), psutil.Process(os.getpid()))
    app[SLAVE] = node
    app[HLS_CONTEXT] = hls
    app[TOKEN_SERVICE] = tokens

    hls_views.add_routes(app)
    app.router.add_get("/health", health)
    operator.install(app, config, issuer, lambda: hls.clock())
    app.router.add_get("/api/stats", operator_only(api_stats))
    if config.master_url:
        # Sign-ins happen on the master, which holds the teacher password and class code.
        forwarder = TokenForwarder(
            config.master_url, config.cluster_key, client_context(config.tls_ca)
        )
        app[TOKEN_FORWARDER] = forwarder
        app.cleanup_ctx.append(forwarder.ctx)
        app.router.add_post("/api/token", forward_token_handler)
    else:
        app.router.add_post("/api/token", token_handler)
    add_page_routes(app, role="slave", dashboard=slave_dashboard_source(node.stats))
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    if config.master_url:
        app[EPOCH_FOLLOWER] = EpochFollower(config, epochs)
        app.cleanup_ctx.append(_epoch_ctx)  # before RTMP: publishers are checked with it
    app.cleanup_ctx.append(_rtmp_ctx)
    app.cleanup_ctx.append(_sweeper_ctx)
    app.on_cleanup.append(_close_files)
    # One stream, every node: serve our streams to edges, follow the ones published elsewhere.
    RelayOrigin(config.node_id, streams, config.cluster_key).add_routes(app)

    def set_backups(backups: list[tuple[str, str]]) -> None:
        hls.backups = backups

    relay = RelayManager(
        config.node_id,
        streams,
        config.cluster_key,
        on_backups=set_backups,
        ssl_context=client_context(config.tls_ca),
    )
    app[RELAY] = relay

    def relay_lag() -> dict[str, float]:
        return {path: f["lag"] for path, f in relay.stats()["following"].items()}

    http_metrics = metrics.install(app, lambda: metrics.slave_families(node, relay_lag))
    app.middlewares.append(http_metrics.middleware())
    app[FAST_PATH] = FastPath(hls, http_metrics)
    app.cleanup_ctx.append(_relay_ctx)
    if config.master_url:
        app[MASTER_LINK] = MasterLink(config, node.stats)
        app[MASTER_LINK].add_listener(relay.apply)
        app[MASTER_LINK].add_listener(lambda view: evict_refused(streams.hub, view))
        app.cleanup_ctx.append(_master_link_ctx)
        app.on_shutdown.append(_unregister_first)
    return app


async def _close_files(app: web.Application) -> None:
    app[HLS_CONTEXT].files.close()


async def _rtmp_ctx(app: web.Application) -> AsyncIterator[None]:
    node = app[SLAVE]
    config = node.config
    await node.rtmp.start(config.bind, config.rtmp_port)
    log.info("node %s: RTMP ingest on %s:%d", config.node_id, config.bind, node.rtmp.port)
    if config.rtmps_port:
        await node.rtmp.start_tls(
            config.bind, config.rtmps_port, server_context(config.tls_cert, config.tls_key)
        )
        log.info("node %s: RTMPS ingest on %s:%d", config.node_id, config.bind,
                 node.rtmp.tls_port)
    yield
    await node.rtmp.close()


async def _epoch_ctx(app: web.Application) -> AsyncIterator[None]:
    follower = app[EPOCH_FOLLOWER]
    await follower.start()
    yield
    await follower.close()


async def _relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """Followers start on the master's first reply; stop them after the link is closed."""
    yield
    await app[RELAY].close()


async def _master_link_ctx(app: web.Application) -> AsyncIterator[None]:
    """Register and heartbeat while the node runs; unregister first on shutdown."""
    link = app[MASTER_LINK]
    await link.start()
    yield
    await link.close()


async def _unregister_first(app: web.Application) -> None:
    """On a stop signal, leave the master before aiohttp waits on in-flight handlers (relay
    long polls), so no new viewer is routed here while the node winds down."""
    await app[MASTER_LINK].close()


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SLAVE].streams.run_sweeper())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["SLAVE", "HttpError", "SlaveNode", "create_app"]
