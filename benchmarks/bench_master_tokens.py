"""Throughput and latency of `POST /api/token` on a real master process.

    python benchmarks/bench_master_tokens.py [--requests 6000] [--concurrency 64]
                                              [--burst 1500] [--burst-seconds 1]

Starts `python -m airclass.master` on a free loopback port (pinned to one CPU, `--cpu`,
when the machine has more than one), registers fake slaves with signed `POST /cluster/register`
calls (and keeps them alive with signed heartbeats), then measures:

1. closed loop: `--requests` student token requests with `--concurrency` in flight;
   prints tokens/s and latency p50/p99;
2. burst: `--burst` students arriving evenly within `--burst-seconds` (open loop: each
   latency is counted from the moment the student was due, so a slow master cannot hide
   its queue); prints p50/p99/max.

Goals (issue "Master"): >= 2,000 tokens/s on one core, p99 < 50 ms during a 1,500-student
burst. The exit status is 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airclass.cluster.signing import sign  # noqa: E402
from airclass.measure import percentile  # noqa: E402
from airclass.ports import free_port  # noqa: E402

GOAL_TOKENS_PER_S = 2000.0
GOAL_BURST_P99_MS = 50.0


def start_master(port: int, cluster_key: str, cpu: int | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        SECRET_KEY=secrets.token_urlsafe(32),
        CLUSTER_KEY=cluster_key,
        TEACHER_PASSWORD=secrets.token_urlsafe(12),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "airclass.master", "--bind", "127.0.0.1",
           "--public-host", "127.0.0.1", "--api-port", str(port), "--node-id", "bench-master"]

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=pin)


async def wait_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
                       ) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("master exited")
        try:
            async with session.get(f"{base}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("master did not become healthy")


async def signed_post(session: aiohttp.ClientSession, base: str, key: str, path: str,
                      body: dict[str, Any]) -> int:
    data = json.dumps(body).encode()
    headers = sign(key, "POST", path, data, time.time())
    headers["Content-Type"] = "application/json"
    async with session.post(base + path, data=data, headers=headers) as resp:
        await resp.read()
        return resp.status


async def register_nodes(session: aiohttp.ClientSession, base: str, key: str, count: int,
                         capacity: int) -> list[str]:
    ids = [f"bench-slave-{i}" for i in range(count)]
    for i, node_id in enumerate(ids):
        status = await signed_post(session, base, key, "/cluster/register", {
            "node_id": node_id,
            "api_url": f"http://10.0.0.{i + 10}:8000",
            "hls_url": f"http://10.0.0.{i + 10}:8888",
            "rtmp_url": f"rtmp://10.0.0.{i + 10}:1935",
            "max_connections": capacity,
            "stats": {"connections": 0, "cpu": 5.0, "memory": 20.0, "sessions_opened": 0},
        })
        if status != 200:
            raise RuntimeError(f"register {node_id}: HTTP {status}")
    return ids


async def heartbeats(session: aiohttp.ClientSession, base: str, key: str, ids: list[str]
                     ) -> None:
    while True:
        await asyncio.sleep(5)
        for node_id in ids:
            await signed_post(session, base, key, "/cluster/stats", {
                "node_id": node_id,
                "stats": {"connections": 0, "cpu": 5.0, "memory": 20.0, "sessions_opened": 0},
            })


class TokenClient:
    """A minimal HTTP/1.1 keep-alive client for `POST /api/token`.

    aiohttp's client costs about as much CPU per request as the server, so on a two-core
    machine it, not the master, would set the pace. This one writes the request bytes and
    reads `Content-Length` bytes back, which is all the benchmark needs.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def token(self, i: int) -> str:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps({"user_type": "student", "user_id": f"student-{i}",
                           "stream": "live/stream"}).encode()
        writer.write(
            b"POST /api/token HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (self.host.encode(), self.port, len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = json.loads(await reader.readexactly(length))
        self._idle.append((reader, writer))
        if status != 200:
            raise RuntimeError(f"token: HTTP {status} {data}")
        return str(data["node_id"])

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def closed_loop(client: TokenClient, total: int, concurrency: int
                      ) -> tuple[float, list[float], Counter[str]]:
    latencies: list[float] = []
    nodes: Counter[str] = Counter()
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            nodes[await client.token(i)] += 1
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, nodes


async def burst(client: TokenClient, students: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter() + 0.05

    async def student(i: int) -> None:
        due = start + seconds * i / students
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.token(100_000 + i)
        latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(student(i) for i in range(students)))
    return latencies


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    key = secrets.token_urlsafe(32)
    cpus = sorted(os.sched_getaffinity(0))
    master_cpu = args.cpu if args.cpu is not None else (cpus[-1] if len(cpus) > 1 else None)
    if master_cpu is not None and master_cpu < 0:
        master_cpu = None
    proc = start_master(port, key, master_cpu)
    base = f"http://127.0.0.1:{port}"
    try:
        connector = aiohttp.TCPConnector(limit=max(args.concurrency, 256))
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_healthy(session, base, proc)
            ids = await register_nodes(session, base, key, args.nodes, 1_000_000)
            beat = asyncio.create_task(heartbeats(session, base, key, ids))
            client = TokenClient("127.0.0.1", port)
            await closed_loop(client, 300, args.concurrency)  # warm-up
            master = psutil.Process(proc.pid)
            cpu_before = sum(master.cpu_times()[:2])
            elapsed, latencies, nodes = await closed_loop(client, args.requests, args.concurrency)
            cpu_used = sum(master.cpu_times()[:2]) - cpu_before
            rate = args.requests / elapsed
            p50 = percentile(latencies, 50) * 1000
            p99 = percentile(latencies, 99) * 1000
            print(f"master pinned to CPU {master_cpu}" if master_cpu is not None
                  else "master not pinned")
            print(f"closed loop: {args.requests} tokens, concurrency {args.concurrency}, "
                  f"{args.nodes} nodes: {rate:,.0f} tokens/s, "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            print(f"  master CPU: {cpu_used:.2f} s for {args.requests} tokens = "
                  f"{args.requests / cpu_used:,.0f} tokens per CPU-second "
                  f"({cpu_used / elapsed * 100:.0f} % of one core while measured)")
            spread = sorted(nodes.values())
            print(f"  spread over nodes: min {spread[0]}, max {spread[-1]}")
            burst_lat = await burst(client, args.burst, args.burst_seconds)
            b50 = percentile(burst_lat, 50) * 1000
            b99 = percentile(burst_lat, 99) * 1000
            print(f"burst: {args.burst} students in {args.burst_seconds:g} s: "
                  f"p50 {b50:.1f} ms, p99 {b99:.1f} ms, max {max(burst_lat) * 1000:.1f} ms, "
                  f"mean {statistics.fmean(burst_lat) * 1000:.1f} ms")
            beat.cancel()
            await client.close()
    finally:
        proc.terminate()
        proc.wait(10)
    ok = rate >= GOAL_TOKENS_PER_S and b99 < GOAL_BURST_P99_MS
    print(f"goals (>= {GOAL_TOKENS_PER_S:,.0f} tokens/s, burst p99 < {GOAL_BURST_P99_MS:g} ms): "
          + ("met" if ok else "MISSED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1500)
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU to pin the master to (default: the last one; -1: no pinning)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
