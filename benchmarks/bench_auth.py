"""Costs of the auth hot paths: run with
`python -m pytest benchmarks/bench_auth.py --benchmark-only` from the repository root.

A token is minted per join and verified per viewer entry; a session id is checked on every
playlist and segment request (goal: at most 5 µs); control-plane signatures are verified on
every heartbeat.
"""

from __future__ import annotations

from typing import Any

from airclass.auth.sessions import SessionSigner, SessionTable
from airclass.auth.tokens import TokenIssuer
from airclass.cluster.signing import ReplayCache, sign, verify

SECRET = "benchmark-secret-0123456789abcdefghij"
NOW = 1_700_000_000.0
BODY = b'{"node_id": "slave-1", "stats": {"connections": 45, "cpu": 25.5, "memory": 35.2}}'


def test_token_mint(benchmark: Any) -> None:
    issuer = TokenIssuer(SECRET)
    token = benchmark(issuer.mint, user_type="student", user_id="student-1", action="read",
                      path="live/stream", node_id="slave-1", now=NOW, ttl=3600)
    assert issuer.verify(token, now=NOW).user_id == "student-1"


def test_token_verify(benchmark: Any) -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.mint(user_type="student", user_id="student-1", action="read",
                        path="live/stream", node_id="slave-1", now=NOW, ttl=3600)
    claims = benchmark(issuer.verify, token, now=NOW + 1)
    assert claims.node_id == "slave-1"


def test_session_check(benchmark: Any) -> None:
    signer = SessionSigner(SECRET, "slave-1")
    sid = signer.mint("live/stream", NOW + 3600)
    info = benchmark(signer.check, sid, "live/stream")
    assert info is not None


def test_session_check_forged(benchmark: Any) -> None:
    signer = SessionSigner(SECRET, "slave-1")
    sid = SessionSigner(SECRET, "slave-2").mint("live/stream", NOW + 3600)
    assert benchmark(signer.check, sid, "live/stream") is None


def test_session_mint(benchmark: Any) -> None:
    signer = SessionSigner(SECRET, "slave-1")
    sid = benchmark(signer.mint, "live/stream", NOW + 3600, "student-1")
    assert signer.check(sid, "live/stream") is not None


def test_session_table_touch_1000_viewers(benchmark: Any) -> None:
    table = SessionTable()
    sids = [f"sid-{i}" for i in range(1000)]
    clock = iter(range(10**9))

    def touch_all() -> None:
        now = NOW + next(clock) * 0.001
        for sid in sids:
            table.touch(sid, "live/stream", now, nbytes=1000)

    benchmark(touch_all)
    assert table.count(NOW + 1) == 1000


def test_signing_verify(benchmark: Any) -> None:
    headers = sign(SECRET, "POST", "/cluster/stats", BODY, NOW)
    benchmark(verify, SECRET, "POST", "/cluster/stats", BODY, headers, NOW)


def test_signing_verify_with_replay_cache(benchmark: Any) -> None:
    cache = ReplayCache()
    requests = iter([sign(SECRET, "POST", "/cluster/stats", BODY, NOW) for _ in range(200_000)])

    def verify_next() -> None:
        verify(SECRET, "POST", "/cluster/stats", BODY, next(requests), NOW, replay=cache)

    benchmark.pedantic(verify_next, rounds=20_000, iterations=1)
