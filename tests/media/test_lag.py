"""IngestLag: how far behind real time a publisher's frames arrive."""

from __future__ import annotations

import pytest

from airclass.media.lag import IngestLag


def feed(lag: IngestLag, frames: list[tuple[str, int, float]]) -> list[str | None]:
    return [lag.observe(kind, dts, now) for kind, dts, now in frames]  # type: ignore[arg-type]


def test_a_publisher_that_keeps_up_is_not_behind() -> None:
    lag = IngestLag()
    # 25 fps video arriving 40 ms apart, 100.3 s on the slave's clock for timestamp 0.
    changes = feed(lag, [("video", 40 * i, 100.3 + 0.04 * i) for i in range(250)])
    assert changes == [None] * 250
    assert lag.current == pytest.approx(0.0, abs=1e-9)
    assert lag.worst == pytest.approx(0.0, abs=1e-9)
    assert (lag.falls, lag.late) == (0, False)


def test_each_track_keeps_its_own_delay() -> None:
    lag = IngestLag()
    # Audio sent 200 ms ahead of the video it goes with: a constant offset, not lag.
    frames = []
    for i in range(50):
        frames += [("video", 40 * i, 10.0 + 0.04 * i), ("audio", 40 * i, 9.8 + 0.04 * i)]
    assert feed(lag, frames) == [None] * 100
    assert lag.worst == pytest.approx(0.0, abs=1e-9)


def test_a_fall_behind_counts_once_until_the_publisher_is_back_under_half() -> None:
    lag = IngestLag()
    frames = [("video", 40 * i, 10.0 + 0.04 * i) for i in range(10)]  # on time, to 10.36
    # The encoder stands still 0.8 s, then sends a frame every 10 ms until it has caught up:
    # 30 ms less behind with each.
    frames += [("video", 400 + 40 * k, 11.2 + 0.01 * k) for k in range(25)]
    changes = feed(lag, frames)
    assert changes[:10] == [None] * 10
    assert changes[10] == "late"
    assert lag.peak == pytest.approx(0.8, abs=0.001)
    assert changes[11:] == [None] * 18 + ["caught_up"] + [None] * 5  # under 0.25 s at k = 19
    assert lag.falls == 1 and not lag.late
    assert lag.worst == pytest.approx(0.8, abs=0.001)
    assert lag.current == pytest.approx(0.8 - 0.03 * 24, abs=0.002)


def test_a_second_fall_counts_again() -> None:
    lag = IngestLag()
    frames = [("video", 0, 5.0), ("video", 40, 5.6), ("video", 80, 5.62), ("video", 560, 5.63),
              ("video", 600, 6.4)]
    assert feed(lag, frames) == [None, "late", None, "caught_up", "late"]
    assert lag.falls == 2 and lag.late
    assert lag.peak == pytest.approx(0.8 - 0.0014, abs=0.0001)
    assert lag.worst == lag.peak


def test_timestamps_that_go_back_start_the_reckoning_again() -> None:
    lag = IngestLag()
    # OBS reconnects without a new publish message and starts its timestamps at 0 again.
    frames = [("video", 90_000 + 40 * i, 200.0 + 0.04 * i) for i in range(5)]
    frames += [("video", 40 * i, 300.0 + 0.04 * i) for i in range(5)]
    assert feed(lag, frames) == [None] * 10
    assert lag.worst == pytest.approx(0.0, abs=1e-9)


def test_a_slow_publisher_clock_is_drift_not_lag() -> None:
    lag = IngestLag()
    # The publisher's clock runs 100 ppm slow: over two hours its frames seem 0.72 s late.
    frames = [("video", 1000 * i, 50.0 + i * 1.0001) for i in range(7200)]
    assert set(feed(lag, frames)) == {None}
    assert lag.worst < 0.001


def test_a_new_publish_starts_afresh_but_keeps_the_count() -> None:
    lag = IngestLag()
    feed(lag, [("video", 0, 1.0), ("video", 40, 1.7)])
    assert (lag.falls, lag.late) == (1, True)
    assert lag.current == pytest.approx(0.66 - 0.0007)
    lag.reset()
    assert (lag.falls, lag.late, lag.current, lag.worst, lag.peak) == (1, False, 0.0, 0.0, 0.0)
    assert feed(lag, [("video", 0, 9.0), ("video", 40, 9.04)]) == [None, None]
