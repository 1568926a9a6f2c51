"""Settings from flags: values that start with "-" (a generated key may) are values."""

from __future__ import annotations

import secrets

from airclass.config import load


def test_values_starting_with_a_dash_are_values_not_flags() -> None:
    secret = "-" + secrets.token_urlsafe(32)
    cluster = "-" + secrets.token_urlsafe(32)
    config = load(
        "slave",
        ["--secret-key", secret, f"--cluster-key={cluster}", "--stream-key", "-key",
         "--no-low-latency", "--hls-port", "8099"],
        environ={},
    )
    assert config.secret_key == secret
    assert config.cluster_key == cluster
    assert config.stream_key == "-key"
    assert config.low_latency is False
    assert config.hls_port == 8099


def test_flags_still_win_over_the_environment() -> None:
    key = secrets.token_urlsafe(32)
    config = load("master", ["--secret-key", key], environ={"SECRET_KEY": "x" * 40})
    assert config.secret_key == key
