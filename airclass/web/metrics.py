"""Prometheus metrics (`GET /metrics`) via prometheus_client, one registry per app.

Live numbers (viewers, streams, CPU, memory, cluster state) are read from the node's own
state at scrape time by a custom collector, so the hot paths pay nothing for them; only HTTP
requests are counted as they happen, by a middleware. A registry per app (not the global one)
keeps several nodes in one process — tests, the demo — apart.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from airclass.web.http import Handler, handle_errors
from airclass.web.operator import operator_only

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
SEGMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """A Prometheus histogram kept in plain ints: the event loop is the only writer and the
    scrape runs on it too, so prometheus_client's per-sample lock buys nothing here."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        index = bisect.bisect_left(self.buckets, seconds)
        if index < len(self.counts):
            self.counts[index] += 1

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            total += n
            cumulative.append((repr(bound), total))
        cumulative.append(("+Inf", self.count))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.sum)


class HttpMetrics:
    """Requests by route, method and status, and how long segment and playlist requests take,
    counted by the middleware and read by the registry at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.segment_seconds = LatencyHistogram(SEGMENT_BUCKETS)
        self.playlist_seconds = LatencyHistogram(SEGMENT_BUCKETS)
        registry.register(StatsCollector(self.families))

    def families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "airclass_http_requests",
            "HTTP requests by route pattern, method and status.",
            labels=["route", "method", "status"],
        )
        for labels, n in sorted(self.requests.items()):
            requests.add_metric(list(labels), n)
        yield requests
        yield self.segment_seconds.family(
            "airclass_segment_request_duration_seconds",
            "Time to answer a segment request (session check and response).",
        )
        yield self.playlist_seconds.family(
            "airclass_playlist_request_duration_seconds",
            "Time to answer a playlist request, including any blocking wait.",
        )

    def histogram_for(self, route: str) -> LatencyHistogram | None:
        """The latency histogram requests on `route` (a route pattern) are timed in, if any."""
        if route.endswith(".ts"):
            return self.segment_seconds
        if route.endswith(".m3u8"):
            return self.playlist_seconds
        return None

    def middleware(self) -> Middleware:
        """Count and time every request around `handle_errors`: one middleware for both, since
        each layer costs every request, and a segment request is little more than a lookup."""
        requests = self.requests
        # (resource, method, status) -> (counter key, histogram or None). Bounded: routes and
        # statuses are few, and unknown methods are counted as "other".
        cache: dict[tuple[object, str, int], tuple[tuple[str, str, str], Any]] = {}

        def series(request: web.Request, status: int) -> tuple[tuple[str, str, str], Any]:
            resource = request.match_info.route.resource
            method = request.method if request.method in KNOWN_METHODS else "other"
            key = (resource, method, status)
            found = cache.get(key)
            if found is None:
                route = resource.canonical if resource is not None else "unmatched"
                found = cache[key] = ((route, method, str(status)), self.histogram_for(route))
            return found

        @web.middleware
        async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response = await handle_errors(request, handler)
                status = response.status
                return response
            except web.HTTPException as exc:  # a redirect, which handle_errors lets through
                status = exc.status
                raise
            finally:
                labels, histogram = series(request, status)
                requests[labels] = requests.get(labels, 0) + 1
                if histogram is not None:
                    histogram.observe(time.perf_counter() - start)

        return metrics_middleware


def gauge(
    name: str, doc: str, value: float | None = None, labels: Iterable[str] = ()
) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=list(labels) or None)


def counter(
    name: str, doc: str, value: float | None = None, labels: Iterable[str] = ()
) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, labels=list(labels) or None)


class StatsCollector(Collector):
    """Adapts a function returning metric families to prometheus_client's collector API."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def new_registry(with_process: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    if with_process:
        ProcessCollector(namespace="airclass", registry=registry)
    return registry


