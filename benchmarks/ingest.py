"""Ingest → playlist latency and ingest CPU: an AIRClass slave against nginx with the RTMP module.

    python benchmarks/ingest.py [--seconds 30]

Both servers get the same pre-encoded file (720p30 H.264 at ~2.5 Mbit/s CBR with a 2 s GOP,
AAC 128 kbit/s; made once with ffmpeg and cached in the temp directory), published with
`ffmpeg -re -i file -c copy -f flv`, one server after the other, each on free loopback ports.
nginx runs in the foreground as one process (`daemon off; master_process off`), with its
HLS directory on tmpfs (/dev/shm) when there is one, which is nginx's best case.

Latency, per segment: the time from the publisher sending the segment's last frame to the
segment first appearing in the playlist, polled over HTTP every 10 ms. Send times are not
estimated from `-re`: the publisher goes through a small TCP proxy in this process that
forwards every byte at once and parses the client's chunk stream (our sans-IO ChunkReader) to
stamp each audio/video message with the wall time it passed. A segment's end is the keyframe
that starts the next one (cumulated EXTINF snapped to the publisher's keyframes); its last
frame is the message sent just before that keyframe. The final segment, closed when the
publisher leaves, is left out. Polling adds 0-10 ms (5 ms on average) to both servers.

CPU: a second publish with no proxy and no viewer; the server process's CPU time over the
middle of the run, as % of one core (psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airclass.auth.sessions import SessionSigner  # noqa: E402
from airclass.rtmp.chunk import ChunkReader  # noqa: E402
from tests.e2e.conftest import Cluster, free_port, need, wait_for  # noqa: E402

STREAM = "live/bench"
HANDSHAKE_FROM_CLIENT = 1 + 1536 + 1536
"""C0, C1 and C2: what precedes the client's chunk stream."""
MSG_AUDIO, MSG_VIDEO = 8, 9
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


# -- the source file -------------------------------------------------------------------------


