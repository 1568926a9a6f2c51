"""Helpers for hardening tests: the e2e process helpers, plus raw RTMP peers over sockets."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, cluster, free_port
from tests.rtmp.publisher import HANDSHAKE

__all__ = ["Cluster", "RawPeer", "cluster", "free_port", "module_cluster"]


class RawPeer:
    """A raw TCP peer of an RTMP server: writes what a test crafts, reads only when told."""

    def __init__(
        self,
        port: int,
        *,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
        source: str | None = None,
    ) -> None:
        """`source`: the loopback address to connect from (127.0.0.2, ...), so that one test
        can play several clients."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:  # any 127.0.0.0/8 address: another client, as the server sees it
            self.sock.bind((source, 0))
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.received = bytearray()

    def handshake(self) -> None:
        """C0+C1+C2 and the server's S0+S1+S2."""
        self.sock.sendall(HANDSHAKE)
        self.read_at_least(3073)

    def read_at_least(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.received += data
        return bytes(self.received)

    def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            self.read_at_least(len(self.received) + 1, max(0.01, deadline - time.monotonic()))
        return bytes(self.received)

    def send(self, data: bytes) -> bool:
        """Send everything; False once the server has dropped us."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def closed_by_server(self, timeout: float) -> bool:
        """Wait up to `timeout` s for EOF or a reset, draining whatever the server sends."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                data = None
            except OSError:
                return True
            if data == b"":
                return True
            if data:
                self.received += data
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Processes shared by a module's tests (fuzzers send thousands of requests to one node)."""
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        yield c
    finally:
        c.close()
