"""Hostile RTMP peers against a real slave while a real lecture runs beside it.

One slave process, one ffmpeg lecture on live/stream and five simulated viewers
(`python -m airclass.loadtest --fail-on-stall`) run for the whole module; each test below is one
kind of attacker. The last test checks what the attackers must not have done: stall a viewer,
or grow the slave's memory without bound.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from airclass.rtmp import amf0
from airclass.rtmp import messages as m
from tests.e2e.conftest import ROOT, Cluster, Node, http_get, http_json, publish, wait_for
from tests.hardening.conftest import RawPeer
from tests.rtmp.publisher import HANDSHAKE, Publisher, avc_header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HANDSHAKE_TIMEOUT = 2.0
LOADTEST_SECONDS = 45.0
RSS_GROWTH_LIMIT = 120 * 2**20
"""The slave may grow by at most this while under attack (its ring of the lecture is ~5 MB;
every per-connection buffer is capped at a few MiB by `RtmpLimits`)."""


@dataclass
class Lecture:
    slave: Node
    cluster: Cluster
    publisher: subprocess.Popen[bytes]
    loadtest: subprocess.Popen[str]
    summary_path: Path
    rss_start: int
    rss_max: int = 0
    sampling: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        status, reply = http_json("GET", f"{self.slave.api}/api/stats")
        assert status == 200
        return dict(reply)

    @property
    def rtmp_port(self) -> int:
        return self.slave.ports["rtmp"]


def _sample_rss(lecture: Lecture, pid: int) -> None:
    proc = psutil.Process(pid)
    while lecture.sampling:
        try:
            lecture.rss_max = max(lecture.rss_max, proc.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lecture(module_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lecture]:
    tmp = tmp_path_factory.mktemp("hostile")
    # Each attacker here is one kind of hostile connection, all from 127.0.0.1: the connection
    # caps (tested in test_rtmp_caps.py) are raised so that they do not hide the guard tested.
    slave = module_cluster.slave(
        "--rtmp-handshake-timeout",
        str(HANDSHAKE_TIMEOUT),
        "--rtmp-max-connections",
        "200",
        "--rtmp-max-connections-per-address",
        "200",
    )
    publisher = publish(
        f"{slave.rtmp}/live/stream?key={module_cluster.stream_key}", 200, log_path=tmp / "pub.log"
    )
    loadtest: subprocess.Popen[str] | None = None
    lecture: Lecture | None = None
    try:
        wait_for(
            lambda: (
                http_json("GET", f"{slave.api}/api/stats")[1]["streams"]
                .get("live/stream", {})
                .get("media_sequence")
                is not None
            ),
            20,
            what="the lecture's first segment",
        )
        assert slave.proc is not None
        rss_start = psutil.Process(slave.proc.pid).memory_info().rss
        summary = tmp / "loadtest.json"
        loadtest = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airclass.loadtest",
                "--url",
                slave.api,
                "--viewers",
                "5",
                "--duration",
                str(LOADTEST_SECONDS),
                "--ramp",
                "1",
                "--json",
                str(summary),
                "--fail-on-stall",
                "--quiet",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lecture = Lecture(slave, module_cluster, publisher, loadtest, summary, rss_start, rss_start)
        threading.Thread(target=_sample_rss, args=(lecture, slave.proc.pid), daemon=True).start()
        time.sleep(4)  # the viewers are playing before the first attacker arrives
        yield lecture
    finally:
        if lecture is not None:
            lecture.sampling = False
        if loadtest is not None and loadtest.poll() is None:
            loadtest.kill()
            loadtest.wait()
        publisher.kill()
        publisher.wait()


def connect_bytes(pub: Publisher) -> bytes:
    return HANDSHAKE + pub.connect()


def dropped_within(peers: list[RawPeer], seconds: float) -> list[bool]:
    deadline = time.monotonic() + seconds
    return [peer.closed_by_server(max(0.0, deadline - time.monotonic())) for peer in peers]


def test_slowloris_handshakes_are_dropped_after_the_timeout(lecture: Lecture) -> None:
    peers = [RawPeer(lecture.rtmp_port) for _ in range(40)]
    started = time.monotonic()
    try:
        # Half dribble a handshake one byte at a time; half finish it and never send connect.
        for i, peer in enumerate(peers):
            peer.send(HANDSHAKE[:1] if i % 2 else HANDSHAKE)
        # The server accepts them asynchronously: all 40 (+ the lecture) are counted quickly.
        wait_for(lambda: lecture.stats()["rtmp_connections"] >= 40, HANDSHAKE_TIMEOUT / 2,
                 interval=0.05, what="the slow peers accepted")
        alive = list(peers)
        position = 1
        while alive and time.monotonic() - started < HANDSHAKE_TIMEOUT + 3:
            for peer in alive[::2]:
                peer.send(HANDSHAKE[position : position + 1])
            position += 1
            time.sleep(0.25)
            alive = [p for p in alive if not p.closed_by_server(0.0)]
        closed = dropped_within(peers, HANDSHAKE_TIMEOUT + 3 - (time.monotonic() - started))
        elapsed = time.monotonic() - started
        kept = closed.count(False)
        assert not kept, f"{kept} slow peers still connected after {elapsed:.1f} s"
        assert elapsed >= HANDSHAKE_TIMEOUT - 0.5, "dropped before their time"
        wait_for(lambda: lecture.stats()["rtmp_connections"] <= 1, 5, what="connections released")
    finally:
        for peer in peers:
            peer.close()


def test_peer_that_never_reads_is_dropped(lecture: Lecture) -> None:
    """Each unknown command is answered with an `_error` that echoes its name: a peer that
    never reads fills the kernel buffers, then our write buffer, and is dropped there."""
    peer = RawPeer(lecture.rtmp_port, rcvbuf=4096)
    pub = Publisher()
    try:
        assert peer.send(connect_bytes(pub) + pub.set_chunk_size(65536))
        name = "x" * 60_000
        flood = pub.command(name, 2.0, None)
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < 30:
            if not peer.send(flood * 10):
                break
            sent += len(flood) * 10
        else:
            pytest.fail(f"still connected after sending {sent} bytes for 30 s")
        # Kernel buffers on both sides plus our cap: the server held at most a few MiB for us.
        assert sent < 64 * 2**20, sent
        lecture.notes["never_reads_sent_mb"] = round(sent / 2**20, 1)
        wait_for(
            lambda: "peer does not read, dropping it" in lecture.slave.log(),
            5,
            what="the drop in the slave's log",
        )
    finally:
        peer.close()


def test_ten_thousand_chunk_streams(lecture: Lecture) -> None:
    peer = RawPeer(lecture.rtmp_port)
    pub = Publisher()
    try:
        peer.handshake()
        peer.send(pub.connect())
        data = bytearray()
        for csid in range(3, 10_003):
            data += pub.writer.write(csid, 0, m.ACKNOWLEDGEMENT, 0, m.acknowledgement(csid))
        peer.send(bytes(data))
        assert peer.closed_by_server(5), "a connection with 10,000 chunk streams was kept"
    finally:
        peer.close()


def _huge(kind: str, pub: Publisher) -> bytes:
    if kind == "chunk-16MiB":
        # The largest length a chunk header can declare (24 bits), over the 8 MiB limit.
        header = bytes([3]) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + bytes([m.COMMAND_AMF0])
        return header + bytes(4) + bytes(128)
    # AMF0 values declaring 4 GiB - 1 bytes or elements, inside a small command message.
    marker = b"\x0c" if kind == "amf-long-string-4GiB" else b"\x0a"
    body = amf0.encode("doIt", 2.0, None) + marker + b"\xff\xff\xff\xff" + b"\x05" * 64
    return pub.writer.write(3, 0, m.COMMAND_AMF0, 0, body)


@pytest.mark.parametrize("kind", ["chunk-16MiB", "amf-long-string-4GiB", "amf-strict-array-4GiB"])
def test_huge_declared_lengths(lecture: Lecture, kind: str) -> None:
    peer = RawPeer(lecture.rtmp_port)
    pub = Publisher()
    try:
        peer.handshake()
        peer.send(pub.connect())
        started = time.monotonic()
        peer.send(_huge(kind, pub))
        assert peer.closed_by_server(5), "the peer was kept"
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT, "closed by a timeout, not a limit"
    finally:
        peer.close()


def test_keyframeless_flood_makes_no_segment(lecture: Lecture) -> None:
    """A publisher that sends a video config and then only inter frames, as fast as it can."""
    peer = RawPeer(lecture.rtmp_port)
    pub = Publisher()
    path = "live/flood"
    try:
        peer.send(pub.up_to_publish(f"flood?key={lecture.cluster.stream_key}"))
        peer.send(pub.set_chunk_size(65536))
        peer.read_until(b"NetStream.Publish.Start", 5)
        avcc = bytes.fromhex(
            "01640014ffe1001967640014acd94141fb0110000003001000000303c0f142996001000668ebe3cb22c0"
        )
        peer.send(pub.video(0, avc_header(1, 0, 0) + avcc))
        inter = avc_header(2, 1, 0) + (60_000).to_bytes(4, "big") + b"\x41" + os.urandom(59_999)
        sent = 0
        ts = 40
        started = time.monotonic()
        while sent < 48 * 2**20 and time.monotonic() - started < 20:
            batch = b"".join(pub.video(ts + 40 * i, inter) for i in range(20))
            assert peer.send(batch), "a flooding but well-formed publisher was dropped"
            sent += len(batch)
            ts += 800
        stream = wait_for(lambda: lecture.stats()["streams"].get(path), 5, what="the flood stream")
        assert stream["publishing"] is True
        lecture.notes["flood_sent_mb"] = round(sent / 2**20, 1)
        # A clean stop: FCUnpublish, deleteStream, close. Once it is seen, every frame before it
        # has been through the packager, and none of them made a segment.
        peer.send(
            pub.command("FCUnpublish", 6.0, None, "flood")
            + pub.command("deleteStream", 7.0, None, 1.0)
        )
        peer.read_until(b"NetStream.Unpublish.Success", 10)
        stream = lecture.stats()["streams"][path]
        assert stream["publishing"] is False
        assert stream["media_sequence"] is None and stream["ring_bytes"] == 0, stream
    finally:
        peer.close()


def test_random_bytes(lecture: Lecture) -> None:
    rng = random.Random(9)
    peers: list[RawPeer] = []
    try:
        for i in range(30):
            peer = RawPeer(lecture.rtmp_port)
            prefix = HANDSHAKE if i % 3 == 0 else b"\x03" if i % 3 == 1 else b""
            peer.send(prefix + rng.randbytes(rng.randrange(1, 200_000)))
            peers.append(peer)
        closed = dropped_within(peers, HANDSHAKE_TIMEOUT + 4)
        assert all(closed), f"{closed.count(False)} of {len(peers)} random peers were kept"
    finally:
        for peer in peers:
            peer.close()


def test_the_lecture_saw_no_stall_and_memory_stayed_bounded(lecture: Lecture) -> None:
    assert lecture.loadtest.poll() is None, "the viewers stopped before the attacks ended"
    output, _ = lecture.loadtest.communicate(timeout=LOADTEST_SECONDS + 60)
    lecture.sampling = False
    summary = json.loads(lecture.summary_path.read_text())
    assert lecture.loadtest.returncode == 0, output
    assert summary["viewers_started"] == 5 and summary["stalls"] == 0 and summary["errors"] == 0
    growth = lecture.rss_max - lecture.rss_start
    lecture.notes.update(
        rss_start_mb=round(lecture.rss_start / 2**20, 1),
        rss_max_mb=round(lecture.rss_max / 2**20, 1),
        segment_fetch_ms_p99=summary["segment_fetch_ms_p99"],
        playlist_age_s_p99=summary["playlist_age_s_p99"],
    )
    print("hostile RTMP:", json.dumps(lecture.notes))
    assert growth < RSS_GROWTH_LIMIT, lecture.notes
    # The slave is still healthy and the lecture still live.
    stats = lecture.stats()
    assert stats["streams"]["live/stream"]["publishing"] is True
    assert http_get(f"{lecture.slave.api}/health")[0] == 200
    socket.create_connection(("127.0.0.1", lecture.rtmp_port), timeout=2).close()
