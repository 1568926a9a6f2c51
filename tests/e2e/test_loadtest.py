"""The load tester against a real slave and a real ffmpeg publisher (small and short)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Cluster, http_get, publish, wait_for

pytestmark = pytest.mark.e2e


def test_loadtest_reports_viewers_without_stalls(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave()
    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 40)
    try:
        wait_for(
            lambda: http_get(f"{slave.api}/api/stats")[1].find(b'"live"') >= 0, 15, what="segments"
        )
        out = tmp_path / "summary.json"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "airclass.loadtest",
                "--url",
                slave.api,
                "--viewers",
                "12",
                "--duration",
                "12",
                "--ramp",
                "1",
                "--json",
                str(out),
                "--fail-on-stall",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        summary = json.loads(out.read_text())
        assert summary["viewers"] == summary["viewers_started"] == 12
        assert summary["stalls"] == 0 and summary["errors"] == 0
        assert summary["segments"] >= 12 * 4
        assert summary["by_node"] == {"slave-1": 12}
        assert 0 < summary["segment_fetch_ms_p50"] <= summary["segment_fetch_ms_p99"]
        assert summary["nodes"]["slave-1"]["rss_mb_max"] > 10
        assert "stalls             0" in run.stdout
    finally:
        publisher.kill()
        publisher.wait()


def test_loadtest_fails_on_stall_when_the_stream_stops(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave()
    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 9)
    try:
        wait_for(
            lambda: http_get(f"{slave.api}/api/stats")[1].find(b'"live"') >= 0, 15, what="segments"
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "airclass.loadtest",
                "--url",
                slave.api,
                "--viewers",
                "3",
                "--duration",
                "16",
                "--ramp",
                "0",
                "--fail-on-stall",
                "--quiet",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "stalls             0 " not in run.stdout
    finally:
        publisher.kill()
        publisher.wait()
