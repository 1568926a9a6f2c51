"""The RTMP server's connection and live-path caps, without sockets."""

from __future__ import annotations

import pytest

from airclass.clients import client_group
from airclass.rtmp.admission import ConnectionSlots, may_go_live


def test_address_groups() -> None:
    assert client_group("192.0.2.7") == "192.0.2.7"
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_group("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client_group("fe80::1%eth0") == "fe80::/64"
    assert client_group("/run/airclass.sock") == "/run/airclass.sock"


def test_per_client_cap() -> None:
    slots = ConnectionSlots(max_total=10, max_per_group=2)
    assert slots.take("10.0.0.1") is None
    assert slots.take("10.0.0.1") is None
    assert slots.take("10.0.0.1") == "2 RTMP connections open from 10.0.0.1, the most per client"
    assert slots.held("10.0.0.1") == 2 and slots.total == 2
    assert slots.take("10.0.0.2") is None
    slots.give_back("10.0.0.1")
    assert slots.take("10.0.0.1") is None
    assert slots.total == 3


def test_total_cap() -> None:
    slots = ConnectionSlots(max_total=3, max_per_group=2)
    for group in ("a", "b", "c"):
        assert slots.take(group) is None
    assert slots.take("d") == "3 RTMP connections open, the most this node accepts"
    assert slots.held("d") == 0
    slots.give_back("b")
    assert slots.take("d") is None
    assert slots.held("b") == 0 and slots.total == 3


def test_giving_back_a_slot_never_taken() -> None:
    slots = ConnectionSlots(max_total=3, max_per_group=2)
    with pytest.raises(RuntimeError):
        slots.give_back("a")
    assert slots.total == 0


def test_live_path_cap() -> None:
    live = ["live/a", "live/b"]
    assert may_go_live("live/c", live, 3)
    assert not may_go_live("live/c", live, 2)
    assert may_go_live("live/a", live, 2)  # its owner reconnecting
    assert may_go_live("live/a", [], 1)
