"""Hostile HTTP clients against a real slave while a real lecture plays.

One slave process and one ffmpeg publisher serve the whole module. Every test runs simulated
viewers (`python -m airclass.loadtest --fail-on-stall`) beside the hostile client, so "the
server keeps serving the lecture" is measured, not assumed: a single stall fails the test.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import resource
import selectors
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airclass.auth.tokens import TokenIssuer
from airclass.web.runner import KEEPALIVE_TIMEOUT, BadRequestLogFilter
from tests.e2e.conftest import ROOT, Cluster, Node, http_get, http_json, publish, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

IDLE_CONNECTIONS = 10_000
SECRET_MARKERS = (b"root:", b"WELL_KNOWN_SECRETS", b"def add_page_routes", b"[build-system]")


@dataclass
class Lecture:
    cluster: Cluster
    slave: Node
    tmp: Path

    def token(self, **changes: Any) -> str:
        claims: dict[str, Any] = dict(
            user_type="student",
            user_id="kim",
            action="read",
            path="live/stream",
            node_id=self.slave.args[self.slave.args.index("--node-id") + 1],
            now=time.time(),
            ttl=600,
        )
        claims.update(changes)
        return TokenIssuer(self.cluster.secret_key).mint(**claims)

    def entry_url(self, token: str | None = None) -> str:
        url = f"{self.slave.hls}/live/stream/index.m3u8"
        return url if token is None else f"{url}?jwt={urllib.parse.quote(token, safe='')}"

    def segment_path(self) -> tuple[str, int]:
        """A live segment's path (with a fresh viewer session) and its size."""
        status, body, _ = http_get(self.entry_url(self.token()))
        assert status == 200, body
        variant = next(x for x in body.decode().splitlines() if x and not x.startswith("#"))
        media = f"/live/stream/{variant}"
        status, body, _ = http_get(self.slave.hls + media)
        assert status == 200, body
        segments = [x for x in body.decode().splitlines() if x and not x.startswith("#")]
        path = media.rsplit("/", 1)[0] + "/" + segments[-1]
        status, data, _ = http_get(self.slave.hls + path)
        assert status == 200
        return path, len(data)

    def stats(self) -> dict[str, Any]:
        status, stats = http_json("GET", f"{self.slave.api}/api/stats")
        assert status == 200, stats
        return dict(stats)


def _raise_nofile(wanted: int) -> None:
    """Room for our sockets and, inherited by the slave, for its accepted ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lecture]:
    _raise_nofile(2 * IDLE_CONNECTIONS + 2_000)
    tmp = tmp_path_factory.mktemp("hostile")
    cluster = Cluster(tmp)
    publisher: subprocess.Popen[bytes] | None = None
    try:
        slave = cluster.slave("--max-connections", "500", node_id="slave-h")
        publisher = publish(
            f"{slave.rtmp}/live/stream?key={cluster.stream_key}",
            900,
            log_path=tmp / "publisher.log",
        )
        lecture = Lecture(cluster, slave, tmp)
        wait_for(
            lambda: http_get(lecture.entry_url(lecture.token()))[0] == 200,
            20,
            what="the lecture is live",
        )
        # Two segments in the ring, so viewers start at once.
        wait_for(
            lambda: (
                len(lecture.segment_path())
                and (lecture.stats()["streams"]["live/stream"]["media_sequence"] or 0) >= 2
            ),
            20,
            what="a few segments",
        )
        yield lecture
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait(5)
        cluster.close()


@contextlib.contextmanager
def viewers(lecture: Lecture, seconds: float, count: int = 8) -> Iterator[dict[str, Any]]:
    """Loadtest viewers watching for `seconds` beside the block; asserts none stalled."""
    out = lecture.tmp / f"viewers-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airclass.loadtest",
            "--url",
            lecture.slave.api,
            "--viewers",
            str(count),
            "--duration",
            str(seconds),
            "--ramp",
            "1",
            "--fail-on-stall",
            "--quiet",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    summary: dict[str, Any] = {}
    try:
        yield summary
        output, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output.decode(errors="replace")
    summary.update(json.loads(out.read_text()))
    assert summary["stalls"] == 0 and summary["viewers_started"] == count, summary
    print(
        f"viewers: {count} watched {summary['duration_s']} s, stalls 0, segment fetch p99 "
        f"{summary['segment_fetch_ms_p99']} ms, errors {summary['errors']}"
    )


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    port: int, request: bytes, timeout: float = 10.0, source: str | None = None
) -> RawReply:
    """Send exact bytes (no client-side normalisation) and read the reply to EOF."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), data[:200]
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return RawReply(int(lines[0].split()[1]), headers, body)


