"""RTMP peers that never publish, floods of refused publishes, and one stream too many, against
a real slave process.

Peers come from several loopback addresses (127.0.0.2, 127.0.0.3, ...) so that one test can
play many clients; the real ffmpeg publisher comes from 127.0.0.1.
"""

from __future__ import annotations

import select
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from airclass.rtmp import messages as m
from tests.e2e.conftest import Cluster, Node, http_get, http_json, publish, wait_for
from tests.e2e.test_slave_media import media_playlist_url, playlist_entries, student_hls_url
from tests.hardening.conftest import RawPeer
from tests.rtmp.publisher import HANDSHAKE, Publisher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PUBLISH_TIMEOUT = 8.0
MAX_CONNECTIONS = 48
PER_ADDRESS = 8
RSS_GROWTH_LIMIT = 50 * 2**20


class RssSampler:
    """The largest RSS of a process, sampled every 50 ms in a thread while in the block."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start: int = self.proc.memory_info().rss
        self.max = self.start
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self._running:
            try:
                self.max = max(self.max, int(self.proc.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    @property
    def growth(self) -> int:
        return int(self.max - self.start)


def accepted(peer: RawPeer) -> bool:
    """True if the server answered the handshake; False if it closed at once (refused)."""
    try:
        peer.read_at_least(3073, timeout=3)
    except ConnectionError:
        return False
    return True


def patient_peer(port: int, source: str) -> RawPeer:
    """Connects, then starts a 60,000-byte command and sends half of it: under every byte cap,
    and never publishes."""
    peer = RawPeer(port, source=source)
    pub = Publisher()
    peer.send(HANDSHAKE + pub.connect() + pub.set_chunk_size(65536))
    message = pub.writer.write(8, 0, m.COMMAND_AMF0, 0, bytes(60_000))
    peer.send(message[:30_000])
    return peer


def greedy_peer(port: int, source: str, i: int) -> tuple[RawPeer, int]:
    """Connects and sends as much as it can of large partial messages: half of one message of
    8 MiB - 1 (even peers), or the first halves of 60 messages of 60,000 bytes on 60 chunk
    streams (odd peers). Returns the peer and the bytes the server took before it refused."""
    peer = RawPeer(port, source=source, timeout=10)
    pub = Publisher()
    sent = 0
    if not peer.send(HANDSHAKE + pub.connect() + pub.set_chunk_size(65536)):
        return peer, sent
    if i % 2 == 0:
        data = pub.writer.write(8, 0, m.COMMAND_AMF0, 0, bytes(8 * 2**20 - 1))[: 4 * 2**20]
        pieces = [data[j : j + 256 * 1024] for j in range(0, len(data), 256 * 1024)]
    else:
        pieces = [
            pub.writer.write(csid, 0, m.COMMAND_AMF0, 0, bytes(60_000))[:30_000]
            for csid in range(10, 70)
        ]
    for piece in pieces:
        if not peer.send(piece):
            break
        sent += len(piece)
    return peer, sent


@pytest.fixture
def slave(cluster: Cluster) -> Node:
    return cluster.slave(
        "--rtmp-publish-timeout",
        str(PUBLISH_TIMEOUT),
        "--rtmp-max-connections",
        str(MAX_CONNECTIONS),
        "--rtmp-max-connections-per-address",
        str(PER_ADDRESS),
    )


class CloseWatcher:
    """Records when the server closes each of `peers` (EOF or reset), in a thread."""

    def __init__(self, peers: list[RawPeer]) -> None:
        self.closed_at: dict[int, float] = {}
        self._peers = peers
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        open_socks = {peer.sock: i for i, peer in enumerate(self._peers)}
        while self._running and open_socks:
            readable, _, _ = select.select(list(open_socks), [], [], 0.05)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.closed_at[open_socks.pop(sock)] = time.monotonic()

    def stop(self) -> None:
        self._running = False
        self._thread.join()


def test_peers_that_never_publish(cluster: Cluster, slave: Node, tmp_path: Path) -> None:
    port = slave.ports["rtmp"]
    assert slave.proc is not None
    peers: list[RawPeer] = []
    publisher = None
    watcher = None
    try:
        with RssSampler(slave.proc.pid) as rss:
            # 36 patient peers from 4 addresses: 12 from the first, 4 of them past its cap.
            started = time.monotonic()
            sources = ["127.0.0.2"] * 12 + ["127.0.0.3", "127.0.0.4", "127.0.0.5"] * 8
            patient = [patient_peer(port, source) for source in sources]
            peers += patient
            first = [accepted(peer) for peer in patient[:12]]
            assert first == [True] * PER_ADDRESS + [False] * 4, first
            patient = patient[:PER_ADDRESS] + patient[12:]
            assert all(accepted(peer) for peer in patient[PER_ADDRESS:])
            wait_for(lambda: stats(slave)["rtmp_connections"] == 32, 5, what="32 connections")
            watcher = CloseWatcher(patient)

            # The node-wide cap: 16 more fill it; the next are refused, whatever their address.
            filling = [RawPeer(port, source=f"127.0.0.{6 + i // 8}") for i in range(16)]
            peers += filling
            for peer in filling:
                peer.send(HANDSHAKE)
                assert accepted(peer)
            over = [RawPeer(port, source="127.0.0.9") for _ in range(3)]
            peers += over
            for peer in over:
                peer.send(HANDSHAKE)
                assert not accepted(peer)
            for peer in filling:
                peer.close()
            wait_for(lambda: stats(slave)["rtmp_connections"] == 32, 5, what="the 16 released")

            # A real encoder, meanwhile, still publishes ...
            publisher = publish(
                f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 40, log_path=tmp_path / "p"
            )
            # ... while greedy peers from five more addresses are each dropped at the
            # pre-publish cap, however much they try to send.
            for i in range(40):
                peer, sent = greedy_peer(port, f"127.0.0.{10 + i // 8}", i)
                peers.append(peer)
                assert peer.closed_by_server(5), f"greedy peer {i} kept after {sent} bytes"
                peer.close()

            # Every patient peer is closed at its deadline, not before, not much after.
            wait_for(lambda: len(watcher.closed_at) == len(patient), PUBLISH_TIMEOUT + 5,
                     interval=0.1, what="every patient peer closed")
            after = sorted(t - started for t in watcher.closed_at.values())
            assert after[0] >= PUBLISH_TIMEOUT - 0.2 and after[-1] <= PUBLISH_TIMEOUT + 3, after

            # ... and is watched.
            hls_url = student_hls_url(slave.api)
            wait_for(lambda: http_get(hls_url)[0] == 200, 20, what="the first segment")
            media_url = media_playlist_url(hls_url)
            status, body, _ = http_get(media_url)
            assert status == 200
            uri = playlist_entries(body.decode())[0][1]
            status, data, _ = http_get(f"{media_url.rsplit('/', 1)[0]}/{uri}")
            assert status == 200 and len(data) > 10_000
            assert stats(slave)["rtmp_connections"] == 1
            assert publisher.poll() is None
        print(
            f"never-publishing peers: RSS grew {rss.growth / 2**20:.1f} MiB "
            f"(from {rss.start / 2**20:.1f} MiB); patient peers closed "
            f"{after[0]:.2f}-{after[-1]:.2f} s after the first connected"
        )
        assert rss.growth < RSS_GROWTH_LIMIT, rss.growth
        log = slave.log()
        assert f"no publish within {PUBLISH_TIMEOUT:.0f} s, closing" in log
        assert "the most per client" in log and "the most this node accepts" in log
        assert "before a publish" in log
    finally:
        if watcher is not None:
            watcher.stop()
        for peer in peers:
            peer.close()
        if publisher is not None:
            publisher.kill()
            publisher.wait()


def stats(slave: Node) -> dict[str, Any]:
    status, reply = http_json("GET", f"{slave.api}/api/stats")
    assert status == 200
    return dict(reply)


ERROR_STATUS = b"\x00\x05level\x02\x00\x05error"
"""An onStatus info object's `level: "error"`, as AMF0 encodes it."""


