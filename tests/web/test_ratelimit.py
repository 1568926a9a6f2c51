"""The guessing limiter's policy, with exact values (time is an argument: nothing sleeps)."""

from __future__ import annotations

import pytest

from airclass.clients import client_group
from airclass.web.ratelimit import GuessLimiter, GuessPolicy


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("::ffff:10.0.0.5", "10.0.0.5"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_client_key(address: str, key: str) -> None:
    assert client_group(address) == key


def test_burst_then_one_attempt_per_refill() -> None:
    limiter = GuessLimiter(GuessPolicy(burst=3, refill=10.0))
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1", 100.0) == 0.0
        limiter.failed("10.0.0.1", 100.0)
    assert limiter.retry_after("10.0.0.1", 100.0) == 10.0
    assert limiter.retry_after("10.0.0.1", 104.0) == pytest.approx(6.0)
    assert limiter.retry_after("10.0.0.1", 110.0) == 0.0
    limiter.failed("10.0.0.1", 110.0)
    assert limiter.retry_after("10.0.0.1", 110.0) == 10.0
    # Another client is not affected; a success forgives.
    assert limiter.retry_after("10.0.0.2", 110.0) == 0.0
    limiter.succeeded("10.0.0.1")
    assert limiter.retry_after("10.0.0.1", 110.0) == 0.0


def test_an_ipv6_slash_64_is_one_client() -> None:
    limiter = GuessLimiter(GuessPolicy(burst=2, refill=30.0))
    limiter.failed("2001:db8::1", 0.0)
    limiter.failed("2001:db8::ffff:2", 0.0)
    assert limiter.retry_after("2001:db8::3", 0.0) == 30.0
    assert limiter.retry_after("2001:db8:0:1::3", 0.0) == 0.0
    assert len(limiter) == 1


def test_global_ceiling_refuses_recent_failers_only() -> None:
    policy = GuessPolicy(burst=5, refill=12.0, global_limit=4, global_window=40.0,
                         siege_memory=300.0)
    limiter = GuessLimiter(policy)
    # Four addresses, one failure each: each is far below its own burst.
    for i in range(4):
        limiter.failed(f"10.0.1.{i}", 0.0)
    assert limiter.under_siege(0.0)
    # A recent failer waits for the siege to drain: (4 - 4 + 1) / (4 / 40) = 10 s.
    assert limiter.retry_after("10.0.1.0", 0.0) == 10.0
    # A client with no failure still gets its attempt (the real teacher is not locked out).
    assert limiter.retry_after("10.0.2.1", 0.0) == 0.0
    assert limiter.check("10.0.1.1", 0.0) == 10.0 and limiter.refused == 1
    assert not limiter.under_siege(10.0)
    assert limiter.retry_after("10.0.1.0", 10.0) == 0.0


def test_siege_bounded_by_memory_and_capped() -> None:
    policy = GuessPolicy(burst=1000, refill=1.0, global_limit=2, global_window=10.0,
                         siege_memory=3.0)
    limiter = GuessLimiter(policy)
    for i in range(50):  # the global level stops at 2 x the limit
        limiter.failed(f"10.0.3.{i}", 0.0)
    # Siege wait (4 - 2 + 1) / 0.2 = 15 s, but the failure is forgotten after 3 s.
    assert limiter.retry_after("10.0.3.0", 0.0) == 3.0
    assert limiter.retry_after("10.0.3.0", 3.0) == 0.0
    assert limiter.under_siege(9.9) and not limiter.under_siege(10.1)


def test_memory_is_bounded() -> None:
    limiter = GuessLimiter(GuessPolicy(burst=1, max_clients=3, global_limit=1000))
    for i in range(10):
        limiter.failed(f"10.0.4.{i}", float(i))
    assert len(limiter) == 3
    assert limiter.retry_after("10.0.4.9", 9.0) == 12.0
    assert limiter.retry_after("10.0.4.0", 9.0) == 0.0  # forgotten: forgiven


@pytest.mark.parametrize(
    "bad",
    [{"burst": 0}, {"global_limit": 0}, {"refill": 0.0}, {"siege_memory": float("inf")}],
)
def test_policy_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GuessPolicy(**bad)  # type: ignore[arg-type]