def get(port: int, target: str, *extra: str, source: str | None = None) -> RawReply:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *extra, "", ""]
    return raw_request(port, "\r\n".join(lines).encode("utf-8", "surrogateescape"), source=source)


def assert_json_error(reply: RawReply, *statuses: int) -> None:
    assert reply.status in statuses, (reply.status, reply.body[:200])
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    body = reply.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body


def hls_port(lecture: Lecture) -> int:
    return lecture.slave.ports["hls"]


# -- path traversal ---------------------------------------------------------------------------

TRAVERSALS = [
    "/../../../../etc/passwd",
    "/live/stream/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/live/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/live/stream/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2fconfig.py",
    "/static/..%2fpages.py",
    "/static/..%5c..%5cconfig.py",
    "/static/..\\..\\config.py",
    "/static/%252e%252e%252fconfig.py",
    "/static/....//....//config.py",
    "/static/%c0%ae%c0%ae/config.py",
    "/static/%c0%ae%c0%ae%c0%afconfig.py",
    "/static//etc/passwd",
    "//etc/passwd",
    "/..;/..;/etc/passwd",
    "/static/.%2e/.%2e/pyproject.toml",
    "/live/stream/..%2f..%2fpyproject.toml/media.m3u8",
    "/live/stream/AAAAAAAAAAAA/..%2f..%2f..%2fetc%2fpasswd.ts",
    "http://127.0.0.1/../../../etc/passwd",
]


def test_path_traversal_is_a_json_404_never_a_file(lecture: Lecture) -> None:
    port = hls_port(lecture)
    with viewers(lecture, 12):
        for target in TRAVERSALS:
            for port_ in (port, lecture.slave.ports["api"]):
                reply = get(port_, target)
                assert not any(marker in reply.body for marker in SECRET_MARKERS), target
                assert reply.status == 404, (target, reply.status, reply.body[:200])
                assert_json_error(reply, 404)
        # The real static files are still served: the refusals above are not a blanket 404.
        ok = get(port, "/static/common.css")
        assert ok.status == 200 and b"{" in ok.body


# -- overlong requests ------------------------------------------------------------------------


def test_overlong_urls_and_headers_get_a_sane_4xx(lecture: Lecture) -> None:
    port = hls_port(lecture)
    with viewers(lecture, 15):
        # Within aiohttp's 8190-byte line limit: routed, and refused by us as JSON.
        assert_json_error(get(port, "/" + "a" * 8000), 404)
        assert_json_error(get(port, "/live/stream/index.m3u8?jwt=" + "a" * 8000), 401)
        assert_json_error(get(port, "/live/stream/index.m3u8", "X-Junk: " + "b" * 8000), 401)
        # 100 headers of 8000 bytes each is within aiohttp's limits (128 headers of at most
        # 8190 bytes: about 1 MiB a request, bounded): routed, and refused by us.
        assert_json_error(
            get(port, "/live/stream/index.m3u8", *(f"X-Big-{i}: {'d' * 8000}" for i in range(100))),
            401,
        )

        # Beyond the limits aiohttp's parser answers 400 itself (before routing) and closes.
        too_long = [
            get(port, "/" + "a" * 9000),
            get(port, "/live/stream/index.m3u8?jwt=" + "a" * 100_000),
            get(port, "/", "X-Junk: " + "b" * 9000),
            get(port, "/", "Authorization: Bearer " + "c" * 1_000_000),
            get(port, "/", *(f"X-Header-{i}: {i}" for i in range(500))),
            get(port, "/", *(f"X-Header-{i}: {i}" for i in range(130))),
        ]
        for reply in too_long:
            assert reply.status in (400, 413, 414, 431), (reply.status, reply.body[:200])
            assert b"Traceback" not in reply.body and len(reply.body) < 4096, reply.body[:300]
            print(
                f"overlong -> {reply.status} {reply.headers.get('content-type')}: "
                f"{reply.body[:80]!r}"
            )
        # A request line that never ends: bounded, answered, closed.
        reply = raw_request(port, b"GET /" + b"x" * 2_000_000)
        assert reply.status == 400
        assert lecture.slave.proc is not None and lecture.slave.proc.poll() is None
    # Logged as one line each, without a traceback or the request's contents (its token).
    log = lecture.slave.log()
    assert "refused a malformed request from 127.0.0.1: LineTooLong (HTTP 400)" in log
    assert "Traceback" not in log and "jwt=aaaa" not in log and "Bearer ccc" not in log


