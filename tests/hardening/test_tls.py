"""HTTPS and RTMPS on real processes, with a throwaway school CA.

- A slave with --tls-cert serves a real ffmpeg publish over HTTPS to a reader (ffmpeg) that
  verifies the certificate against the CA, and decodes it: with the fast path on (which must
  hand TLS connections to aiohttp: it writes to the socket itself) and off.
- A cluster over HTTPS: a slave that trusts the CA (--tls-ca) registers with an https master
  and relays an https origin; a slave that does not trust it is refused by its own checks.
- RTMPS: ffmpeg publishes rtmps:// to --rtmps-port with the same certificate.
- Someone relaying the traffic between a client and a node reads the teacher password and the
  tokens in clear without TLS, and neither with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Cluster,
    Node,
    free_port,
    http_get,
    http_json,
    need,
    publish,
    wait_for,
)
from tests.hardening.certs import NodeCert, make_ca_and_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@dataclass
class HttpsNode(Node):
    """A node whose HTTP ports speak HTTPS (the test process trusts the CA: SSL_CERT_FILE)."""

    @property
    def api(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    @property
    def hls(self) -> str:
        return f"https://127.0.0.1:{self.ports.get('hls', self.ports['api'])}"


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeCert:
    paths = make_ca_and_node(tmp_path / "pki")
    # urllib in this process (http_json, http_get) verifies against the test CA only.
    monkeypatch.setenv("SSL_CERT_FILE", str(paths.ca))
    return paths


def tls_args(certs: NodeCert) -> list[str]:
    return ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]


def over_https(cluster: Cluster, node: Node, start: bool = True) -> HttpsNode:
    """`node` (made with start=False) as an HttpsNode that does not inherit the test's trust:
    a node trusts the CA only if it is given --tls-ca."""
    env = {k: v for k, v in node.env.items() if k != "SSL_CERT_FILE"}
    https = HttpsNode(node.role, node.args, env, node.log_path, node.ports)
    cluster.nodes[cluster.nodes.index(node)] = https
    if start:
        https.start()
    return https


def read_frames(url: str, ca: Path | None, seconds: float) -> tuple[int, dict[int, list[int]], str]:
    """ffmpeg as an HLS reader over https, verifying the server's certificate."""
    cmd = [need("ffmpeg"), "-hide_banner", "-v", "error", "-tls_verify", "1"]
    if ca is not None:
        cmd += ["-ca_file", str(ca)]
    cmd += ["-i", url, "-t", str(seconds), "-map", "0:v", "-map", "0:a", "-f", "framecrc", "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=60)
    frames: dict[int, list[int]] = {0: [], 1: []}
    for line in out.stdout.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        stream, _dts, pts, *_ = (f.strip() for f in line.split(","))
        frames[int(stream)].append(int(pts))
    return out.returncode, frames, out.stderr.decode()


def student_url(api: str, user_id: str = "student-1") -> str:
    status, reply = http_json(
        "POST", f"{api}/api/token", {"user_type": "student", "user_id": user_id}
    )
    assert status == 200, reply
    return str(reply["hls_url"])


@pytest.mark.parametrize("fast_path", ["--fast-path", "--no-fast-path"])
def test_https_slave_serves_a_real_publish_that_a_verifying_reader_decodes(
    cluster: Cluster, certs: NodeCert, tmp_path: Path, fast_path: str
) -> None:
    slave = over_https(cluster, cluster.slave(*tls_args(certs), fast_path, start=False))
    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 35,
                        log_path=tmp_path / "pub.log")
    try:
        hls_url = student_url(slave.api)
        assert hls_url.startswith(f"https://127.0.0.1:{slave.ports['hls']}/live/stream/")
        wait_for(lambda: http_get(hls_url)[0] == 200, 15, what="the first segment")

        code, frames, errors = read_frames(hls_url, certs.ca, 8)
        assert code == 0 and errors.strip() == "", errors
        assert len(frames[0]) >= 8 * 25 * 0.9, "video frames decoded over https"
        assert len(frames[1]) >= 8 * 46 * 0.9, "audio frames decoded over https"
        for pts in frames.values():
            assert all(b > a for a, b in itertools.pairwise(pts)), "PTS strictly increase"

        # A reader that does not trust the school CA refuses the server.
        code, _frames, errors = read_frames(hls_url, None, 2)
        assert code != 0 and "verif" in errors.lower(), errors
        # Plain HTTP on the HTTPS port gets no reply from the HLS routes.
        with pytest.raises(OSError):
            http_get(hls_url.replace("https://", "http://"), timeout=3)
    finally:
        publisher.kill()
        publisher.wait()
    assert "Traceback" not in slave.log()


