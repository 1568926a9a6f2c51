"""`python -m airclass.loadtest`: simulated viewers that behave like hls.js at the live edge.

Each viewer gets its own token (from a master or slave URL) or uses the given `hls_url`, reads
the entry playlist, then reloads the media playlist about once per target duration and fetches
every new segment, as a player does. When its node stops answering (connection refused or
reset, a timeout, a 5xx) it moves to the next variant of the entry playlist, as hls.js does
with redundant streams, and carries on from the same media sequence.

Playback is simulated: the viewer starts playing once it holds `start_segments` segments
(three target durations back from the live edge, like hls.js) and plays in real time; a stall
is a moment when its buffer runs dry.

Reports stalls, segment fetch time p50/p99, playlist age (how far behind the wall clock the
newest listed segment ends, from EXT-X-PROGRAM-DATE-TIME), bytes/s, and the serving nodes'
CPU and memory (their /api/stats, which come from psutil on each node).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from airclass.hls.reader import Playlist, parse_media_playlist
from airclass.measure import percentile

log = logging.getLogger("airclass.loadtest")


@dataclass
class ViewerResult:
    name: str
    node_id: str = ""
    segments: int = 0
    bytes: int = 0
    stalls: int = 0
    stalled_seconds: float = 0.0
    errors: int = 0
    fetch_times: list[float] = field(default_factory=list)
    playlist_ages: list[float] = field(default_factory=list)
    started: bool = False
    failovers: int = 0
    parts: int = 0


def first_variant(text: str) -> str:
    return variants(text)[0]


def variants(text: str) -> list[str]:
    """The variant URIs of a multivariant playlist, in order (the first is the primary)."""
    found = [line for line in text.splitlines() if line and not line.startswith("#")]
    if not found:
        raise ValueError("multivariant playlist without a variant")
    return found


class NodeDown(Exception):
    """The serving node did not answer (refused, reset, timed out, or a 5xx)."""


_NODE_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class Viewer:
    def __init__(
        self,
        name: str,
        session: aiohttp.ClientSession,
        hls_url: str,
        result: ViewerResult,
        deadline: float,
        start_segments: int,
        low_latency: bool = False,
    ) -> None:
        self.low_latency = low_latency
        self.name = name
        self.http = session
        self.hls_url = hls_url
        self.result = result
        self.deadline = deadline
        self.start_segments = start_segments
        self.buffer = 0.0
        """Seconds of media downloaded and not yet played."""
        self.playing_since: float | None = None
        self.last_tick = 0.0

    def _advance(self, now: float) -> None:
        """Play the buffer in real time; count a stall when it runs dry."""
        if self.playing_since is None:
            return
        elapsed = now - self.last_tick
        self.last_tick = now
        if elapsed <= self.buffer:
            self.buffer -= elapsed
            return
        self.result.stalls += 1
        self.result.stalled_seconds += elapsed - self.buffer
        self.buffer = 0.0
        self.playing_since = None  # rebuffer: wait for start_segments again, like a player

    async def _get(self, url: str) -> bytes:
        try:
            async with self.http.get(url) as resp:
                if resp.status >= 500:
                    raise NodeDown(f"HTTP {resp.status}")
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                return await resp.read()
        except _NODE_ERRORS as exc:
            raise NodeDown(type(exc).__name__) from exc

    def _fail_over(self, media_urls: list[str], current: int, why: NodeDown) -> int:
        """The next variant's index (wrapping), counted as a failover when there is one."""
        if len(media_urls) < 2:
            return current
        following = (current + 1) % len(media_urls)
        self.result.failovers += 1
        log.info("%s: %s did not answer (%s); switching to %s", self.name,
                 urlsplit(media_urls[current]).netloc, why, urlsplit(media_urls[following]).netloc)
        return following

    async def run(self) -> None:
        entry = await self._entry()
        media_urls = [urljoin(self.hls_url, uri) for uri in variants(entry.decode())]
        current = 0
        have = -1
        pending = 0
        while time.monotonic() < self.deadline:
            loop_start = time.monotonic()
            media_url = media_urls[current]
            try:
                playlist = parse_media_playlist((await self._get(media_url)).decode())
            except NodeDown as exc:
                self.result.errors += 1
                current = self._fail_over(media_urls, current, exc)
                await asyncio.sleep(0.5 if len(media_urls) < 2 else 0.0)
                continue
            except (aiohttp.ClientError, ValueError):
                self.result.errors += 1
                await asyncio.sleep(0.5)
                continue
            if self.low_latency and playlist.parts:
                await self._run_ll(media_urls, current, playlist)
                return
            now_wall = time.time()
            if playlist.segments:
                last = playlist.segments[-1]
                if last[3] is not None:
                    self.result.playlist_ages.append(now_wall - (last[3] + last[1]))
            if have < 0 and playlist.segments:
                # Start like hls.js: three target durations back from the live edge.
                have = playlist.segments[max(0, len(playlist.segments) - 3)][0] - 1
            for sequence, duration, uri, _ in playlist.segments:
                if sequence <= have:
                    continue
                try:
                    t1 = await self._fetch_media(urljoin(media_url, uri), duration)
                except NodeDown as exc:
                    current = self._fail_over(media_urls, current, exc)
                    break
                if t1 is None:
                    break
                self.result.segments += 1
                have = sequence
                pending += 1
                if self.playing_since is None and pending >= self.start_segments:
                    self.playing_since = self.last_tick = t1
                    self.result.started = True
            if self.playing_since is not None:
                pending = 0
            if playlist.ended:
                break
            # hls.js reloads a live playlist about once per target duration (half when unchanged).
            wait = max(0.1, playlist.target / 2 - (time.monotonic() - loop_start))
            await asyncio.sleep(min(wait, max(0.0, self.deadline - time.monotonic())))
            self._advance(time.monotonic())

    async def _fetch_media(self, url: str, duration: float) -> float | None:
        """Fetch one segment or part and buffer its `duration`; the time it arrived, or None
        after a counted client error. NodeDown propagates (the caller fails over)."""
        t0 = time.monotonic()
        try:
            data = await self._get(url)
        except NodeDown:
            self.result.errors += 1
            raise
        except aiohttp.ClientError:
            self.result.errors += 1
            return None
        t1 = time.monotonic()
        self._advance(t1)
        self.result.fetch_times.append(t1 - t0)
        self.result.bytes += len(data)
        self.buffer += duration
        return t1

    async def _run_ll(self, media_urls: list[str], current: int, playlist: Playlist) -> None:
        """An LL-HLS player: from the newest independent part, fetch every part in order and
        ask for the next one with a blocking reload (`_HLS_msn`/`_HLS_part`); play once
        PART-HOLD-BACK is buffered."""
        start = [p for p in playlist.parts if p[1] == 0]
        position = (start[-1][0], 0) if start else (playlist.parts[-1][0] + 1, 0)
        hold_back = playlist.part_hold_back or 1.0
        while time.monotonic() < self.deadline:
            media_url = media_urls[current]
            for sequence, index, duration, uri in playlist.parts:
                if (sequence, index) < position:
                    continue
                try:
                    t1 = await self._fetch_media(urljoin(media_url, uri), duration)
                except NodeDown as exc:
                    current = self._fail_over(media_urls, current, exc)
                    break
                if t1 is None:
                    break
                self.result.parts += 1
                position = (sequence, index + 1)
                if self.playing_since is None and self.buffer >= hold_back:
                    self.playing_since = self.last_tick = t1
                    self.result.started = True
            if playlist.ended:
                break
            # The part after the last one of a finished segment is the next segment's first.
            if any(s[0] == position[0] for s in playlist.segments):
                position = (position[0] + 1, 0)
            query = f"_HLS_msn={position[0]}&_HLS_part={position[1]}"
            try:
                body = await self._get(f"{media_urls[current]}?{query}")
                playlist = parse_media_playlist(body.decode())
            except NodeDown as exc:
                self.result.errors += 1
                current = self._fail_over(media_urls, current, exc)
                await asyncio.sleep(0.5 if len(media_urls) < 2 else 0.0)
            except (aiohttp.ClientError, ValueError):
                self.result.errors += 1
                await asyncio.sleep(0.5)
            now = time.monotonic()
            self._advance(now)
            if playlist.segments and playlist.segments[-1][3] is not None:
                last = playlist.segments[-1]
                self.result.playlist_ages.append(time.time() - (last[3] + last[1]))  # type: ignore[operator]

    async def _entry(self) -> bytes:
        for _ in range(60):
            async with self.http.get(self.hls_url) as resp:
                if resp.status == 200:
                    self.result.node_id = self.result.node_id or urlsplit(str(resp.url)).netloc
                    return await resp.read()
                if resp.status not in (404, 503):
                    raise RuntimeError(f"{self.name}: entry playlist answered {resp.status}")
            await asyncio.sleep(1.0)
        raise RuntimeError(f"{self.name}: stream did not start")