def test_heads_a_proxy_could_read_otherwise_are_not_answered_by_the_fast_path(
    lecture: Lecture,
) -> None:
    """A bare LF or CR inside the head, or a second Host: a proxy in front might split such a
    request differently (request smuggling), so the fast path hands it to aiohttp, whose
    parser refuses it, instead of serving the segment."""
    path, _ = lecture.segment_path()
    port = hls_port(lecture)
    good = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    assert raw_request(port, good).status == 200
    for head in (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\nX-B: 2\r\nConnection: close",
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\rX-B: 2\r\nConnection: close",
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil\r\nConnection: close",
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: \x01\r\nConnection: close",
    ):
        reply = raw_request(port, head.encode() + b"\r\n\r\n")
        assert reply.status == 400, (head, reply.status, reply.body[:100])
    assert lecture.slave.proc is not None and lecture.slave.proc.poll() is None


def test_bad_request_log_lines_are_rate_limited() -> None:
    from aiohttp.http_exceptions import LineTooLong

    now = [100.0]
    filt = BadRequestLogFilter(per_second=2.0, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        exc = LineTooLong("/live/stream/index.m3u8?jwt=eyJsecret", "8190")
        return logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("10.0.0.9",),
            (type(exc), exc, None),
        )

    kept = [r for r in (record() for _ in range(5)) if filt.filter(r)]
    assert len(kept) == 2 and filt.suppressed == 3
    assert kept[0].levelno == logging.WARNING and kept[0].exc_info is None
    assert kept[0].getMessage() == (
        "refused a malformed request from 10.0.0.9: LineTooLong (HTTP 400)"
    )
    now[0] += 1.0
    later = record()
    assert filt.filter(later) and "3 more not logged" in later.getMessage()
    assert "eyJsecret" not in later.getMessage()
    # A failure inside a handler is not a parser error: left as aiohttp logged it.
    bug = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("10.0.0.9",),
        (KeyError, KeyError("x"), None),
    )
    assert filt.filter(bug) and bug.exc_info is not None and bug.levelno == logging.ERROR


# -- 10,000 idle connections ------------------------------------------------------------------