METRICS_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def slave_families(
    node: Any, relay_lag: Callable[[], dict[str, float]] | None = None
) -> Iterator[Metric]:
    """A slave's live numbers, from `SlaveNode.stats()`, its stream table and its relay."""
    stats = node.stats()
    sessions = node.hls.sessions
    yield gauge(
        "airclass_viewers", "Viewers (sessions seen within the window).", stats["connections"]
    )
    yield gauge(
        "airclass_capacity_viewers",
        "Configured viewer capacity (--max-connections).",
        stats["max_connections"],
    )
    yield counter("airclass_sessions_opened", "Viewer sessions opened.", sessions.sessions_opened)
    yield counter(
        "airclass_sessions_closed",
        "Viewer sessions closed (idle past the window).",
        sessions.sessions_closed,
    )
    yield counter(
        "airclass_sessions_refused",
        "Viewer sessions refused (expired or over a limit).",
        sessions.sessions_refused,
    )
    yield counter(
        "airclass_sessions_refused_per_token",
        "Viewer sessions refused because their token held --sessions-per-token already.",
        sessions.refused_per_token,
    )
    yield counter(
        "airclass_entries_rate_limited",
        "Entry playlist requests refused by the per-token rate limit.",
        node.hls.entry_limiter.refused,
    )
    yield counter("airclass_served_bytes", "Media bytes served to viewers.", sessions.bytes_served)
    yield gauge("airclass_cpu_usage_ratio", "Machine CPU usage, 0 to 1.", stats["cpu"] / 100)
    yield gauge(
        "airclass_memory_usage_ratio", "Machine memory usage, 0 to 1.", stats["memory"] / 100
    )
    yield gauge("airclass_rtmp_connections", "Open RTMP connections.", stats["rtmp_connections"])

    viewers = gauge("airclass_stream_viewers", "Viewers per stream.", labels=["stream"])
    served = counter(
        "airclass_stream_served_bytes", "Media bytes served per stream.", labels=["stream"]
    )
    publishing = gauge(
        "airclass_stream_publisher_connected",
        "1 while a publisher is sending this stream to this node.",
        labels=["stream"],
    )
    frames = counter(
        "airclass_ingest_frames", "Frames received from the publisher.", labels=["stream", "kind"]
    )
    ingest = counter(
        "airclass_ingest_bytes", "Media bytes received from the publisher.", labels=["stream"]
    )
    bitrate = gauge(
        "airclass_stream_bitrate_bits_per_second",
        "Average media bitrate over the listed segments.",
        labels=["stream"],
    )
    ring = gauge("airclass_stream_ring_bytes", "Segment bytes held in memory.", labels=["stream"])
    segments = counter("airclass_stream_segments", "Segments made or relayed.", labels=["stream"])
    announced = counter(
        "airclass_stream_segments_announced",
        "Plain-HLS segments listed from the first chunk of the keyframe that ends them, before "
        "the rest of it had arrived.",
        labels=["stream"],
    )
    lag = gauge(
        "airclass_ingest_lag_seconds",
        "How far behind real time the publisher's latest frame arrived.",
        labels=["stream"],
    )
    falls = counter(
        "airclass_ingest_falls_behind",
        "Times the publisher fell half a second or more behind real time.",
        labels=["stream"],
    )
    for path, stream in sorted(node.streams.streams.items()):
        packager = stream.packager
        entry = stats["streams"].get(path, {})
        viewers.add_metric([path], entry.get("viewers", 0))
        served.add_metric([path], entry.get("bytes_served", 0))
        publishing.add_metric([path], 1 if stream.publishing else 0)
        frames.add_metric([path, "video"], stream.frames_in.get("video", 0))
        frames.add_metric([path, "audio"], stream.frames_in.get("audio", 0))
        ingest.add_metric([path], stream.bytes_in)
        bitrate.add_metric([path], packager.average_bandwidth)
        ring.add_metric([path], packager.total_bytes)
        segments.add_metric([path], packager.segments_made)
        announced.add_metric([path], packager.segments_announced)
        lag.add_metric([path], stream.lag.current)
        falls.add_metric([path], stream.lag.falls)
    yield from (
        viewers, served, publishing, frames, ingest, lag, falls, bitrate, ring, segments, announced
    )

    if relay_lag is not None:
        relay = gauge(
            "airclass_relay_lag_seconds",
            "How long after the origin listed a segment this edge listed it.",
            labels=["stream"],
        )
        for path, seconds in sorted(relay_lag().items()):
            relay.add_metric([path], seconds)
        yield relay


_STATUSES = ("healthy", "warning", "critical", "offline")


