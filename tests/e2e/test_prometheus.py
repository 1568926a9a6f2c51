"""Debian's real Prometheus, with the shipped scrape config pointed at a running master and
slave on loopback, finds the live viewer count of a real ffmpeg reader.

The nodes trust no network Prometheus is in, so it gets in only with the metrics token the
shipped config sends from its `credentials_file`; a job without it is refused."""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import (
    ROOT,
    Cluster,
    free_port,
    http_get,
    http_json,
    need,
    publish,
    wait_for,
)

pytestmark = pytest.mark.e2e


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    try:
        status, body, _ = http_get(f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
    except OSError:  # not listening yet
        return []
    if status != 200:
        return []
    data = json.loads(body)
    return list(data["data"]["result"])


def test_prometheus_scrapes_master_and_discovered_slaves(cluster: Cluster, tmp_path: Path) -> None:
    binary = need("prometheus")
    token_file = tmp_path / "metrics_token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n")
    # TEST-NET-1: no address Prometheus (or this test) scrapes from on loopback.
    access = ["--trusted-networks=192.0.2.0/24", f"--metrics-token-file={token_file}"]
    master = cluster.master("--heartbeat-interval", "1", "--heartbeat-timeout", "5", *access)
    slave = cluster.slave(
        "--heartbeat-interval", "1", *access, master=master, node_id="slave-1"
    )
    for url in (f"{master.api}/metrics", f"{master.api}/cluster/prometheus-targets",
                f"{slave.api}/metrics"):
        status, _body, headers = http_get(url)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), url
        bearer = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert http_get(url, headers=bearer)[0] == 200, url
    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 60)
    reader = None
    prom_proc = None
    try:
        status, reply = http_json(
            "POST", f"{master.api}/api/token", {"user_type": "student", "user_id": "yuna"}
        )
        assert status == 200, reply
        wait_for(lambda: http_get(reply["hls_url"])[0] == 200, 20, what="the stream")
        reader = subprocess.Popen(
            [need("ffmpeg"), "-v", "error", "-i", reply["hls_url"], "-f", "null", "-"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        shipped = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
        master_address = master.api.removeprefix("http://")
        # A job as the shipped config was before the token: refused (up == 0).
        shipped["scrape_configs"].append(
            {"job_name": "without-token", "static_configs": [{"targets": ["master:8000"]}]}
        )
        text = (
            yaml.safe_dump(shipped)
            .replace("master:8000", master_address)
            .replace("/run/secrets/metrics_token", str(token_file))
        )
        assert str(token_file) in text
        config = tmp_path / "prometheus.yml"
        config.write_text(text)
        port = free_port()
        prom = f"http://127.0.0.1:{port}"
        prom_proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

        def slave_viewers() -> list[dict[str, Any]]:
            return [
                r
                for r in query(prom, 'airclass_viewers{job="airclass-slave"}')
                if float(r["value"][1]) >= 1
            ]

        found = wait_for(slave_viewers, 60, interval=1, what="the slave's viewer in Prometheus")
        assert found[0]["metric"]["node_id"] == "slave-1"  # label from the master's discovery
        node = wait_for(
            lambda: [r for r in query(prom, "airclass_node_viewers") if float(r["value"][1]) >= 1],
            30,
            interval=1,
            what="the master's per-node viewers",
        )
        assert node[0]["metric"]["node_id"] == "slave-1"
        assert node[0]["metric"]["job"] == "airclass-master"
        # Each job is scraped on its own schedule: wait until every one has been once.
        def scraped() -> dict[str, str] | None:
            jobs = {r["metric"]["job"]: r["value"][1] for r in query(prom, "up")}
            return jobs if len(jobs) == 3 else None

        up = wait_for(scraped, 30, interval=1, what="a scrape of every job")
        assert up == {"airclass-master": "1", "airclass-slave": "1", "without-token": "0"}
    finally:
        for proc in (prom_proc, reader, publisher):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
