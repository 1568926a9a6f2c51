"""The stream hub: one publisher per path, takeover by the same owner, eviction."""

from __future__ import annotations

import pytest

from airclass.cluster.wire import ClusterView
from airclass.media.frames import MediaEvent
from airclass.media.hub import StreamBusy, StreamHub
from airclass.web.slave_app import evict_refused


class Sink:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_publish_start(self) -> None:
        self.calls.append("start")

    def on_event(self, event: MediaEvent) -> None:
        self.calls.append("event")

    def on_publish_stop(self) -> None:
        self.calls.append("stop")


def test_takeover_and_eviction_tell_the_publisher_why() -> None:
    sinks: dict[str, Sink] = {}
    hub = StreamHub(lambda path: sinks.setdefault(path, Sink()))
    told: list[str] = []
    first = hub.publish("live/a", "teacher:kim")
    first.on_takeover(told.append)
    with pytest.raises(StreamBusy):
        hub.publish("live/a", "teacher:lee")
    second = hub.publish("live/a", "teacher:kim")
    assert told == ["Stream taken over by a newer connection."] and first.closed
    second.on_takeover(told.append)
    evict_refused(hub, ClusterView("slave-2", {}, (), "", frozenset({"live/a", "live/none"})))
    assert told[1] == "live/a is already live on another node; publish to another name"
    assert second.closed and hub.publisher("live/a") is None
    assert sinks["live/a"].calls == ["start", "stop", "start", "stop"]
    assert not hub.evict("live/a", "again")