def refused_publish(port: int, name: str, source: str = "127.0.0.2") -> bytes:
    """Publishes `name` from a raw peer; returns what the server sent before it closed."""
    peer = RawPeer(port, source=source)
    try:
        peer.send(Publisher().up_to_publish(name))
        peer.read_until(b"NetStream.Publish.", 5)
        assert peer.closed_by_server(5), "a refused publisher was kept"
        return bytes(peer.received)
    finally:
        peer.close()


def test_hostile_stream_name_is_logged_escaped(slave: Node) -> None:
    name = "evil\r\n2026-12-05 00:00:00 INFO fake line\x1b[2J\x00end"
    reply = refused_publish(slave.ports["rtmp"], f"{name}?key=wrong")
    assert b"NetStream.Publish.BadName" in reply
    time.sleep(0.5)  # the slave writes its log line right after the reply
    log = slave.log()
    assert "\x1b" not in log and "\x00" not in log
    lines = [line for line in log.splitlines() if "fake line" in line]
    assert len(lines) == 1, lines
    assert "publish refused" in lines[0]
    assert "live/evil\\x0d\\x0a2026-12-05 00:00:00 INFO fake line\\x1b[2J\\x00end" in lines[0]
    assert not any(line.startswith("2026-12-05 00:00:00 INFO fake") for line in log.splitlines())


