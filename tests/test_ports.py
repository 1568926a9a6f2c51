"""Free ports for child processes: distinct, bindable, and outside the ephemeral range."""

from __future__ import annotations

import socket

import pytest

from airclass import ports


def test_one_call_and_later_calls_never_repeat_a_port() -> None:
    seen = ports.free_ports("127.0.0.1", 50) + [ports.free_port() for _ in range(50)]
    assert len(set(seen)) == 100


def test_ports_come_from_the_span_and_bind() -> None:
    span = (41000, 41100)
    picked = ports.free_ports("127.0.0.1", 10, span)
    assert all(41000 <= port < 41100 for port in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_passed_over() -> None:
    span = (41200, 41204)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 41200))
        busy.listen()
        picked = ports.free_ports("127.0.0.1", 3, span)
    assert 41200 not in picked
    assert len(set(picked)) == 3


def test_a_span_with_no_port_left_is_an_error() -> None:
    span = (41300, 41302)
    ports.free_ports("127.0.0.1", 2, span)
    with pytest.raises(OSError, match="no 1 free ports"):
        ports.free_ports("127.0.0.1", 1, span)
    with pytest.raises(ValueError):
        ports.free_ports("127.0.0.1", 3, span)


def test_the_default_span_lies_below_the_ephemeral_range() -> None:
    low, high = ports.unreserved_span()
    assert 1024 <= low < high
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except OSError:
        pytest.skip("no /proc ephemeral range here")
    assert high <= ephemeral_low
