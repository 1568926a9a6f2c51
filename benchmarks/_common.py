"""Pieces shared by the side-by-side benchmarks (`ingest.py`, `bench_http.py`, `compare_nginx.py`).

- the source file: 720p30 H.264 High (B-frames, CBR ~2.5 Mbit/s, 2 s GOP) + AAC, encoded once
  with ffmpeg and cached in the temp directory, published with `ffmpeg -re -c copy`;
- the two servers as context managers yielding a `Target`: an AIRClass slave (a real
  `python -m airclass.slave` process) and nginx with Debian's RTMP module (one process,
  `master_process off`, HLS directory on tmpfs, sendfile on: nginx's best case);
- ingest → playlist latency: a TCP proxy that stamps each media message of the publisher
  with the wall time it passed (parsed with our sans-IO `ChunkReader`), and a playlist poller;
- ingest CPU of a server process (psutil) during a publish with no viewer;
- wrk runs with the server's CPU time measured around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from airclass.auth.sessions import SessionSigner  # noqa: E402
from airclass.hls.reader import parse_media_playlist  # noqa: E402
from airclass.rtmp.chunk import ChunkReader  # noqa: E402
from airclass.rtmp.flv import starts_avc_keyframe  # noqa: E402
from tests.e2e.conftest import Cluster, LinkPacer, free_port, need, pipe, wait_for  # noqa: E402

STREAM = "live/bench"
HANDSHAKE_FROM_CLIENT = 1 + 1536 + 1536
"""C0, C1 and C2: what precedes the client's chunk stream."""
MSG_AUDIO, MSG_VIDEO = 8, 9
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


# -- the source file -------------------------------------------------------------------------


def source_file(seconds: int, video_kbps: int = 2400, audio_kbps: int = 128) -> Path:
    """720p30 H.264 High (B-frames, CBR, 2 s GOP) + AAC, encoded once and cached.

    The default is the ~2.5 Mbit/s stream of the ingest goals; 1500 + 96 is the 1.6 Mbit/s
    stream of the viewer goals."""
    cache = Path(tempfile.gettempdir()) / "airclass-bench"
    cache.mkdir(exist_ok=True)
    total = video_kbps + audio_kbps
    name = "2500k" if (video_kbps, audio_kbps) == (2400, 128) else f"{total}k"
    path = cache / f"ingest-720p30-{name}-gop2s-{seconds}s.flv"
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
         "-b:v", f"{video_kbps}k", "-minrate", f"{video_kbps}k", "-maxrate", f"{video_kbps}k",
         "-bufsize", f"{video_kbps}k", "-x264-params", "nal-hrd=cbr:force-cfr=1",
         "-c:a", "aac", "-b:a", f"{audio_kbps}k", "-ar", "48000", "-ac", "2",
         "-t", str(seconds), "-f", "flv", str(partial)],
        check=True, timeout=600,
    )
    partial.rename(path)
    return path


