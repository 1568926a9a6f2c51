"""The control plane's messages: exact JSON both ways, and every URL checked."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airclass.cluster.wire import (
    ClusterView,
    Heartbeat,
    NodeStats,
    Peer,
    Registration,
    StreamOrigin,
    Unregister,
    WireError,
    node_url,
)

REG = "0123456789abcdef" * 2


def test_messages_round_trip_exactly() -> None:
    stats = NodeStats(connections=3, cpu=1.5, memory=2.0, max_connections=150,
                      streams=frozenset({"live/a"}), serving=frozenset({"live/a", "live/b"}),
                      bandwidth=10.0, sessions_opened=4, extra={"uptime": 9.5})
    assert stats.to_json() == {
        "connections": 3, "cpu": 1.5, "memory": 2.0, "max_connections": 150, "bandwidth": 10.0,
        "sessions_opened": 4, "streams": ["live/a"], "serving": ["live/a", "live/b"],
        "uptime": 9.5,
    }
    assert NodeStats.from_json(stats.to_json()) == stats
    beat = Heartbeat("slave-1", REG, stats)
    assert Heartbeat.from_json(beat.to_json()) == beat
    leaving = Unregister("slave-1", REG)
    assert leaving.to_json() == {"node_id": "slave-1", "registration": REG}
    assert Unregister.from_json(leaving.to_json()) == leaving
    reg = Registration("slave-1", "http://10.0.0.5:8000", "http://10.0.0.5:8888",
                       "rtmp://10.0.0.5:1935", 150, "slave-1", stats)
    assert Registration.from_json(reg.to_json()) == reg
    view = ClusterView(
        "slave-2", {"live/a": StreamOrigin("slave-1", "http://h:8888", "http://h:8000")},
        (Peer("slave-1", "http://h:8888", "http://h:8000", "healthy", 2.0),), REG,
        frozenset({"live/b"}),
    )
    assert view.to_json() == {
        "ok": True, "node_id": "slave-2",
        "streams": {"live/a": {"origin": "slave-1", "origin_hls": "http://h:8888",
                               "origin_api": "http://h:8000"}},
        "peers": [{"node_id": "slave-1", "hls_url": "http://h:8888", "api_url": "http://h:8000",
                   "status": "healthy", "load_percentage": 2.0}],
        "registration": REG, "refused": ["live/b"],
    }
    assert ClusterView.from_json(view.to_json()) == view


@pytest.mark.parametrize("url", [
    "http://10.0.0.5:8888", "https://slave-1.school.lan", "http://[fd00::5]:8888",
    "http://10.0.0.5:8888/",
])
def test_node_urls_that_pass(url: str) -> None:
    assert node_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", [
    "http://h:1\r\nX-Injected: 1", "http://h:1 x", "http://h:1/path", "http://h:1?q",
    "http://h:1#f", "ftp://h:1", "javascript:alert(1)", "http://user@h:1", 'http://h"/',
    "http://h:99999", "http://h:0", "http://", "http://h:1\x00", "http://" + "a" * 600,
    "http://h:1/\n", 5, None,
])
def test_node_urls_that_do_not(url: object) -> None:
    with pytest.raises(WireError):
        node_url(url)


def test_a_bad_entry_in_a_view_is_skipped_not_believed() -> None:
    view = ClusterView.from_json({
        "node_id": "slave-2",
        "streams": {
            "live/a": {"origin": "slave-1", "origin_hls": "http://h:1\r\n#EXT-X-ENDLIST",
                       "origin_api": "http://h:2"},
            "live/b": {"origin": "slave-1", "origin_hls": "http://h:1", "origin_api": "http://h:2"},
        },
        "peers": [
            {"node_id": "slave-3", "hls_url": "http://h:3 x", "api_url": "http://h:4",
             "status": "healthy"},
            {"node_id": "slave-4", "hls_url": "http://h:3", "api_url": "http://h:4",
             "status": "offline"},
            {"node_id": "slave-5", "hls_url": "http://h:5", "api_url": "http://h:6",
             "status": "warning", "load_percentage": float("nan")},
        ],
    })
    assert list(view.streams) == ["live/b"]
    assert view.peers == (Peer("slave-5", "http://h:5", "http://h:6", "warning", 0.0),)
    for bad in ([], {"node_id": "x y"}, {"node_id": "s", "registration": "short"}):
        with pytest.raises(WireError):
            ClusterView.from_json(bad)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20,
))
def test_any_json_is_a_view_or_a_wire_error(value: object) -> None:
    for parse in (ClusterView.from_json, Heartbeat.from_json, Registration.from_json,
                  Unregister.from_json, NodeStats.from_json):
        with contextlib.suppress(WireError):
            parse(value)