def _open_idle(port: int, count: int, half_request: bytes) -> list[socket.socket]:
    """`count` connected sockets; every other one sends `half_request`, the rest nothing."""
    socks: list[socket.socket] = []
    batch = 500
    try:
        for start in range(0, count, batch):
            pending = []
            sel = selectors.DefaultSelector()
            for _ in range(min(batch, count - start)):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                socks.append(s)
                pending.append(s)
                sel.register(s, selectors.EVENT_WRITE)
            deadline = time.monotonic() + 20
            waiting = len(pending)
            while waiting and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    sel.unregister(key.fileobj)
                    waiting -= 1
            sel.close()
            assert waiting == 0, f"{waiting} connections did not complete"
            for s in pending:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        for i, s in enumerate(socks):
            if i % 2:
                s.send(half_request)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_ten_thousand_idle_connections_do_not_stop_the_lecture(lecture: Lecture) -> None:
    port = hls_port(lecture)
    before = lecture.stats()
    half = b"GET /live/stream/index.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    with viewers(lecture, KEEPALIVE_TIMEOUT + 35, count=10):
        time.sleep(2)  # viewers are watching before the flood
        opened_at = time.monotonic()
        socks = _open_idle(port, IDLE_CONNECTIONS, half)
        try:
            took = time.monotonic() - opened_at
            # The lecture's own requests still answer promptly beside 10,000 idle sockets.
            latencies = []
            for _ in range(10):
                t0 = time.monotonic()
                assert http_get(f"{lecture.slave.hls}/health", timeout=5)[0] == 200
                latencies.append(time.monotonic() - t0)
                time.sleep(0.2)
            during = lecture.stats()
            print(
                f"{IDLE_CONNECTIONS} idle connections opened in {took:.1f} s; /health max "
                f"{max(latencies) * 1000:.0f} ms; slave RSS "
                f"{before['process_rss'] / 2**20:.0f} -> {during['process_rss'] / 2**20:.0f} MB"
            )
            assert max(latencies) < 2.0, latencies

            # The server closes silent and half-sent connections after its keep-alive timeout.
            deadline = opened_at + took + KEEPALIVE_TIMEOUT + 10
            open_socks = list(socks)
            while open_socks and time.monotonic() < deadline:
                open_socks = [s for s in open_socks if not _closed_by_peer(s)]
                time.sleep(0.5)
            closed_after = time.monotonic() - opened_at
            print(
                f"server closed {len(socks) - len(open_socks)} of {len(socks)} idle "
                f"connections within {closed_after:.1f} s (keep-alive timeout "
                f"{KEEPALIVE_TIMEOUT:.0f} s)"
            )
            assert not open_socks, f"{len(open_socks)} idle connections still open"
        finally:
            for s in socks:
                s.close()
    after = lecture.stats()
    assert after["process_rss"] < before["process_rss"] + 200 * 2**20


# -- a viewer reading at 1 KB/s ---------------------------------------------------------------


def test_slow_readers_buffer_little_and_do_not_slow_the_others(lecture: Lecture) -> None:
    path, size = lecture.segment_path()
    assert size > 100_000, size  # several 64 KiB slices, so buffering is visible
    readers = 100
    seconds = 20
    rss_before = lecture.stats()["process_rss"]
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    with viewers(lecture, seconds + 8, count=10) as summary:
        socks = []
        try:
            for _ in range(readers):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", hls_port(lecture)))
                s.sendall(request)
                s.setblocking(False)
                socks.append(s)
            received = [0] * readers
            for _ in range(seconds):
                time.sleep(1)
                for i, s in enumerate(socks):
                    with contextlib.suppress(BlockingIOError):
                        received[i] += len(s.recv(1024))
            rss_during = lecture.stats()["process_rss"]
        finally:
            for s in socks:
                s.close()
    growth = rss_during - rss_before
    print(
        f"{readers} readers at 1 KB/s for {seconds} s on a {size / 1024:.0f} KiB segment: "
        f"got {min(received)}-{max(received)} bytes each; slave RSS +{growth / 2**20:.1f} MB "
        f"({growth / readers / 1024:.0f} KiB per reader); viewers' segment fetch p99 "
        f"{summary['segment_fetch_ms_p99']} ms"
    )
    assert min(received) >= (seconds - 2) * 1024 * 0.8, received
    # Readers that leave mid-segment are routine, not errors with a traceback.
    assert "Traceback" not in lecture.slave.log()
    # Each slow reader may hold about two 64 KiB slices, not its own copy of the segment.
    assert growth < readers * min(size, 160 * 1024), growth