def publish(source: Path, url: str, *, loop: bool = False) -> subprocess.Popen[bytes]:
    """`ffmpeg -re -i source -c copy -f flv url`; with `loop`, until killed."""
    cmd = [need("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += ["-i", str(source), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(5)


# -- a proxy that stamps the publisher's frames ------------------------------------------------


@dataclass
class SentMessage:
    wall: float
    """perf_counter() when the message's last byte went through the proxy."""
    kind: int
    dts: int
    keyframe: bool


def _keyframe_start(type_id: int, first: bytes) -> bool:
    """The first chunk of an AVC keyframe (where the slave's own chunk reader pauses)."""
    return type_id == MSG_VIDEO and starts_avc_keyframe(first)


@dataclass
class TimingProxy:
    """Forwards one RTMP publisher to `upstream_port`, noting when each media message passes.

    With `link_mbit`, the publisher's bytes cross a link of that rate (a teacher's uplink):
    forwarded one TCP segment at a time, each when the link would have carried it, so a
    message's last byte arrives its size's transmission time after its first. Time stamps
    are when a message's last byte is forwarded, with or without.
    """

    upstream_port: int
    link_mbit: float | None = None
    sent: list[SentMessage] = field(default_factory=list)
    port: int = 0
    keyframe_passed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set each time a keyframe starts going through (the playlist poller then polls back to
    back): at its first chunk, so that a server that lists a segment before the keyframe that
    closes it has arrived in full is seen doing so."""
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
        skip = HANDSHAKE_FROM_CLIENT
        chunks = ChunkReader(announce=_keyframe_start)

        def forward(data: bytes) -> None:
            nonlocal skip
            now = time.perf_counter()
            up_writer.write(data)
            if skip:
                cut = min(skip, len(data))
                data, skip = data[cut:], skip - cut
            if not data:
                return
            while True:
                for msg in chunks.feed(data):
                    if msg.type_id == MSG_VIDEO and len(msg.payload) > 1:
                        if msg.payload[1] != 1:  # AVC sequence header or end of sequence
                            continue
                        key = msg.payload[0] >> 4 == 1
                        self.sent.append(SentMessage(now, MSG_VIDEO, msg.timestamp, key))
                        if key:
                            self.keyframe_passed.set()
                    elif msg.type_id == MSG_AUDIO and len(msg.payload) > 1:
                        if msg.payload[1] != 1:  # AAC sequence header
                            continue
                        self.sent.append(SentMessage(now, MSG_AUDIO, msg.timestamp, False))
                if chunks.head is None:
                    break
                self.keyframe_passed.set()
                data = b""

        link = LinkPacer(self.link_mbit) if self.link_mbit is not None else None

        async def upstream() -> None:
            while data := await reader.read(1 << 16):
                if link is None:
                    forward(data)
                else:
                    await link.send(data, forward)
                await up_writer.drain()
            up_writer.close()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(upstream(), pipe(up_reader, writer))


# -- playlist polling and latency -------------------------------------------------------------


@dataclass
class Listed:
    uri: str
    duration: float
    seen: float
    """perf_counter() when the playlist first listed it."""


def listed_segments(text: str) -> list[tuple[str, float]]:
    """(uri, EXTINF duration) of each full segment; partial segments and tags are skipped;
    none while the server answers something else (no stream yet)."""
    try:
        playlist = parse_media_playlist(text)
    except ValueError:
        return []
    return [(uri, duration) for _, duration, uri, _ in playlist.segments]


POLL_INTERVAL = 0.002
"""Seconds between playlist polls while no keyframe is passing."""
BURST_SECONDS = 0.05
"""Once a keyframe starts passing the proxy: how long the poller polls back to back (no pause),
for the segment that keyframe closes. The latency's resolution is then one request's round
trip (~0.2 ms on loopback), the same for both servers, instead of the 2 ms poll interval."""


async def poll_playlist(
    url: str, stop: Callable[[], bool], interval: float = POLL_INTERVAL,
    keyframe_passed: asyncio.Event | None = None, ignore: frozenset[str] = frozenset(),
) -> list[Listed]:
    """Each segment URI the playlist lists, with when it was first seen; those in `ignore`
    (listed before the publish began) left out."""
    listed: dict[str, Listed] = {}
    burst_until = 0.0
    async with aiohttp.ClientSession() as session:
        while not stop():
            try:
                async with session.get(url) as resp:
                    body = await resp.text() if resp.status == 200 else ""
            except aiohttp.ClientError:
                body = ""
            now = time.perf_counter()
            new = False
            for uri, duration in listed_segments(body):
                if uri not in listed and uri not in ignore:
                    listed[uri] = Listed(uri, duration, now)
                    new = True
            if new:
                burst_until = 0.0
            if keyframe_passed is not None and keyframe_passed.is_set():
                keyframe_passed.clear()
                burst_until = now + BURST_SECONDS
            if now < burst_until:
                await asyncio.sleep(0)
            elif keyframe_passed is None:
                await asyncio.sleep(interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(keyframe_passed.wait(), interval)
    return list(listed.values())


async def listed_now(url: str) -> frozenset[str]:
    """The segment URIs a playlist lists at the moment (none if it is not there)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url) as resp:
                body = await resp.text() if resp.status == 200 else ""
        except aiohttp.ClientError:
            body = ""
    return frozenset(uri for uri, _ in listed_segments(body))


@dataclass
class Latencies:
    """Per segment ended by a known keyframe, in seconds."""

    from_last_frame: list[float] = field(default_factory=list)
    """The publisher sends the segment's last frame → the playlist lists the segment."""
    from_cut: list[float] = field(default_factory=list)
    """The keyframe that closes the segment has passed → listed: the server's own time (no
    server can list a segment before the frame that ends it has arrived)."""
    durations: list[float] = field(default_factory=list)
    closing_dts: list[int] = field(default_factory=list)
    """The closing keyframe's timestamp (ms): the same segment in two publishes of one file."""


def latencies(listed: list[Listed], sent: list[SentMessage]) -> Latencies:
    keys = [i for i, m in enumerate(sent) if m.keyframe]
    out = Latencies()
    if not keys or not listed:
        return out
    key_dts = [sent[i].dts for i in keys]
    end = float(key_dts[0])
    for seg in listed:
        end += seg.duration * 1000
        nearest = min(range(len(keys)), key=lambda k: abs(key_dts[k] - end))
        if abs(key_dts[nearest] - end) > 300 or key_dts[nearest] <= key_dts[0]:
            break  # the final segment, closed when the publisher left
        end = float(key_dts[nearest])
        out.from_last_frame.append(seg.seen - sent[keys[nearest] - 1].wall)
        out.from_cut.append(seg.seen - sent[keys[nearest]].wall)
        out.durations.append(seg.duration)
        out.closing_dts.append(key_dts[nearest])
    return out


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median (the sign test's order statistics): the k-th
    smallest and k-th largest value, k the largest with P(Binomial(n, ½) < k) ≤ (1 − c)/2.
    The whole range when n is too small for that confidence."""
    xs = sorted(values)
    n = len(xs)
    if not n:
        raise ValueError("no values")
    tail = (1.0 - confidence) / 2
    k, cdf = 0, 0.0
    while k < n // 2 and cdf + math.comb(n, k) / 2**n <= tail:
        cdf += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return xs[0], xs[-1]
    return xs[k - 1], xs[n - k]


NOT_LATER_MARGIN = 0.0005
"""How much later than the baseline a server may list a segment and still meet "latency ≤ the
baseline's" (seconds): half a millisecond, a fortieth of the publisher's 0–21 ms gap before a
keyframe; a plain-HLS player reloads its playlist about once a target duration (2 s), so no
viewer can see it."""


@dataclass(frozen=True)
class Paired:
    """Per segment, a − b, in seconds: two publishes of the same file to two servers, each
    segment matched by the keyframe that closes it. The publisher's own gap before that keyframe
    (0–21 ms in the source, as audio and video interleave) is the same for both and cancels, so
    a difference of a tenth of a millisecond shows in a 30 s run, where comparing the two
    medians leaves it inside the gap's spread."""

    differences: list[float]
    low: float
    high: float
    """`median_interval` of the differences (95 %)."""
    earlier: int
    """Segments a listed sooner than b."""
    later: int

    @property
    def median(self) -> float:
        return statistics.median(self.differences)

    @property
    def too_few(self) -> bool:
        """Even the whole range of the differences is not a 95 % interval."""
        return 2 * 0.5 ** len(self.differences) > 0.05

    def verdict(self) -> str:
        if self.too_few:
            return "too few segments to tell"
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "level (no difference at 95 %)"

    def not_later(self, margin: float = NOT_LATER_MARGIN) -> str:
        """The target "a ≤ b" as a non-inferiority test: "met" when the interval's upper end is
        at most `margin` later (a one-sided bound at 97.5 %: a shown not to be later than b by
        more than the margin), "MISSED" when it reaches beyond."""
        if self.too_few:
            return "too few segments to tell"
        met = self.high <= margin
        return (f"{'met' if met else 'MISSED'} (paired: upper end {self.high * 1000:+.2f} ms "
                f"{'≤' if met else '>'} +{margin * 1000:.2f} ms)")

    def describe(self, a: str, b: str) -> str:
        return (f"{a} − {b} per segment: median {self.median * 1000:+.3f} ms, "
                f"95 % interval {self.low * 1000:+.3f} … {self.high * 1000:+.3f} ms, "
                f"{a} sooner in {self.earlier}, later in {self.later} of "
                f"{len(self.differences)}: {self.verdict()}")


def paired(a: Sequence[float], a_keys: Sequence[Hashable],
           b: Sequence[float], b_keys: Sequence[Hashable]) -> Paired | None:
    """`Paired` over the segments both lists have, keyed by their closing keyframe's dts (or by
    (round, dts) over several publishes); None if they have none in common."""
    b_by_key = dict(zip(b_keys, b, strict=True))
    diffs = [v - b_by_key[k] for v, k in zip(a, a_keys, strict=True) if k in b_by_key]
    if not diffs:
        return None
    low, high = median_interval(diffs)
    return Paired(diffs, low, high, sum(d < 0 for d in diffs), sum(d > 0 for d in diffs))


# -- the two servers -------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    pid: int
    rtmp_port: int
    publish_path: str
    """What follows rtmp://127.0.0.1:port/ in the publish URL."""
    playlist_url: str
    viewer_playlists: list[str] = field(default_factory=list)
    """One media playlist URL per simulated viewer (AIRClass: one session each; nginx has no
    sessions, so one URL)."""


@contextlib.contextmanager
def airclass_slave(tmp: Path, *extra: str, viewers: int = 1) -> Iterator[Target]:
    """A real slave process; `viewers` session ids are minted for its media playlist."""
    cluster = Cluster(tmp)
    try:
        node = cluster.slave(*extra, node_id="bench")
        assert node.proc is not None
        signer = SessionSigner(cluster.secret_key, "bench")
        expires = time.time() + 3600
        urls = [f"{node.hls}/{STREAM}/{signer.mint(STREAM, expires, f'v{i}')}/media.m3u8"
                for i in range(max(1, viewers))]
        yield Target("airclass", node.proc.pid, node.ports["rtmp"],
                     f"{STREAM}?key={cluster.stream_key}", urls[0], urls)
    finally:
        cluster.close()


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
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
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
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
def nginx_rtmp(tmp: Path, *extra: str, viewers: int = 1) -> Iterator[Target]:
    """nginx + libnginx-mod-rtmp in the foreground, one process, HLS files on tmpfs."""
    del extra, viewers  # no options, and no sessions: every viewer reads the same URL
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
            url = f"http://127.0.0.1:{http_port}/hls/bench.m3u8"
            yield Target("nginx", proc.pid, rtmp_port, "live/bench", url, [url])
        finally:
            stop_process(proc)


# -- ingest measurements ------------------------------------------------------------------------


async def measure_latency(
    target: Target, source: Path, seconds: int, link_mbit: float | None = None
) -> Latencies:
    """Publish `source` once through the timing proxy (over a link of `link_mbit`, if given),
    polling the playlist."""
    proxy = TimingProxy(target.rtmp_port, link_mbit)
    # A server measured before still lists the previous publish's segments.
    before = await listed_now(target.playlist_url)
    await proxy.start()
    ffmpeg = publish(source, f"rtmp://127.0.0.1:{proxy.port}/{target.publish_path}")
    done_at: list[float] = []

    def stop() -> bool:
        if ffmpeg.poll() is None:
            return False
        done_at.append(done_at[0] if done_at else time.perf_counter())
        return time.perf_counter() - done_at[0] > 3.0

    try:
        polling = poll_playlist(target.playlist_url, stop,
                                keyframe_passed=proxy.keyframe_passed, ignore=before)
        listed = await asyncio.wait_for(polling, seconds + 60)
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
        ffmpeg.wait(10)
        await proxy.close()
    return latencies(listed, proxy.sent)


def measure_cpu(target: Target, source: Path, seconds: int) -> float:
    """% of one core the server spends on one publish of `source`, with no viewer."""
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


def summary(values: list[float]) -> str:
    """Milliseconds: median, mean, p90, min, max of values given in seconds."""
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return (f"median {statistics.median(ms):6.1f}  mean {statistics.fmean(ms):6.1f}  "
            f"p90 {p90:6.1f}  min {ms[0]:6.1f}  max {ms[-1]:6.1f} ms  (n={len(ms)})")


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 1e6


# -- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_s: float
    body_bytes_per_s: float
    server_cpu: float
    """% of one core."""
    cpu_us_per_request: float
    """Server CPU time per request: the path's cost even when wrk, not the server, is the
    bottleneck (large responses on two cores)."""
    errors: int
    client_cpu_us_per_request: float = 0.0
    """wrk's own CPU time per request: what reading the replies costs the load generator."""


def lua_rotation(paths: Sequence[str], script: Path) -> Path:
    """A wrk script that cycles through `paths` (one per request), e.g. one per session."""
    body = ",\n".join(f'  "{p}"' for p in paths)
    script.write_text(
        "local paths = {\n" + body + "\n}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  return wrk.format(\"GET\", paths[(i % #paths) + 1])\n"
        "end\n"
    )
    return script


def run_wrk(url: str, pid: int, body_size: int, *, duration: int, connections: int,
            script: Path | None = None, threads: int = 1) -> WrkResult:
    """One wrk run against `url`, with the CPU time of process `pid` measured around it."""
    cmd = [need("wrk"), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True)
    wall = time.monotonic() - t0
    after = proc.cpu_times()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    rps = float(match.group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        m = re.search(pattern, out.stdout)
        if m:
            errors += int(m.group(1))
    cpu_seconds = after.user + after.system - before.user - before.system
    requests = rps * wall
    wrk_seconds = (children_after.ru_utime + children_after.ru_stime
                   - children_before.ru_utime - children_before.ru_stime)
    return WrkResult(rps, rps * body_size, cpu_seconds / wall * 100,
                     cpu_seconds / requests * 1e6 if requests else 0.0, errors,
                     wrk_seconds / requests * 1e6 if requests else 0.0)


def mean_wrk(results: Sequence[WrkResult]) -> WrkResult:
    n = len(results)
    return WrkResult(
        sum(r.requests_per_s for r in results) / n,
        sum(r.body_bytes_per_s for r in results) / n,
        sum(r.server_cpu for r in results) / n,
        sum(r.cpu_us_per_request for r in results) / n,
        sum(r.errors for r in results),
        sum(r.client_cpu_us_per_request for r in results) / n,
    )


def url_path(url: str) -> str:
    """The path (and query) of `url`, what a wrk script requests."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def resolve(base: str, uri: str) -> str:
    return urljoin(base, uri)
