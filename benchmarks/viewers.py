"""Many viewers on one slave: stalls, slave CPU and memory, with `python -m airclass.loadtest`.

    python benchmarks/viewers.py [--viewers 150] [--duration 60] [--ramp 10] [--low-latency]
                                 [--slave-arg=...]

Starts one slave on free loopback ports, publishes a pre-encoded 720p30 stream at 1.6 Mbit/s
(1500 kbit/s H.264 + 96 kbit/s AAC, looped with `ffmpeg -re -c copy`), waits for its first
segments, then runs the load tester as a separate process (each simulated viewer gets its own
token and session from the slave's token API, fetches the playlist and every new segment at
the live edge, and counts a stall when its buffer would run dry). Meanwhile the slave's CPU
(% of one core) and RSS are sampled with psutil every second.

Targets (issue "Benchmark suite"): 150 viewers: 0 stalls and slave CPU < 20 % of one core;
1,000 viewers: slave RSS < 200 MB. The load tester runs on the same two cores as the slave, so
with many viewers the client, not the slave, may be what falls behind: its own CPU is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    ROOT,
    STREAM,
    publish,
    source_file,
    stop_process,
)
from tests.e2e.conftest import Cluster, http_get, wait_for


def sample(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MB) over the next `seconds`."""
    before, t0 = proc.cpu_times(), time.perf_counter()
    time.sleep(seconds)
    after, t1 = proc.cpu_times(), time.perf_counter()
    busy = after.user + after.system - before.user - before.system
    return busy / (t1 - t0) * 100, proc.memory_info().rss / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=150)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--slave-arg", action="append", default=[],
                        help="extra flag for the slave, e.g. --slave-arg=--no-low-latency")
    parser.add_argument("--low-latency", action="store_true",
                        help="viewers fetch LL-HLS parts with blocking reloads, like hls.js "
                             "in lowLatencyMode (default: whole segments)")
    args = parser.parse_args()
    source = source_file(30, video_kbps=1500, audio_kbps=96)
    with tempfile.TemporaryDirectory(prefix="airclass-viewers-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            node = cluster.slave(
                "--max-connections", str(max(150, args.viewers)), *args.slave_arg,
                node_id="bench",
            )
            assert node.proc is not None
            slave = psutil.Process(node.proc.pid)
            rss_idle = slave.memory_info().rss / 1e6
            publisher = publish(
                source, f"{node.rtmp}/{STREAM}?key={cluster.stream_key}", loop=True
            )
            try:
                # The entry playlist needs a token: wait for the stream through the stats
                # API, then for three 2 s segments.
                def live() -> bool:
                    status, body, _ = http_get(f"{node.api}/api/stats", 2)
                    return status == 200 and b"bench" in body and time.monotonic() > ready_at

                ready_at = time.monotonic() + 6.0  # three 2 s segments
                wait_for(live, 60, 0.5, "the stream to be live")
                cpu_publish, _ = sample(slave, 3.0)
                out_json = Path(tmp) / "loadtest.json"
                cmd = [sys.executable, "-m", "airclass.loadtest", "--url", node.api,
                       "--stream", STREAM, "--viewers", str(args.viewers),
                       "--duration", str(args.duration), "--ramp", str(args.ramp),
                       "--api", node.api, "--quiet", "--json", str(out_json)]
                if args.low_latency:
                    cmd.append("--low-latency")
                print(f"loadtest: {args.viewers} viewers for {args.duration} s "
                      f"(ramp {args.ramp:g} s) ...", flush=True)
                client = subprocess.Popen(cmd, cwd=ROOT)
                client_ps = psutil.Process(client.pid)
                client_cpu0 = client_cpu1 = client_ps.cpu_times()
                cpus: list[float] = []
                rss: list[float] = []
                t_start = time.monotonic()
                while client.poll() is None:
                    cpu, mem = sample(slave, 1.0)
                    # Steady state only: after the ramp, before the tester winds down.
                    elapsed = time.monotonic() - t_start
                    if args.ramp + 2 < elapsed < args.ramp + args.duration:
                        cpus.append(cpu)
                    rss.append(mem)
                    with contextlib.suppress(psutil.Error):
                        client_cpu1 = client_ps.cpu_times()
                client.wait(30)
                client_secs = (client_cpu1.user + client_cpu1.system
                               - client_cpu0.user - client_cpu0.system)
                result: dict[str, Any] = (json.loads(out_json.read_text())
                                          if out_json.exists() else {})
            finally:
                stop_process(publisher)
        finally:
            cluster.close()

    steady = cpus or [0.0]
    figures = {
        "viewers": args.viewers,
        "duration_s": args.duration,
        "slave_cpu_mean_pct": statistics.fmean(steady),
        "slave_cpu_max_pct": max(steady),
        "slave_cpu_publish_only_pct": cpu_publish,
        "slave_rss_idle_mb": rss_idle,
        "slave_rss_max_mb": max(rss or [0.0]),
        "client_cpu_pct": client_secs / max(1.0, time.monotonic() - t_start) * 100,
        "loadtest_exit": client.returncode,
        "loadtest": result,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "loadtest"}, indent=2))
    keys = ("viewers_started", "stalls", "viewers_with_stalls", "errors",
            "segment_fetch_ms_p50", "segment_fetch_ms_p99", "playlist_age_s_p50", "mbit_per_s")
    print("loadtest:", {k: result.get(k) for k in keys if k in result} or result)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