def test_pipelining_clients_that_never_read_cannot_grow_the_slave(lecture: Lecture) -> None:
    """Clients pipeline requests as fast as loopback takes them and never read a reply: the
    slave stops reading from each once its unanswered requests pass a small bound, so its
    memory stays put and the lecture's viewers do not notice."""
    path, _ = lecture.segment_path()
    media = path.rsplit("/", 1)[0] + "/media.m3u8"
    clients, seconds = 4, 10.0
    burst = b"".join(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for target in (path, media) * 200
    )
    rss_before = lecture.stats()["process_rss"]
    with viewers(lecture, seconds + 8, count=8) as summary:
        socks = []
        sent = [0] * clients
        try:
            for _ in range(clients):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                s.connect(("127.0.0.1", hls_port(lecture)))
                s.setblocking(False)
                socks.append(s)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                progressed = False
                for i, s in enumerate(socks):
                    with contextlib.suppress(BlockingIOError):
                        sent[i] += s.send(burst)
                        progressed = True
                if not progressed:
                    time.sleep(0.005)
            rss_during = lecture.stats()["process_rss"]
            still_open = sum(not _closed_by_peer(s) for s in socks)
        finally:
            for s in socks:
                s.close()
    growth = rss_during - rss_before
    print(
        f"{clients} clients pipelining for {seconds:.0f} s without reading: the slave took "
        f"{min(sent) / 1024:.0f}-{max(sent) / 1024:.0f} KiB from each; RSS {growth / 1e6:+.1f} MB; "
        f"{still_open} still connected; viewers' segment fetch p99 "
        f"{summary['segment_fetch_ms_p99']} ms"
    )
    assert growth < 50e6, growth
    # Each client got as far as the bound and the socket buffers, not the line rate.
    assert max(sent) < 8 * 2**20, sent
    assert "Traceback" not in lecture.slave.log()


async def _peak_write_buffer(shared: bool, size: int = 1_000_000) -> int:
    """Serve `size` bytes to a client reading 4 KiB every 10 ms; the server connection's peak
    user-space write buffer, with `send_shared` or with a plain one-write Response."""
    import asyncio

    from aiohttp import web

    from airclass.web.http import send_shared

    data = bytes(size)
    transports: list[asyncio.Transport] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert isinstance(transport, asyncio.Transport)
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transports.append(transport)
        if shared:
            return await send_shared(request, data, {"Content-Type": "video/mp2t"})
        return web.Response(body=data, content_type="video/mp2t")

    app = web.Application()
    app.router.add_get("/seg.ts", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    peak = received = 0
    try:
        await loop.sock_connect(client, ("127.0.0.1", port))
        await loop.sock_sendall(client, b"GET /seg.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        while received < size // 3:
            received += len(await asyncio.wait_for(loop.sock_recv(client, 4096), 5))
            if transports:
                peak = max(peak, transports[0].get_write_buffer_size())
            await asyncio.sleep(0.01)
    finally:
        client.close()
        await runner.cleanup()
    return peak


async def test_a_slow_reader_buffers_one_slice_not_a_copy_of_the_segment() -> None:
    from airclass.web.http import SHARED_CHUNK

    shared = await _peak_write_buffer(shared=True)
    plain = await _peak_write_buffer(shared=False)
    print(
        f"slow reader's server-side write buffer: {shared / 1024:.0f} KiB with send_shared, "
        f"{plain / 1024:.0f} KiB with one write of a 977 KiB body"
    )
    assert shared <= 3 * SHARED_CHUNK, shared  # two slices and the low-water mark
    assert plain > 500_000, plain  # what the helper avoids: a per-client copy of the body


# -- tokens in every wrong shape --------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), signature)
    )


def wrong_tokens(lecture: Lecture) -> dict[str, str]:
    import jwt

    good = lecture.token()
    now = int(time.time())
    claims = jwt.decode(good, options={"verify_signature": False})
    other_key = "k" * 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that our key is short for HS512
        hs512 = jwt.encode(claims, lecture.cluster.secret_key, algorithm="HS512")
    return {
        "blank": " ",
        "one char": "x",
        "huge": "a" * 7000,
        "huge three parts": "a" * 2300 + "." + "b" * 2300 + "." + "c" * 2300,
        "non-ascii": "토큰.토큰.토큰",
        "three dots": "a.b.c.d",
        "only dots": "...",
        "two dots": "..",
        "empty objects": "e30.e30.e30",
        "not json": _b64(b"\xff\xfe") + "." + _b64(b"[1,2") + ".x",
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, claims),
        "alg None": _unsigned({"alg": "None", "typ": "JWT"}, claims),
        "alg none with signature": ".".join(
            (_b64(b'{"alg":"none","typ":"JWT"}'), *good.split(".")[1:])
        ),
        "wrong key": jwt.encode(claims, other_key, algorithm="HS256"),
        "HS512 with our key": hs512,
        "truncated signature": good[:-5],
        "flipped payload": good.split(".")[0]
        + "."
        + _b64(json.dumps({**claims, "node_id": "slave-h", "path": "live/other"}).encode())
        + "."
        + good.split(".")[2],
        "expired": lecture.token(now=now - 7200, ttl=3600),
        "other node": lecture.token(node_id="slave-elsewhere"),
        "other stream": lecture.token(path="live/other"),
        "publish token": lecture.token(action="publish", user_type="teacher"),
        "jku header": _unsigned({"alg": "HS256", "jku": "http://127.0.0.1:1/k"}, claims, "AA"),
    }