def test_bad_key_publishes_leave_a_bounded_number_of_log_lines(slave: Node) -> None:
    port = slave.ports["rtmp"]
    started = time.monotonic()
    for i in range(200):
        reply = refused_publish(port, f"stream?key=guess-{i}", source="127.0.0.2")
        assert ERROR_STATUS in reply and b"is now published" not in reply
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    lines = [line for line in slave.log().splitlines() if "publish refused" in line]
    print(f"200 bad-key publishes in {elapsed:.1f} s: {len(lines)} log lines")
    # One line per 10 s per client.
    assert 1 <= len(lines) <= elapsed / 10 + 1, lines
    # Another client's refusal is still logged at once.
    refused_publish(port, "stream?key=other", source="127.0.0.3")
    time.sleep(0.5)
    assert any("127.0.0.3" in line for line in slave.log().splitlines() if "refused" in line)
    if len(lines) == 1:
        # The first client's next line, 10 s after its first, counts the ones skipped.
        time.sleep(max(0.0, started + 10.5 - time.monotonic()))
        refused_publish(port, "stream?key=guess-200", source="127.0.0.2")
        time.sleep(0.5)
        lines = [line for line in slave.log().splitlines() if "publish refused" in line]
        assert lines[-1].endswith("(199 more like this not logged)"), lines[-1]


def test_max_streams(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave("--max-streams", "2")
    port = slave.ports["rtmp"]
    key = cluster.stream_key
    encoders = [
        publish(f"{slave.rtmp}/live/{name}?key={key}", 60, log_path=tmp_path / f"{name}.log")
        for name in ("one", "two")
    ]
    try:
        wait_for(
            lambda: all(
                stats(slave)["streams"].get(f"live/{n}", {}).get("publishing")
                for n in ("one", "two")
            ),
            20,
            what="two live streams",
        )
        # A third path is refused with an onStatus error, then closed; so is a real ffmpeg.
        reply = refused_publish(port, f"three?key={key}")
        assert b"NetStream.Publish.Rejected" in reply
        assert b"This node already carries 2 live streams, its most." in reply
        third = publish(f"{slave.rtmp}/live/three?key={key}", 10, log_path=tmp_path / "3.log")
        assert third.wait(20) != 0
        assert "live/three" not in stats(slave)["streams"]
        # Its owner reconnecting to a live path is a takeover, not one stream more.
        peer = RawPeer(port, source="127.0.0.3")
        try:
            peer.send(Publisher().up_to_publish(f"one?key={key}"))
            peer.read_until(b"NetStream.Publish.Start", 5)
        finally:
            peer.close()
        # Once a stream ends, another may start.
        encoders[1].kill()
        encoders[1].wait()
        wait_for(
            lambda: not stats(slave)["streams"]["live/two"]["publishing"],
            10,
            what="live/two to end",
        )
        peer = RawPeer(port, source="127.0.0.4")
        try:
            peer.send(Publisher().up_to_publish(f"three?key={key}"))
            peer.read_until(b"NetStream.Publish.Start", 5)
        finally:
            peer.close()
        log = slave.log()
        assert "publish refused: NetStream.Publish.Rejected" in log
    finally:
        for encoder in encoders:
            encoder.kill()
            encoder.wait()
