"""Soak: a live stream and many viewers for a long time; memory, files and tasks stay flat.

    python benchmarks/soak.py --minutes 30 --viewers 150

Starts a real slave and a real ffmpeg publisher on loopback, runs `python -m airclass.loadtest`
against it for the whole run, and every `--interval` seconds samples the slave's RSS and open
file descriptors (psutil) and its asyncio task count (`tasks` in /api/stats). After a warm-up
it compares the last window with the first (medians, 5 minutes each by default; shorter runs
use a third of the post-warm-up time) and exits 1 if RSS grew by `--max-rss-drift` % or more,
if open files other than TCP sockets, sockets of closed connections or tasks grew, or if any
viewer stalled. All open files are reported too, with the TCP connections behind them (two
descriptors each: the socket and the duplicate the fast path sends with), which follow the load
tester's pool of connections. Not part of CI: it takes the time it says.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import Cluster, http_json, publish, wait_for  # noqa: E402

KEYS = ("rss", "fds", "other_fds", "stale_sockets", "tcp_peers", "tasks", "threads",
        "connections")


def sample(proc: psutil.Process, api: str, started: float) -> dict[str, Any]:
    with proc.oneshot():
        rss = proc.memory_info().rss
        fds = proc.num_fds()
        threads = proc.num_threads()
    # A viewer's connection holds two descriptors (its socket and a duplicate), and the load
    # tester's pool of connections grows by one when more requests overlap than before: split
    # the descriptors so that such growth is not taken for a leak, while a socket left behind
    # by a closed connection (not established, not listening) is.
    tcp = proc.net_connections(kind="tcp")
    live = [c for c in tcp if c.status in (psutil.CONN_ESTABLISHED, psutil.CONN_LISTEN)]
    try:
        status, stats = http_json("GET", f"{api}/api/stats", timeout=5)
    except (OSError, urllib.error.URLError):
        status, stats = 0, {}
    return {
        "t": round(time.monotonic() - started, 1),
        "rss": rss,
        "fds": fds,
        "other_fds": fds - len(tcp),
        "stale_sockets": len(tcp) - len(live),
        "tcp_peers": len({(c.laddr, c.raddr) for c in live if c.raddr}),
        "threads": threads,
        "tasks": int(stats.get("tasks", -1)) if status == 200 else -1,
        "connections": int(stats.get("connections", 0)) if status == 200 else 0,
    }


def windows(
    samples: list[dict[str, Any]], warmup: float, window: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """The first and last window after the warm-up, and the window length used."""
    end = samples[-1]["t"]
    window = min(window, max(0.0, (end - warmup) / 3))
    first = [s for s in samples if warmup <= s["t"] < warmup + window]
    last = [s for s in samples if s["t"] > end - window]
    return first, last, window


def drift(
    samples: list[dict[str, Any]], warmup: float, window: float
) -> dict[str, Any]:
    first, last, used = windows(samples, warmup, window)
    if not first or not last:
        raise SystemExit("not enough samples after the warm-up: run longer")
    out: dict[str, Any] = {"window_s": used, "first_n": len(first), "last_n": len(last)}
    for key in KEYS:
        a = statistics.median(s[key] for s in first)
        b = statistics.median(s[key] for s in last)
        out[key] = {"first": a, "last": b, "growth": b - a,
                    "percent": round((b - a) / a * 100, 2) if a else 0.0}
    return out


def verdict(result: dict[str, Any], max_rss_drift: float) -> list[str]:
    """What failed (empty: the run is flat). Descriptors other than TCP sockets, sockets of
    closed connections, and tasks may wobble by a request or two in flight at the sample
    instant; a leak grows by one per viewer request and does not. All descriptors are reported:
    they also follow the load tester's pool of connections (two per connection)."""
    failures = []
    if result["rss"]["percent"] >= max_rss_drift:
        failures.append(f"RSS drift {result['rss']['percent']} % >= {max_rss_drift} %")
    for key, slack in (("other_fds", 3), ("stale_sockets", 3), ("tasks", 5)):
        first = result[key]["first"]
        if result[key]["growth"] > max(slack, 0.02 * first):
            failures.append(f"{key} grew from {first} to {result[key]['last']}")
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--viewers", type=int, default=150)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out at the start")
    p.add_argument("--window", type=float, default=300.0, help="seconds compared at each end")
    p.add_argument("--max-rss-drift", type=float, default=5.0, help="percent")
    p.add_argument("--json", metavar="FILE", help="write samples and the result as JSON")
    args = p.parse_args(argv)
    seconds = args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="airclass-soak-"))
    cluster = Cluster(tmp)
    publisher = loadtest = None
    try:
        slave = cluster.slave("--max-connections", str(args.viewers + 50), node_id="soak")
        assert slave.proc is not None
        publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}",
                            seconds + 120, log_path=tmp / "publisher.log")
        wait_for(lambda: "live/stream" in http_json("GET", f"{slave.api}/api/stats")[1]
                 .get("streams", {}), 30, what="the stream is live")
        time.sleep(6)  # a few segments, so the viewers start at once
        viewers_out = tmp / "viewers.json"
        loadtest = subprocess.Popen(
            [sys.executable, "-m", "airclass.loadtest", "--url", slave.api,
             "--viewers", str(args.viewers), "--duration", str(seconds), "--ramp", "10",
             "--quiet", "--fail-on-stall", "--json", str(viewers_out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        proc = psutil.Process(slave.proc.pid)
        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        print(f"soak: {args.viewers} viewers for {args.minutes:g} min; slave pid {proc.pid}; "
              f"logs in {tmp}", flush=True)
        print("     t  rss MiB   fds  tasks  threads  viewers", flush=True)
        while loadtest.poll() is None:
            s = sample(proc, slave.api, started)
            samples.append(s)
            print(f"{s['t']:6.0f} {s['rss'] / 2**20:8.1f} {s['fds']:5d} {s['tasks']:6d} "
                  f"{s['threads']:8d} {s['connections']:8d}", flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - started) % args.interval))
        output = loadtest.communicate()[0].decode(errors="replace")
        viewers = json.loads(viewers_out.read_text()) if viewers_out.exists() else {}
    finally:
        if loadtest is not None and loadtest.poll() is None:
            loadtest.kill()
            loadtest.wait()
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        cluster.close()

    result = drift(samples, args.warmup, args.window)
    failures = verdict(result, args.max_rss_drift)
    if loadtest.returncode != 0:
        failures.append(f"viewers stalled or failed (loadtest exit {loadtest.returncode})")
    mb = 2**20
    print(f"\nafter a {args.warmup:g} s warm-up, last {result['window_s']:.0f} s vs first "
          f"{result['window_s']:.0f} s (medians of {result['first_n']} and "
          f"{result['last_n']} samples):")
    print(f"  RSS     {result['rss']['first'] / mb:.1f} -> {result['rss']['last'] / mb:.1f} MiB "
          f"({result['rss']['percent']:+.2f} %)")
    for key in KEYS[1:]:
        print(f"  {key:<13} {result[key]['first']:g} -> {result[key]['last']:g}")
    print(f"  viewers: stalls {viewers.get('stalls')}, errors {viewers.get('errors')}, "
          f"segments {viewers.get('segments')}, segment fetch p99 "
          f"{viewers.get('segment_fetch_ms_p99')} ms")
    if loadtest.returncode != 0:
        print(output[-2000:])
    print("FAIL: " + "; ".join(failures) if failures else "PASS: flat")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"samples": samples, "result": result, "viewers": viewers, "failures": failures},
            indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