def source_file(seconds: int) -> Path:
    """720p30 H.264 High (B-frames, CBR ~2.5 Mbit/s, 2 s GOP) + AAC, encoded once and cached."""
    cache = Path(tempfile.gettempdir()) / "airclass-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"ingest-720p30-2500k-gop2s-{seconds}s.flv"
    if path.exists() and path.stat().st_size > 0:
        return path
    print(f"encoding {seconds} s of 720p test video into {path} (once) ...", flush=True)
    partial = path.with_suffix(".part.flv")
    subprocess.run(
        [need("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-b:v", "2400k", "-minrate", "2400k", "-maxrate", "2400k", "-bufsize", "2400k",
         "-x264-params", "nal-hrd=cbr:force-cfr=1",
         "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
         "-t", str(seconds), "-f", "flv", str(partial)],
        check=True, timeout=600,
    )
    partial.rename(path)
    return path


def publish(source: Path, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [need("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", "-i", str(source),
         "-c", "copy", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


# -- a proxy that stamps the publisher's frames ------------------------------------------------


@dataclass
class SentMessage:
    wall: float
    """perf_counter() when the message's last byte went through the proxy."""
    kind: int
    dts: int
    keyframe: bool


@dataclass
class TimingProxy:
    """Forwards one RTMP publisher to `upstream_port`, noting when each media message passes."""

    upstream_port: int
    sent: list[SentMessage] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            skip = HANDSHAKE_FROM_CLIENT
            chunks = ChunkReader()
            while data := await reader.read(1 << 16):
                now = time.perf_counter()
                up_writer.write(data)
                if skip:
                    cut = min(skip, len(data))
                    data, skip = data[cut:], skip - cut
                for msg in chunks.feed(data) if data else ():
                    if msg.type_id == MSG_VIDEO and len(msg.payload) > 1:
                        if msg.payload[1] != 1:  # AVC sequence header or end of sequence
                            continue
                        key = msg.payload[0] >> 4 == 1
                        self.sent.append(SentMessage(now, MSG_VIDEO, msg.timestamp, key))
                    elif msg.type_id == MSG_AUDIO and len(msg.payload) > 1:
                        if msg.payload[1] != 1:  # AAC sequence header
                            continue
                        self.sent.append(SentMessage(now, MSG_AUDIO, msg.timestamp, False))
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            while data := await up_reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(upstream(), downstream())


# -- playlist polling and latency -------------------------------------------------------------


@dataclass
class Listed:
    uri: str
    duration: float
    seen: float
    """perf_counter() when the playlist first listed it."""


def parse_media_playlist(text: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    duration = 0.0
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line and not line.startswith("#"):
            out.append((line, duration))
    return out


async def poll_playlist(url: str, stop: Callable[[], bool], interval: float = 0.01) -> list[Listed]:
    listed: dict[str, Listed] = {}
    async with aiohttp.ClientSession() as session:
        while not stop():
            try:
                async with session.get(url) as resp:
                    body = await resp.text() if resp.status == 200 else ""
            except aiohttp.ClientError:
                body = ""
            now = time.perf_counter()
            for uri, duration in parse_media_playlist(body):
                if uri not in listed:
                    listed[uri] = Listed(uri, duration, now)
            await asyncio.sleep(interval)
    return list(listed.values())


def latencies(listed: list[Listed], sent: list[SentMessage]) -> tuple[list[float], list[float]]:
    """(latency s per segment, segment durations) for segments ended by a known keyframe."""
    keys = [i for i, m in enumerate(sent) if m.keyframe]
    if not keys or not listed:
        return [], []
    key_dts = [sent[i].dts for i in keys]
    end = float(key_dts[0])
    out: list[float] = []
    durations: list[float] = []
    for seg in listed:
        end += seg.duration * 1000
        nearest = min(range(len(keys)), key=lambda k: abs(key_dts[k] - end))
        if abs(key_dts[nearest] - end) > 300 or key_dts[nearest] <= key_dts[0]:
            break  # the final segment, closed when the publisher left
        end = float(key_dts[nearest])
        last_frame = sent[keys[nearest] - 1]
        out.append(seg.seen - last_frame.wall)
        durations.append(seg.duration)
    return out, durations


# -- the two servers -------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    pid: int
    rtmp_port: int
    publish_path: str
    """What follows rtmp://127.0.0.1:port/ in the publish URL."""
    playlist_url: str


@contextlib.contextmanager
def airclass_slave(tmp: Path) -> Iterator[Target]:
    cluster = Cluster(tmp)
    try:
        node = cluster.slave(node_id="bench")
        assert node.proc is not None
        sid = SessionSigner(cluster.secret_key, "bench").mint(STREAM, time.time() + 3600, "bench")
        yield Target(
            "airclass", node.proc.pid, node.ports["rtmp"],
            f"{STREAM}?key={cluster.stream_key}", f"{node.hls}/{STREAM}/{sid}/media.m3u8",
        )
    finally:
        cluster.close()


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {hls}/hls;
            hls_fragment 2s;
            hls_playlist_length 12s;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{
            root {hls};
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_rtmp(tmp: Path) -> Iterator[Target]:
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(
        prefix="airclass-nginx-hls-", dir=shm if shm.is_dir() else None
    ) as hls:
        rtmp_port, http_port = free_port(), free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(module=NGINX_RTMP_MODULE, tmp=tmp, hls=hls,
                                          rtmp_port=rtmp_port, http_port=http_port))
        proc = subprocess.Popen(
            [need("nginx"), "-p", f"{tmp}/", "-c", str(conf), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            def listening() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx exited: {(tmp / 'error.log').read_text()}")
                conns = psutil.Process(proc.pid).net_connections("tcp")
                ports = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
                return {rtmp_port, http_port} <= ports

            wait_for(listening, 10, 0.05, "nginx to listen")
            yield Target("nginx", proc.pid, rtmp_port, "live/bench",
                         f"http://127.0.0.1:{http_port}/hls/bench.m3u8")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- the measurements --------------------------------------------------------------------------


@dataclass
class Measured:
    latencies: list[float]
    durations: list[float]
    cpu: float


async def measure_latency(target: Target, source: Path, seconds: int) -> tuple[
    list[float], list[float]
]:
    proxy = TimingProxy(target.rtmp_port)
    await proxy.start()
    ffmpeg = publish(source, f"rtmp://127.0.0.1:{proxy.port}/{target.publish_path}")
    done_at: list[float] = []

    def stop() -> bool:
        if ffmpeg.poll() is None:
            return False
        done_at.append(done_at[0] if done_at else time.perf_counter())
        return time.perf_counter() - done_at[0] > 3.0

    try:
        listed = await asyncio.wait_for(poll_playlist(target.playlist_url, stop), seconds + 60)
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
        ffmpeg.wait(10)
        await proxy.close()
    return latencies(listed, proxy.sent)


def measure_cpu(target: Target, source: Path, seconds: int) -> float:
    ffmpeg = publish(source, f"rtmp://127.0.0.1:{target.rtmp_port}/{target.publish_path}")
    proc = psutil.Process(target.pid)
    try:
        time.sleep(min(4.0, seconds / 4))
        before, t0 = proc.cpu_times(), time.perf_counter()
        time.sleep(max(1.0, seconds - min(4.0, seconds / 4) - 2.0))
        after, t1 = proc.cpu_times(), time.perf_counter()
        if ffmpeg.poll() is not None:
            raise RuntimeError(f"publisher to {target.name} stopped early ({ffmpeg.returncode})")
    finally:
        ffmpeg.wait(seconds + 30)
    busy: float = after.user + after.system - before.user - before.system
    return busy / (t1 - t0) * 100


def run_one(
    make: Callable[[Path], contextlib.AbstractContextManager[Target]],
    source: Path, seconds: int,
) -> Measured:
    with tempfile.TemporaryDirectory(prefix="airclass-bench-ingest-") as tmp, make(
        Path(tmp)
    ) as target:
        print(f"{target.name}: measuring latency ({seconds} s publish) ...", flush=True)
        lat, durations = asyncio.run(measure_latency(target, source, seconds))
        if not lat:
            raise RuntimeError(f"{target.name}: no segment was listed")
        # Let the first stream end (AIRClass keeps it open for its reconnect grace).
        time.sleep(1.0)
        print(f"{target.name}: measuring ingest CPU ({seconds} s publish, no viewer) ...",
              flush=True)
        cpu = measure_cpu(target, source, seconds)
    return Measured(lat, durations, cpu)


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return (f"median {statistics.median(ms):6.1f}  mean {statistics.fmean(ms):6.1f}  "
            f"p90 {p90:6.1f}  min {ms[0]:6.1f}  max {ms[-1]:6.1f} ms  (n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each publish")
    args = parser.parse_args()
    source = source_file(args.seconds)
    runs: list[tuple[str, Callable[[Path], contextlib.AbstractContextManager[Target]]]] = [
        ("airclass", airclass_slave), ("nginx", nginx_rtmp),
    ]
    results = {name: run_one(make, source, args.seconds) for name, make in runs}
    a, n = results["airclass"], results["nginx"]
    print()
    print(f"source: {source.name}, {source.stat().st_size * 8 / args.seconds / 1e6:.2f} Mbit/s")
    for name, r in results.items():
        print(f"{name:>8} segments: {', '.join(f'{d:.3f}' for d in r.durations)} s")
    print("ingest → playlist latency (publisher sends a segment's last frame → listed):")
    for name, r in results.items():
        print(f"  {name:>8}: {summary(r.latencies)}")
    print(f"  ratio airclass/nginx (medians): "
          f"{statistics.median(a.latencies) / statistics.median(n.latencies):.2f}  "
          f"(goal ≤ 1.00)")
    print("ingest CPU of the server process, % of one core, no viewers:")
    for name, r in results.items():
        print(f"  {name:>8}: {r.cpu:5.2f} %")
    print(f"  ratio airclass/nginx: {a.cpu / n.cpu if n.cpu else float('inf'):.2f}  "
          f"(goal: airclass ≤ 1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
