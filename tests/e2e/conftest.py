"""Real processes on loopback: slaves, masters, and ffmpeg as publisher and reader."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airclass.ports import free_port as pick_port
from airclass.ports import unreserved_span

ROOT = Path(__file__).resolve().parents[2]


def _worker_span() -> tuple[int, int] | None:
    """This pytest-xdist worker's own slice of the free-port span, so workers never race for
    one port; None (the whole span) outside xdist."""
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT"
    )
    if not worker or not workers:
        return None
    low, high = unreserved_span()
    index, count = int(worker.removeprefix("gw")), int(workers)
    width = (high - low) // count
    return (low + index * width, low + (index + 1) * width)


def free_port() -> int:
    """A loopback port for a server a test starts; never the same one twice in a run."""
    return pick_port("127.0.0.1", _worker_span())


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")
    return path


def http_json(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def http_get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)



ONE_BROWSER_AT_A_TIME = pytest.mark.xdist_group("browser")
"""Browser tests share one pytest-xdist worker, so they run one after another: two Chromiums
decoding video beside their encoders on two cores make playback timings (latency, failover
stall) measure the machine, not the product."""

@dataclass
class Node:
    """One airclass process."""

    role: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def hls(self) -> str:
        return f"http://127.0.0.1:{self.ports.get('hls', self.ports['api'])}"

    @property
    def rtmp(self) -> str:
        return f"rtmp://127.0.0.1:{self.ports['rtmp']}"

    def start(self, wait: float = 15.0) -> Node:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"airclass.{self.role}", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} exited: {self.log_path.read_text()[-3000:]}")
            try:
                status, _ = http_json("GET", f"{self.api}/health", timeout=1)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.role} did not become healthy: {self.log_path.read_text()[-3000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    tmp: Path
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cluster_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    teacher_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    stream_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nodes: list[Node] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                (
                    "SECRET_KEY",
                    "CLUSTER_KEY",
                    "MASTER_URL",
                    "NODE_ID",
                    "TEACHER_PASSWORD",
                    "STREAM_KEY",
                    "CLASS_CODE",
                )
            )
        }
        env.update(
            SECRET_KEY=self.secret_key,
            CLUSTER_KEY=self.cluster_key,
            TEACHER_PASSWORD=self.teacher_password,
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
        )
        return env

    def slave(
        self,
        *extra: str,
        node_id: str | None = None,
        master: Node | None = None,
        start: bool = True,
    ) -> Node:
        ports = {"rtmp": free_port(), "hls": free_port(), "api": free_port()}
        node_id = node_id or f"slave-{len(self.nodes) + 1}"
        args = [
            "--bind",
            "127.0.0.1",
            "--public-host",
            "127.0.0.1",
            "--node-id",
            node_id,
            "--rtmp-port",
            str(ports["rtmp"]),
            "--hls-port",
            str(ports["hls"]),
            "--api-port",
            str(ports["api"]),
            f"--stream-key={self.stream_key}",  # a key may start with "-"
            *extra,
        ]
        if master is not None:
            args += ["--master-url", master.api]
        env = self.env()
        if "--master-url" in args:
            # Teachers sign in on the master: a slave of a cluster refuses to hold it.
            del env["TEACHER_PASSWORD"]
        node = Node("slave", args, env, self.tmp / f"{node_id}.log", ports)
        self.nodes.append(node)
        return node.start() if start else node

    def master(self, *extra: str, start: bool = True, port: int | None = None) -> Node:
        ports = {"api": port or free_port()}
        args = [
            "--bind",
            "127.0.0.1",
            "--public-host",
            "127.0.0.1",
            "--api-port",
            str(ports["api"]),
            *extra,
        ]
        node = Node("master", args, self.env(), self.tmp / f"master-{len(self.nodes)}.log", ports)
        self.nodes.append(node)
        return node.start() if start else node

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def publish(
    url: str,
    seconds: float,
    *,
    gop: int = 50,
    size: str = "320x240",
    rate: int = 25,
    audio: bool = True,
    video: bool = True,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """A real ffmpeg publisher: test pattern + tone, H.264 (B-frames) + AAC, in real time."""
    cmd = [need("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    if video:
        cmd += [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "800k",
        ]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "2"]
    cmd += ["-t", str(seconds), "-f", "flv", url]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL
    )


LINK_SLICE = 1448
"""Bytes per TCP segment on an Ethernet path (MSS): the unit a paced link forwards."""


@dataclass
class LinkPacer:
    """One direction of a link of `mbit` Mbit/s: `send` forwards data one TCP segment at a
    time, each when the link would have carried it (a teacher's uplink, on loopback)."""

    mbit: float
    _free_at: float = 0.0

    async def send(self, data: bytes, forward: Callable[[bytes], None]) -> None:
        seconds_per_byte = 8 / (self.mbit * 1e6)
        for i in range(0, len(data), LINK_SLICE):
            piece = data[i : i + LINK_SLICE]
            now = time.perf_counter()
            if self._free_at > now + 0.0002:
                # The loop sleeps in whole milliseconds: the segments due meanwhile go out
                # together on waking, so the rate holds and the bursts stay ≤ ~1 ms long.
                await asyncio.sleep(self._free_at - now)
                now = time.perf_counter()
            start = self._free_at if self._free_at > now - 0.002 else now
            self._free_at = start + len(piece) * seconds_per_byte
            forward(piece)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until the end, then close `writer`."""
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
