"""The per-segment request path of a slave against a bare aiohttp handler, measured with wrk.

    python benchmarks/bench_http.py [--duration 4] [--connections 16] [--sessions 150]
                                    [--no-fast-path]

Two servers run side by side as child processes, each on its own free loopback port and with
the same runner settings (`airclass.web.runner.serve`, no access log):

- airclass: the real slave app (`create_app`) served as a slave serves it, with the fast path
  (`airclass.web.fastpath`) in front of aiohttp unless `--no-fast-path`: session id check
  (keyed BLAKE2s), viewer-table touch, byte counting, request metrics, and a response of the
  ring's shared bytes (by sendfile from a memory file for bodies over 64 KiB);
- bare: one aiohttp handler that returns the same bytes for the same URL shape.

wrk is then pointed at one, then the other, in A-B-B-A order to cancel drift on a shared
machine, for a ~400 KB segment (a 2 s segment of a 1.6 Mbit/s stream) and a small one (where
per-request overhead dominates), with one session (wrk repeats one URL) and with many sessions
(a wrk Lua script rotating among N session URLs, so the table holds N live viewers). It prints
req/s, body bytes/s, the server's CPU (% of one core) and the ratio airclass/bare; the goal is
that the airclass path costs at most 10 % (ratio ≥ 0.90). These are figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airclass.config import Config, finalize  # noqa: E402
from airclass.hls.ring import Segment  # noqa: E402
from airclass.web.hls_views import HLS_CONTEXT  # noqa: E402
from airclass.web.runner import run, serve, setup_logging  # noqa: E402
from airclass.web.slave_app import FAST_PATH, SLAVE, create_app  # noqa: E402
from benchmarks._common import WrkResult as Result  # noqa: E402
from benchmarks._common import lua_rotation, run_wrk  # noqa: E402
from benchmarks._common import mean_wrk as mean  # noqa: E402
from tests.e2e.conftest import free_port  # noqa: E402

PATH = "live/stream"
TS_PACKET = 188
SIZES = {"400KB": 2128 * TS_PACKET, "4KB": 22 * TS_PACKET}
"""Segment body sizes: 400,064 and 4,136 bytes, whole TS packets."""


def segment_bytes(size: int, seed: int) -> bytes:
    """Stand-in MPEG-TS bytes (sync byte every 188): the HTTP path never looks inside."""
    packet = b"\x47" + bytes([seed]) * (TS_PACKET - 1)
    return packet * (size // TS_PACKET)


# -- the two servers (child processes) -------------------------------------------------------


def build_airclass(sessions: int) -> tuple[web.Application, list[str]]:
    """The real slave app with one stream holding both segments, and `sessions` session ids."""
    config = finalize(
        Config(
            node_id="bench",
            bind="127.0.0.1",
            public_host="127.0.0.1",
            rtmp_port=0,
            secret_key=secrets.token_urlsafe(32),
            max_connections=max(150, sessions),
        )
    )
    app = create_app(config)
    packager = app[SLAVE].streams.sink(PATH).packager
    for seq, size in enumerate(SIZES.values()):
        packager.append_segment(
            Segment(
                sequence=seq,
                duration=2.0,
                data=segment_bytes(size, seq),
                program_date_time=time.time(),
                discontinuity=False,
                discontinuity_sequence=0,
            )
        )
    signer = app[HLS_CONTEXT].signer
    sids = [signer.mint(PATH, time.time() + 3600, f"viewer{i}") for i in range(sessions)]
    return app, sids


def build_bare() -> web.Application:
    """The baseline: routing plus a response of shared bytes, nothing else."""
    bodies = {str(seq): segment_bytes(size, seq) for seq, size in enumerate(SIZES.values())}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.match_info["seq"]], content_type="video/mp2t")

    app = web.Application()
    app.router.add_get(r"/{app}/{stream}/{sid}/{seq:[0-9]+}.ts", handler)
    return app


def child(kind: str, port: int, sessions: int, fast_path: bool) -> None:
    setup_logging("WARNING")
    fast = None
    if kind == "airclass":
        app, sids = build_airclass(sessions)
        fast = app[FAST_PATH] if fast_path else None
    else:
        app, sids = build_bare(), [secrets.token_urlsafe(25) for _ in range(sessions)]
    print(json.dumps({"sids": sids}), flush=True)
    # Both servers on the same event loop (EVENT_LOOP=asyncio|uvloop|auto, as the nodes read it).
    run(
        serve(app, "127.0.0.1", [port], name=kind, fast_path=fast),
        os.environ.get("EVENT_LOOP", "auto"),
    )


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[str]
    sids: list[str]

    @classmethod
    def start(cls, kind: str, sessions: int, fast_path: bool = True) -> Server:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, "--port", str(port),
             "--sessions", str(sessions), *([] if fast_path else ["--no-fast-path"])],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert proc.stdout is not None
        sids = json.loads(proc.stdout.readline())["sids"]
        server = cls(kind, port, proc, sids)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}")
            try:
                import urllib.request

                with urllib.request.urlopen(server.url(0, "1"), timeout=1) as resp:
                    if resp.status == 200:
                        return server
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{kind} server did not start")

    def url(self, i: int, seq: str) -> str:
        return f"http://127.0.0.1:{self.port}/{PATH}/{self.sids[i]}/{seq}.ts"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- wrk ---------------------------------------------------------------------------------------


def lua_for(server: Server, seq: str, n: int, directory: Path) -> Path:
    paths = [f"/{PATH}/{sid}/{seq}.ts" for sid in server.sids[:n]]
    return lua_rotation(paths, directory / f"{server.kind}-{seq}-{n}.lua")


def wrk_on(server: Server, seq: str, body_size: int, *, duration: int, connections: int,
           script: Path | None) -> Result:
    return run_wrk(server.url(0, seq), server.proc.pid, body_size, duration=duration,
                   connections=connections, script=script)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=150, help="sessions in the rotation")
    parser.add_argument(
        "--no-fast-path", dest="fast_path", action="store_false",
        help="serve AIRClass through aiohttp only, as `python -m airclass.slave --no-fast-path`",
    )
    parser.add_argument("--child", choices=["airclass", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, args.sessions, args.fast_path)
        return 0

    print(f"wrk -t1 -c{args.connections} -d{args.duration}s per run, A-B-B-A order, "
          f"{os.cpu_count()} cores; server CPU is % of one core; AIRClass "
          + ("with its fast path" if args.fast_path else "through aiohttp only (--no-fast-path)"))
    servers = {k: Server.start(k, args.sessions, args.fast_path) for k in ("airclass", "bare")}
    try:
        with tempfile.TemporaryDirectory(prefix="airclass-bench-http-") as tmp:
            for server in servers.values():  # warm-up: imports, first allocations
                wrk_on(server, "0", 1, duration=1, connections=args.connections, script=None)
            header = (f"{'segment':>7} {'sessions':>8} | {'airclass req/s':>14} {'MB/s':>7} "
                      f"{'cpu%':>5} {'µs/req':>6} | {'bare req/s':>10} {'MB/s':>7} "
                      f"{'cpu%':>5} {'µs/req':>6} | {'req/s':>5} {'cost':>5}")
            print(header)
            print("-" * len(header))
            for seq, (label, size) in enumerate(SIZES.items()):
                for n in (1, args.sessions):
                    runs: dict[str, list[Result]] = {"airclass": [], "bare": []}
                    for kind in ("airclass", "bare", "bare", "airclass"):
                        server = servers[kind]
                        script = (
                            lua_for(server, str(seq), n, Path(tmp)) if n > 1 else None
                        )
                        runs[kind].append(
                            wrk_on(server, str(seq), size, duration=args.duration,
                                    connections=args.connections, script=script)
                        )
                    a, b = mean(runs["airclass"]), mean(runs["bare"])
                    errors = a.errors + b.errors
                    print(
                        f"{label:>7} {n:>8} | {a.requests_per_s:>14,.0f} "
                        f"{a.body_bytes_per_s / 1e6:>7,.1f} {a.server_cpu:>5.0f} "
                        f"{a.cpu_us_per_request:>6.0f} | "
                        f"{b.requests_per_s:>10,.0f} {b.body_bytes_per_s / 1e6:>7,.1f} "
                        f"{b.server_cpu:>5.0f} {b.cpu_us_per_request:>6.0f} | "
                        f"{a.requests_per_s / b.requests_per_s:>5.2f} "
                        f"{a.cpu_us_per_request / b.cpu_us_per_request:>5.2f}"
                        + (f"  ({errors} errors)" if errors else "")
                    )
    finally:
        for server in servers.values():
            server.stop()
    print("req/s = airclass ÷ bare throughput (goal ≥ 0.90); cost = airclass ÷ bare server CPU "
          "per request (goal ≤ 1.10). With large segments wrk shares the two cores and is "
          "the bottleneck, so read cost there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
