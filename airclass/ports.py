"""Free local ports for the child processes the demo (and the test suite) starts.

Asking the kernel for port 0 and closing the socket, one port at a time, can hand out the
same port twice in a row, and the ports it picks come from the ephemeral range, where any
outgoing connection may take one before the child binds it. Both were seen: a slave given
one port for RTMP and HLS could not start. So ports here come from below the ephemeral range,
are checked by binding, all of one call are held bound together, and none is handed out twice
by one process. Another program may still bind one first; that is rare and the child fails
loudly at its bind.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

DEFAULT_SPAN = (20000, 32768)
"""Ports tried when the ephemeral range cannot be read (Linux's default starts at 32768)."""

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_ATTEMPTS = 2000

_lock = threading.Lock()
_handed_out: set[int] = set()


def unreserved_span() -> tuple[int, int]:
    """Ports [low, high) that are neither privileged nor in the kernel's ephemeral range."""
    try:
        low, _high = (int(part) for part in _EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_SPAN
    if low - 1024 < 1000:  # an ephemeral range that starts low leaves nothing usable below it
        return DEFAULT_SPAN
    return (max(1024, low - (DEFAULT_SPAN[1] - DEFAULT_SPAN[0])), low)


def free_ports(host: str, count: int, span: tuple[int, int] | None = None) -> list[int]:
    """`count` distinct ports in `span` that bind on `host` now and that this process has not
    handed out before."""
    low, high = span or unreserved_span()
    if count > high - low:
        raise ValueError(f"{count} ports asked of a span of {high - low}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held: list[socket.socket] = []
    ports: list[int] = []
    with _lock:
        try:
            attempts = 0
            while len(ports) < count:
                attempts += 1
                if attempts > _ATTEMPTS:
                    raise OSError(f"no {count} free ports on {host} in {low}-{high - 1}")
                port = random.randrange(low, high)
                if port in _handed_out:
                    continue
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                ports.append(port)
            _handed_out.update(ports)
            return ports
        finally:
            for sock in held:
                sock.close()


def free_port(host: str = "127.0.0.1", span: tuple[int, int] | None = None) -> int:
    """One port, as `free_ports` picks them."""
    return free_ports(host, 1, span)[0]