async def get_token(
    session: aiohttp.ClientSession, base: str, user_id: str, stream: str, class_code: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"user_type": "student", "user_id": user_id, "stream": stream}
    if class_code:
        body["class_code"] = class_code
    async with session.post(f"{base}/api/token", json=body) as resp:
        reply: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"token request failed: {resp.status} {reply}")
        return reply


def operator_headers(token_file: str | None) -> dict[str, str]:
    """The Authorization header for the nodes' /api/stats and /cluster/nodes, which answer
    without one only to their trusted networks."""
    if not token_file:
        return {}
    with open(token_file, encoding="ascii") as file:
        return {"Authorization": f"Bearer {file.read().strip()}"}


async def node_stats(
    session: aiohttp.ClientSession, api_urls: list[str], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for url in api_urls:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            async with session.get(f"{url}/api/stats", headers=headers) as resp:
                if resp.status == 200:
                    data = await resp.json()
                    out[data.get("node_id", url)] = data
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30, sock_connect=5)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    headers = operator_headers(args.token_file)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        url = args.url.rstrip("/")
        results = [ViewerResult(f"viewer-{i + 1}") for i in range(args.viewers)]
        if ".m3u8" in url:
            hls_urls = [args.url] * args.viewers
            api_urls = args.api or []
        else:
            sem = asyncio.Semaphore(64)

            async def one(i: int) -> str:
                async with sem:
                    reply = await get_token(
                        http, url, f"loadtest-{i + 1}", args.stream, args.class_code
                    )
                    results[i].node_id = reply["node_id"]
                    return str(reply["hls_url"])

            hls_urls = list(await asyncio.gather(*(one(i) for i in range(args.viewers))))
            api_urls = args.api or [url]
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                async with http.get(f"{url}/cluster/nodes", headers=headers) as resp:
                    if resp.status == 200:
                        for node in (await resp.json()).get("nodes", []):
                            if node.get("api_url"):
                                api_urls.append(node["api_url"])
        start = time.monotonic()
        deadline = start + args.duration
        viewers = [
            Viewer(r.name, http, u, r, deadline, args.start_segments, args.low_latency)
            for r, u in zip(results, hls_urls, strict=True)
        ]
        tasks = []
        for i, viewer in enumerate(viewers):
            tasks.append(asyncio.create_task(viewer.run()))
            if args.ramp and i + 1 < len(viewers):
                await asyncio.sleep(args.ramp / len(viewers))
        samples: list[dict[str, Any]] = []
        await node_stats(http, api_urls, headers)  # primes each node's CPU counter
        while not all(t.done() for t in tasks):
            await asyncio.sleep(min(args.progress, max(0.05, deadline - time.monotonic() + 1)))
            stats = await node_stats(http, api_urls, headers)
            if stats:
                samples.append(stats)
            if not args.quiet:
                elapsed = time.monotonic() - start
                segs = sum(r.segments for r in results)
                stalls = sum(r.stalls for r in results)
                rate = sum(r.bytes for r in results) * 8 / max(elapsed, 1e-9) / 1e6
                conns = sum(int(s.get("connections", 0)) for s in stats.values())
                cpu = ", ".join(
                    f"{n} {s.get('process_cpu', 0):.0f}%" for n, s in sorted(stats.items())
                )
                print(
                    f"\r[{elapsed:5.0f}s] viewers {len(viewers)} counted {conns} segments {segs} "
                    f"stalls {stalls} {rate:7.1f} Mbit/s cpu {cpu}   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        if not args.quiet:
            print(file=sys.stderr)
        failures = [t.exception() for t in tasks if t.exception() is not None]
        elapsed = time.monotonic() - start
    return summarize(args, results, samples, elapsed, failures)


def summarize(
    args: argparse.Namespace,
    results: list[ViewerResult],
    samples: list[dict[str, Any]],
    elapsed: float,
    failures: list[BaseException | None],
) -> dict[str, Any]:
    fetch = [t for r in results for t in r.fetch_times]
    ages = [a for r in results for a in r.playlist_ages]
    total_bytes = sum(r.bytes for r in results)
    per_node: dict[str, dict[str, float]] = {}
    for sample in samples:
        for node, s in sample.items():
            entry = per_node.setdefault(
                node, {"cpu_max": 0.0, "cpu_sum": 0.0, "n": 0, "rss_max": 0.0}
            )
            entry["cpu_max"] = max(entry["cpu_max"], float(s.get("process_cpu", 0.0)))
            entry["cpu_sum"] += float(s.get("process_cpu", 0.0))
            entry["n"] += 1
            entry["rss_max"] = max(entry["rss_max"], float(s.get("process_rss", 0)) / 1e6)
    nodes = {
        node: {
            "cpu_percent_mean": round(v["cpu_sum"] / max(v["n"], 1), 1),
            "cpu_percent_max": round(v["cpu_max"], 1),
            "rss_mb_max": round(v["rss_max"], 1),
        }
        for node, v in per_node.items()
    }
    return {
        "viewers": len(results),
        "duration_s": round(elapsed, 1),
        "viewers_started": sum(r.started for r in results),
        "stalls": sum(r.stalls for r in results),
        "viewers_with_stalls": sum(1 for r in results if r.stalls),
        "stalled_seconds": round(sum(r.stalled_seconds for r in results), 2),
        "errors": sum(r.errors for r in results) + len(failures),
        "failovers": sum(r.failovers for r in results),
        "segments": sum(r.segments for r in results),
        "parts": sum(r.parts for r in results),
        "segment_fetch_ms_p50": round(percentile(fetch, 50) * 1000, 2),
        "segment_fetch_ms_p99": round(percentile(fetch, 99) * 1000, 2),
        "playlist_age_s_p50": round(percentile(ages, 50), 3),
        "playlist_age_s_p99": round(percentile(ages, 99), 3),
        "bytes_per_s": round(total_bytes / max(elapsed, 1e-9)),
        "mbit_per_s": round(total_bytes * 8 / max(elapsed, 1e-9) / 1e6, 2),
        "by_node": dict(Counter(r.node_id for r in results)),
        "nodes": nodes,
        "failures": [repr(f) for f in failures][:5],
    }


def report(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"viewers            {s['viewers']} ({s['viewers_started']} started playing)"
        f" over {s['duration_s']} s",
        f"stalls             {s['stalls']} ({s['viewers_with_stalls']} viewers,"
        f" {s['stalled_seconds']} s in all)",
        f"errors             {s['errors']} ({s['failovers']} failovers to another node)",
        f"segments fetched   {s['segments']} (and {s.get('parts', 0)} LL-HLS parts)",
        f"segment fetch      p50 {s['segment_fetch_ms_p50']} ms,"
        f" p99 {s['segment_fetch_ms_p99']} ms",
        f"playlist age       p50 {s['playlist_age_s_p50']} s, p99 {s['playlist_age_s_p99']} s",
        f"throughput         {s['mbit_per_s']} Mbit/s ({s['bytes_per_s']} bytes/s)",
        f"viewers per node   {s['by_node']}",
    ]
    for node, n in sorted(s["nodes"].items()):
        lines.append(
            f"node {node:<13} cpu mean {n['cpu_percent_mean']} % (max {n['cpu_percent_max']} %)"
            f" of one core, rss max {n['rss_mb_max']} MB"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airclass.loadtest", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--url",
        required=True,
        help="a master/slave API base URL (tokens are requested per viewer), or a student "
        "hls_url (one token for every viewer: a node admits --sessions-per-token of them)",
    )
    p.add_argument("--viewers", type=int, default=150)
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--stream", default="live/stream")
    p.add_argument("--class-code", default=None)
    p.add_argument(
        "--api", action="append", help="node API URL to sample CPU/memory from (repeatable)"
    )
    p.add_argument(
        "--token-file",
        help="file holding a metrics or teacher token, for the nodes' /api/stats and "
        "/cluster/nodes when run from outside their trusted networks",
    )
    p.add_argument("--ramp", type=float, default=2.0, help="seconds over which viewers join")
    p.add_argument("--start-segments", type=int, default=2, help="segments buffered before playing")
    p.add_argument("--progress", type=float, default=2.0, help="seconds between progress lines")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON ('-' for stdout)")
    p.add_argument("--fail-on-stall", action="store_true", help="exit 1 if any viewer stalled")
    p.add_argument(
        "--low-latency",
        action="store_true",
        help="when the playlist has EXT-X-PART: fetch parts with blocking playlist reloads",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.viewers < 1 or args.duration <= 0:
        print("--viewers and --duration must be positive", file=sys.stderr)
        return 2
    summary = asyncio.run(run(args))
    if args.json == "-":
        print(json.dumps(summary, indent=2))
    else:
        print(report(summary))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(summary, fh, indent=2)
    if args.fail_on_stall and (
        summary["stalls"] or summary["viewers_started"] < summary["viewers"]
    ):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
