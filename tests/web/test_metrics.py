"""GET /metrics on a slave and a master: Prometheus text from prometheus_client, with the
names an operator's dashboards use, and values that follow what really happens."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from airclass.cluster.signing import sign
from airclass.config import Config
from airclass.web.master_app import create_master_app
from airclass.web.slave_app import SLAVE
from tests.hls.conftest import make_test_frames
from tests.web.conftest import PATH, Slave

SLAVE_METRICS = {
    "airclass_viewers",
    "airclass_capacity_viewers",
    "airclass_sessions_opened",
    "airclass_sessions_closed",
    "airclass_served_bytes",
    "airclass_cpu_usage_ratio",
    "airclass_memory_usage_ratio",
    "airclass_stream_viewers",
    "airclass_stream_served_bytes",
    "airclass_stream_publisher_connected",
    "airclass_ingest_frames",
    "airclass_ingest_bytes",
    "airclass_ingest_lag_seconds",
    "airclass_ingest_falls_behind",
    "airclass_stream_bitrate_bits_per_second",
    "airclass_stream_ring_bytes",
    "airclass_relay_lag_seconds",
    "airclass_http_requests",
    "airclass_segment_request_duration_seconds",
    "airclass_process_resident_memory_bytes",
    "airclass_process_cpu_seconds",
}
MASTER_METRICS = {
    "airclass_cluster_nodes",
    "airclass_cluster_viewers",
    "airclass_cluster_nodes_to_add",
    "airclass_node_viewers",
    "airclass_node_capacity_viewers",
    "airclass_node_load_ratio",
    "airclass_node_status",
    "airclass_node_cpu_usage_ratio",
    "airclass_node_memory_usage_ratio",
    "airclass_node_heartbeat_age_seconds",
    "airclass_tokens_issued",
    "airclass_routing_decisions",
    "airclass_http_requests",
}


def parse(text: str) -> dict[str, Any]:
    """{sample name: {labels tuple: value}} from the exposition text."""
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


async def scrape(client: Any) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    return str(await resp.text())


async def test_slave_metrics_follow_viewers_and_ingest(live: Slave) -> None:
    sid = await live.enter()
    for uri in ("media.m3u8", "0.ts", "1.ts"):
        resp = await live.client.get(f"/{PATH}/{sid}/{uri}")
        assert resp.status == 200
        await resp.read()
    await live.client.get("/no/such/path/at/all")
    text = await scrape(live.client)
    assert SLAVE_METRICS - {"airclass_relay_lag_seconds"} <= families(text)
    samples = parse(text)
    stream = (("stream", PATH),)
    assert samples["airclass_viewers"][()] == 1
    assert samples["airclass_stream_viewers"][stream] == 1
    assert samples["airclass_stream_publisher_connected"][stream] == 1
    served = sum(len(live.packager().segment(n).data) for n in (0, 1))  # type: ignore[union-attr]
    assert samples["airclass_served_bytes_total"][()] == served
    assert samples["airclass_stream_served_bytes_total"][stream] == served
    assert samples["airclass_ingest_frames_total"][(("kind", "video"), *stream)] > 200
    assert samples["airclass_ingest_bytes_total"][stream] > 0
    assert samples["airclass_stream_ring_bytes"][stream] == live.packager().total_bytes
    # The frames came in faster than real time: the publisher was never behind.
    assert samples["airclass_ingest_lag_seconds"][stream] == 0
    assert samples["airclass_ingest_falls_behind_total"][stream] == 0
    assert samples["airclass_segment_request_duration_seconds_count"][()] == 2
    route = "/{app}/{stream}/{sid}/{seq}.ts"
    assert (
        samples["airclass_http_requests_total"][
            (("method", "GET"), ("route", route), ("status", "200"))
        ]
        == 2
    )
    assert (
        samples["airclass_http_requests_total"][
            (("method", "GET"), ("route", "unmatched"), ("status", "404"))
        ]
        == 1
    )
    assert samples["airclass_process_resident_memory_bytes"][()] > 10e6


async def test_master_metrics_and_service_discovery(aiohttp_client: Any) -> None:
    cluster_key = secrets.token_urlsafe(32)
    config = Config(
        role="master",
        node_id="master",
        public_host="127.0.0.1",
        secret_key=secrets.token_urlsafe(32),
        cluster_key=cluster_key,
    )
    client = await aiohttp_client(create_master_app(config))
    for node_id, port in (("slave-a", 18001), ("slave-b", 18002)):
        body = json.dumps(
            {
                "node_id": node_id,
                "api_url": f"http://127.0.0.1:{port}",
                "hls_url": f"http://127.0.0.1:{port + 100}",
                "rtmp_url": "rtmp://127.0.0.1:1935",
                "max_connections": 150,
            }
        ).encode()
        resp = await client.post(
            "/cluster/register",
            data=body,
            headers=sign(cluster_key, "POST", "/cluster/register", body, time.time()),
        )
        assert resp.status == 200, await resp.text()
    for user in ("a", "b", "c"):
        resp = await client.post("/api/token", json={"user_type": "student", "user_id": user})
        assert resp.status == 200
    resp = await client.get("/cluster/prometheus-targets")
    assert await resp.json() == [
        {"targets": ["127.0.0.1:18001"], "labels": {"node_id": "slave-a", "role": "slave"}},
        {"targets": ["127.0.0.1:18002"], "labels": {"node_id": "slave-b", "role": "slave"}},
    ]
    text = await scrape(client)
    assert families(text) >= MASTER_METRICS
    samples = parse(text)
    assert samples["airclass_cluster_nodes"][()] == 2
    assert samples["airclass_tokens_issued_total"][(("user_type", "student"),)] == 3
    routed = samples["airclass_routing_decisions_total"]
    assert sorted(routed.values()) == [1, 2]
    assert samples["airclass_node_status"][(("node_id", "slave-a"), ("status", "healthy"))] == 1
    assert samples["airclass_node_status"][(("node_id", "slave-a"), ("status", "offline"))] == 0
    assert samples["airclass_node_capacity_viewers"][(("node_id", "slave-b"),)] == 150


async def test_a_publisher_that_falls_behind_shows_in_metrics_stats_and_the_log(
    slave: Slave, caplog: Any
) -> None:
    video, audio, frames = make_test_frames(3.0)
    pub = slave.app[SLAVE].streams.hub.publish(PATH, "test")
    stream = slave.app[SLAVE].streams.get(PATH)
    assert stream is not None
    late = 0.0
    arrival = 0.0
    stream._monotonic = lambda: arrival
    pub.send_video_config(video)
    pub.send_audio_config(audio)
    for frame in frames:
        # Two seconds on time, then the encoder stands still 1.5 s and what follows is late.
        if frame.dts >= 2000:
            late = 1.5
        arrival = 500.0 + frame.dts / 1000 + late
        pub.send(frame)
    samples = parse(await scrape(slave.client))
    stream_label = (("stream", PATH),)
    assert samples["airclass_ingest_lag_seconds"][stream_label] == pytest.approx(1.5, abs=0.01)
    assert samples["airclass_ingest_falls_behind_total"][stream_label] == 1
    info = (await slave.stats())["streams"][PATH]
    assert info["ingest_lag"] == pytest.approx(1.5, abs=0.01)
    assert info["ingest_falls_behind"] == 1
    assert "the publisher is 1.5 s behind real time, viewers may stall" in caplog.text
