"""The entry rate limit per token (`TokenBucket`): exact allowances with time as an argument."""

from __future__ import annotations

import pytest

from airclass.web.ratelimit import TokenBucket

KEY = b"token-a\x00"
OTHER = b"token-b\x00"


def test_a_burst_then_one_request_per_interval() -> None:
    bucket = TokenBucket(burst=10, interval=2.0)
    assert [bucket.take(KEY, 0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(KEY, 0.0) == 2.0
    assert bucket.take(KEY, 1.5) == 0.5  # a refused request spends nothing
    assert bucket.take(KEY, 2.0) == 0.0
    assert bucket.take(KEY, 2.0) == 2.0
    assert bucket.take(KEY, 3.0) == 1.0
    assert bucket.refused == 4
    # Another key has its own allowance.
    assert bucket.take(OTHER, 3.0) == 0.0


def test_the_allowance_refills_to_the_burst_and_no_further() -> None:
    bucket = TokenBucket(burst=3, interval=2.0)
    assert [bucket.take(KEY, 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 2.0]
    # A thousand seconds later: the burst again, not five hundred requests.
    assert [bucket.take(KEY, 1000.0) for _ in range(4)] == [0.0, 0.0, 0.0, 2.0]


def test_a_player_polling_every_interval_is_never_refused() -> None:
    bucket = TokenBucket(burst=10, interval=2.0)
    assert all(bucket.take(KEY, 2.0 * i) == 0.0 for i in range(1000))


def test_time_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(burst=2, interval=2.0)
    assert bucket.take(KEY, 100.0) == 0.0
    assert bucket.take(KEY, 100.0) == 0.0
    assert bucket.take(KEY, 50.0) == 2.0  # the clock stepped back 50 s
    assert bucket.take(KEY, 101.0) == 1.0  # counted from 100 s, not from 50 s
    assert bucket.take(KEY, 102.0) == 0.0


def test_memory_is_bounded_by_max_keys() -> None:
    bucket = TokenBucket(burst=1, interval=60.0, max_keys=100)
    for i in range(1000):
        assert bucket.take(i.to_bytes(8, "big"), 0.0) == 0.0
    assert len(bucket) == 100
    # The most recent keys are remembered; the oldest were dropped and start full again.
    assert bucket.take((999).to_bytes(8, "big"), 0.0) == 60.0
    assert bucket.take((0).to_bytes(8, "big"), 0.0) == 0.0


@pytest.mark.parametrize(
    "kwargs", [{"burst": 0}, {"interval": 0.0}, {"interval": float("nan")}, {"max_keys": 0}]
)
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(**kwargs)  # type: ignore[arg-type]
