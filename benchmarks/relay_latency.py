"""Relay added latency and failover stall, with real processes on loopback.

    python benchmarks/relay_latency.py [--seconds 60] [--segment 1] [--runs 3]

1. Added latency: a master, an origin slave and an edge slave; ffmpeg publishes to the origin.
   Two observers long-poll the relay endpoint of each node (signed with the cluster key), which
   answers the moment a segment enters that node's ring, i.e. the moment its playlist lists
   it. latency = edge listing time - origin listing time, per segment; p50/p99/max printed.
   Both observers run in this process on one clock, so nothing but the relay is measured.
2. Failover stall: the browser test's scenario (Chromium + hls.js, SIGKILL of the student's
   node) `--runs` times; the longest time video.currentTime stood still in each run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airclass.cluster.relay_wire import H_SEQUENCE, RELAY_PREFIX  # noqa: E402
from airclass.cluster.signing import sign  # noqa: E402
from airclass.measure import percentile  # noqa: E402
from tests.e2e.conftest import Cluster, http_json, publish, wait_for  # noqa: E402

PATH = "live/stream"


async def observe(base: str, key: str, seen: dict[int, float], stop: float) -> None:
    """Record when each segment appears on the node at `base` (long poll, no interval)."""
    after = -1
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < stop:
            path_qs = f"{RELAY_PREFIX}/{PATH}?after={after}&wait=5"
            headers = sign(key, "GET", path_qs, b"", time.time())
            async with session.get(base + path_qs, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    sequence = int(resp.headers[H_SEQUENCE])
                    seen.setdefault(sequence, time.monotonic())
                    after = sequence
                elif resp.status != 204:
                    await asyncio.sleep(0.1)


def added_latency(seconds: float, segment: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp))
        try:
            master = cluster.master("--heartbeat-interval", "1", "--heartbeat-timeout", "3")
            args = ("--heartbeat-interval", "1", "--segment-duration", str(segment))
            origin = cluster.slave(*args, node_id="origin", master=master)
            edge = cluster.slave(*args, node_id="edge", master=master)
            gop = max(1, round(25 * segment))
            publisher = publish(f"{origin.rtmp}/live/stream?key={cluster.stream_key}",
                                seconds + 30, gop=gop)
            try:
                def edge_serves() -> bool:
                    _, stats = http_json("GET", f"{edge.api}/api/stats")
                    info = stats["streams"].get(PATH)
                    return bool(info and info.get("media_sequence") is not None)

                wait_for(edge_serves, 30, what="the edge to relay the stream")
                origin_seen: dict[int, float] = {}
                edge_seen: dict[int, float] = {}
                stop = time.monotonic() + seconds

                async def both() -> None:
                    await asyncio.gather(
                        observe(origin.api, cluster.cluster_key, origin_seen, stop),
                        observe(edge.api, cluster.cluster_key, edge_seen, stop),
                    )

                asyncio.run(both())
            finally:
                publisher.kill()
                publisher.wait(5)
        finally:
            cluster.close()
    # The first answers are the rings copied at start, not live segments: skip them.
    first_live = max(min(origin_seen), min(edge_seen)) + 8
    return [
        edge_seen[seq] - origin_seen[seq]
        for seq in sorted(origin_seen)
        if seq >= first_live and seq in edge_seen
    ]


def failover_stalls(runs: int) -> list[tuple[float, str]]:
    import http.server
    import threading

    from tests.e2e.conftest import free_port
    from tests.e2e.test_failover_browser import _PageHandler, run_failover

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{server.server_address[1]}"
    results: list[tuple[float, str]] = []
    try:
        for run in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                cluster = Cluster(Path(tmp))
                try:
                    result = run_failover(cluster, Path(tmp), page)
                finally:
                    cluster.close()
            note = (f"sn {result.last_sn_before}->{result.first_sn_after}, "
                    f"{result.advanced:.1f} s played after the kill")
            print(f"  run {run + 1}: stall {result.stall:.2f} s ({note})", flush=True)
            results.append((result.stall, note))
    finally:
        server.shutdown()
        server.server_close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="latency sampling time")
    parser.add_argument("--segment", type=float, default=1.0, help="segment duration, s")
    parser.add_argument("--runs", type=int, default=3, help="failover runs (0 to skip)")
    args = parser.parse_args()

    print(f"relay added latency ({args.seconds:g} s, {args.segment:g}-s segments, "
          "origin listing -> edge listing):", flush=True)
    latencies = added_latency(args.seconds, args.segment)
    ms = [v * 1000 for v in latencies]
    print(f"  segments {len(ms)}  p50 {percentile(ms, 50):.1f} ms  "
          f"p99 {percentile(ms, 99):.1f} ms  max {max(ms):.1f} ms  "
          f"mean {statistics.fmean(ms):.1f} ms", flush=True)
    if args.runs > 0:
        print(f"failover stall (Chromium + hls.js, SIGKILL of the student's node, "
              f"{args.runs} runs):", flush=True)
        stalls = [stall for stall, _ in failover_stalls(args.runs)]
        print(f"  stall median {statistics.median(stalls):.2f} s  max {max(stalls):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