def test_cluster_over_https_with_a_school_ca(
    cluster: Cluster, certs: NodeCert, tmp_path: Path
) -> None:
    heartbeat = ["--heartbeat-interval", "0.5"]
    master = over_https(cluster, cluster.master(*tls_args(certs), start=False))
    trust = ["--tls-ca", str(certs.ca)]
    origin = over_https(cluster, cluster.slave(
        *tls_args(certs), *trust, *heartbeat, node_id="origin", master=master, start=False
    ))
    edge = over_https(cluster, cluster.slave(
        *tls_args(certs), *trust, *heartbeat, node_id="edge", master=master, start=False
    ))
    # Without --tls-ca the slave does not trust the master's certificate: never registered.
    stranger = over_https(cluster, cluster.slave(
        *tls_args(certs), *heartbeat, node_id="stranger", master=master, start=False
    ))

    def registered() -> set[str]:
        status, snap = http_json("GET", f"{master.api}/cluster/nodes", timeout=2)
        assert status == 200
        return {n["node_id"] for n in snap["nodes"]}

    wait_for(lambda: {"origin", "edge"} <= registered(), 15, what="both slaves registered")
    # The master advertises the slaves' https URLs to viewers.
    hls_url = student_url(master.api)
    assert hls_url.startswith("https://127.0.0.1:")

    publisher = publish(f"{origin.rtmp}/live/stream?key={cluster.stream_key}", 40,
                        log_path=tmp_path / "pub.log")
    try:
        def relayed() -> int:
            _status, body = http_json("GET", f"{edge.api}/api/stats", timeout=2)
            following = body["relay"]["following"].get("live/stream", {})
            return int(following.get("segments", 0))

        wait_for(lambda: relayed() >= 2, 30, what="the edge relaying the https origin")
    finally:
        publisher.kill()
        publisher.wait()
    assert "stranger" not in registered()
    assert "register to" in stranger.log() and "Certificate" in stranger.log(), (
        stranger.log()[-2000:]
    )
    for node in (master, origin, edge):
        assert "Traceback" not in node.log(), node.log()[-2000:]


def test_rtmps_publish_on_the_same_certificate(cluster: Cluster, certs: NodeCert) -> None:
    rtmps = free_port()
    slave = over_https(
        cluster, cluster.slave(*tls_args(certs), "--rtmps-port", str(rtmps), start=False)
    )
    # ffmpeg's RTMPS client checks the certificate with the CA, as OBS checks it with the
    # system store where the school CA is installed.
    cmd = [need("ffmpeg"), "-hide_banner", "-v", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
           "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-t", "6",
           "-ca_file", str(certs.ca), "-tls_verify", "1",
           "-f", "flv", f"rtmps://127.0.0.1:{rtmps}/live/stream?key={cluster.stream_key}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    try:
        def live() -> bool:
            _status, stats = http_json("GET", f"{slave.api}/api/stats", timeout=2)
            info = stats["streams"].get("live/stream") or {}
            return bool(info.get("publishing")) and (info.get("media_sequence") or 0) >= 1
        wait_for(live, 20, what="the RTMPS publish to make segments")
    finally:
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()


class Eavesdropper:
    """A TCP relay on loopback that keeps a copy of every byte both ways: someone on the
    school Wi-Fi between a tablet and a node."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.seen = bytearray()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1 << 16):
                self.seen += data
                writer.write(data)
                await writer.drain()
            writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer),
                                 return_exceptions=True)

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        asyncio.set_event_loop(self.loop)
        with contextlib.suppress(RuntimeError):  # stopped by close()
            self.loop.run_until_complete(main())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.mark.parametrize("tls", [True, False])
def test_an_eavesdropper_sees_no_password_or_token_only_with_tls(
    cluster: Cluster, certs: NodeCert, tls: bool
) -> None:
    node = cluster.slave(*(tls_args(certs) if tls else []), start=False)
    slave = over_https(cluster, node) if tls else node.start()
    spy = Eavesdropper(slave.ports["api"])
    try:
        scheme = "https" if tls else "http"
        status, reply = http_json(
            "POST", f"{scheme}://127.0.0.1:{spy.port}/api/token",
            {"user_type": "teacher", "user_id": "ms-kim", "password": cluster.teacher_password},
        )
        assert status == 200, reply
    finally:
        spy.close()
    seen = bytes(spy.seen)
    assert len(seen) > len(reply["token"])  # the whole exchange went through the spy
    leaked = [cluster.teacher_password.encode() in seen, reply["token"].encode() in seen]
    assert leaked == ([False, False] if tls else [True, True])