def test_tokens_in_every_wrong_shape_are_refused_as_json(lecture: Lecture) -> None:
    port = hls_port(lecture)
    entry = "/live/stream/index.m3u8"
    seen: dict[int, int] = {}
    with viewers(lecture, 15):
        for name, token in wrong_tokens(lecture).items():
            query = urllib.parse.quote(token, safe="")
            replies = [
                get(port, f"{entry}?jwt={query}"),
                get(port, entry, f"Authorization: Bearer {token}"),
            ]
            if token.strip():
                # A bearer token wins over ?jwt= (a blank one counts as none).
                replies.append(
                    get(port, f"{entry}?jwt={lecture.token()}", f"Authorization: Bearer {token}")
                )
            for reply in replies:
                assert reply.status in (401, 403), (name, reply.status, reply.body[:200])
                assert_json_error(reply, 401, 403)
                assert token.encode("utf-8") not in reply.body or len(token) < 4, name
                seen[reply.status] = seen.get(reply.status, 0) + 1
        # No token at all, in each place a client might leave it out.
        for reply in (
            get(port, f"{entry}?jwt="),
            get(port, f"{entry}?jwt"),
            get(port, entry, "Authorization: Bearer"),
            get(port, entry, "Authorization: Bearer    "),
            get(port, entry, "Authorization: Basic dXNlcjpwYXNz"),
            get(port, entry, "Authorization: "),
        ):
            assert_json_error(reply, 401)
        # Raw non-UTF-8 bytes in the header and the query.
        raw = raw_request(
            port,
            b"GET " + entry.encode() + b"?jwt=\xff\xfe HTTP/1.1\r\n"
            b"Host: x\r\nConnection: close\r\n\r\n",
        )
        assert raw.status in (400, 401), raw.status
        raw = raw_request(
            port,
            b"GET " + entry.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer \xc3\x28\xa0\xa1\r\nConnection: close\r\n\r\n",
        )
        assert_json_error(raw, 401)
        # The same token that is right for this node still works.
        assert http_get(lecture.entry_url(lecture.token()))[0] == 200
    print(f"wrong tokens refused: {dict(sorted(seen.items()))}")


# -- teacher password brute force -------------------------------------------------------------


def _teacher(port: int, password: str, source: str) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        body = json.dumps({"user_type": "teacher", "user_id": "ms-kim", "password": password})
        conn.request("POST", "/api/token", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


def test_teacher_password_brute_force_is_rate_limited_per_address(lecture: Lecture) -> None:
    port = lecture.slave.ports["api"]
    password = lecture.cluster.teacher_password
    attacker, teacher = "127.0.0.3", "127.0.0.4"
    with viewers(lecture, 12):
        statuses = []
        for i in range(8):
            status, headers, reply = _teacher(port, f"guess-{i}", attacker)
            statuses.append(status)
            assert set(reply) == {"error"}, reply
            if status == 429:
                assert int(headers["Retry-After"]) > 0, headers
        print(f"wrong passwords from one address: {statuses}")
        first_429 = statuses.index(429)
        assert 3 <= first_429 <= 10 and set(statuses[:first_429]) == {401}, statuses
        assert set(statuses[first_429:]) == {429}, statuses
        # Once limited, even the right password waits: guessing gains nothing.
        status, headers, _ = _teacher(port, password, attacker)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        # Another address is not affected.
        status, _, reply = _teacher(port, password, teacher)
        assert status == 200 and reply["stream_key"], reply
    log = lecture.slave.log()
    assert f"wrong teacher password from {attacker}" in log
    assert f"teacher sign-in from {attacker} rate-limited" in log
    assert "WARNING" in next(line for line in log.splitlines() if "rate-limited" in line)
    assert password not in log and "guess-" not in log