def master_families(state: Any) -> Iterator[Metric]:
    """The master's view of the cluster, from its registry snapshot and counters."""
    now = state.clock()
    snap = state.registry.snapshot(now)
    yield gauge("airclass_cluster_nodes", "Registered nodes.", snap["total_nodes"])
    yield gauge("airclass_cluster_serving_nodes", "Nodes not offline.", snap["healthy_nodes"])
    yield gauge("airclass_cluster_viewers", "Viewers on serving nodes.", snap["total_connections"])
    yield gauge(
        "airclass_cluster_capacity_viewers", "Capacity of serving nodes.", snap["total_capacity"]
    )
    yield gauge(
        "airclass_cluster_nodes_to_add",
        "Slaves to add by the sizing rule ceil(students/150) x 1.3.",
        snap["advice"]["nodes_to_add"],
    )
    labels = ["node_id"]
    viewers = gauge("airclass_node_viewers", "Viewers per node (last heartbeat).", labels=labels)
    capacity = gauge("airclass_node_capacity_viewers", "Capacity per node.", labels=labels)
    load = gauge("airclass_node_load_ratio", "Viewers / capacity per node.", labels=labels)
    pending = gauge(
        "airclass_node_pending_viewers",
        "Viewers routed to a node and not yet in its heartbeat.",
        labels=labels,
    )
    cpu = gauge("airclass_node_cpu_usage_ratio", "CPU usage per node, 0 to 1.", labels=labels)
    memory = gauge(
        "airclass_node_memory_usage_ratio", "Memory usage per node, 0 to 1.", labels=labels
    )
    bandwidth = gauge(
        "airclass_node_bandwidth_bytes_per_second",
        "Bytes per second a node serves (last heartbeat).",
        labels=labels,
    )
    age = gauge(
        "airclass_node_heartbeat_age_seconds",
        "Seconds since the node's last heartbeat.",
        labels=labels,
    )
    status = gauge(
        "airclass_node_status", "1 for the node's current status.", labels=["node_id", "status"]
    )
    for row in snap["nodes"]:
        node_id = row["node_id"]
        info = state.registry.get(node_id)
        viewers.add_metric([node_id], row["current_connections"])
        capacity.add_metric([node_id], row["max_connections"])
        load.add_metric([node_id], row["current_connections"] / max(row["max_connections"], 1))
        pending.add_metric([node_id], row.get("pending", 0))
        cpu.add_metric([node_id], row["cpu_usage"] / 100)
        memory.add_metric([node_id], row["memory_usage"] / 100)
        bandwidth.add_metric([node_id], row.get("bandwidth", 0))
        if info is not None:
            age.add_metric([node_id], max(0.0, now - info.last_heartbeat))
        for name in _STATUSES:
            status.add_metric([node_id, name], 1 if row["status"] == name else 0)
    yield from (viewers, capacity, load, pending, cpu, memory, bandwidth, age, status)
    tokens = counter("airclass_tokens_issued", "Tokens issued.", labels=["user_type"])
    tokens.add_metric(["student"], sum(state.routed.values()))
    tokens.add_metric(["teacher"], sum(state.ingests.values()))
    yield tokens
    routed = counter("airclass_routing_decisions", "Students routed, by node.", labels=labels)
    for node_id, n in sorted(state.routed.items()):
        routed.add_metric([node_id], n)
    yield routed
    refused = counter(
        "airclass_control_refused", "Control-plane requests refused, by reason.", labels=["reason"]
    )
    for reason, n in sorted(state.signature_failures.items()):
        refused.add_metric([reason], n)
    for endpoint, n in sorted(state.bad_requests.items()):
        refused.add_metric([f"bad request: {endpoint}"], n)
    yield refused
    yield counter(
        "airclass_token_refusals_no_node",
        "Token requests refused because no node was serving.",
        state.no_node,
    )


def install(app: web.Application, families: Callable[[], Iterable[Metric]]) -> HttpMetrics:
    """Give `app` a registry with `families` and the process metrics, and `GET /metrics`
    (behind `operator_only`: the app must hold an `OPERATOR` gate).
    The caller makes the returned middleware the app's only one (it also turns errors into
    JSON, see `HttpMetrics.middleware`)."""
    registry = new_registry()
    registry.register(StatsCollector(families))
    app[METRICS_REGISTRY] = registry
    app.router.add_get("/metrics", operator_only(metrics_handler))
    return HttpMetrics(registry)
