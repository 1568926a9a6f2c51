"""Settings from flags: values that start with "-" (a generated key may) are values."""

from __future__ import annotations

import secrets

import pytest

from airclass.config import ConfigError, load
from airclass.web.slave_app import SLAVE, create_app


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


def test_rtmp_caps_from_flags_and_environment() -> None:
    config = load("slave", [], environ={})
    assert (
        config.rtmp_publish_timeout,
        config.rtmp_max_connections,
        config.rtmp_max_connections_per_address,
        config.max_streams,
    ) == (15.0, 64, 8, 16)
    config = load(
        "slave",
        ["--max-streams", "3", "--rtmp-publish-timeout", "5"],
        environ={
            "MAX_STREAMS": "9",
            "RTMP_MAX_CONNECTIONS": "20",
            "RTMP_MAX_CONNECTIONS_PER_ADDRESS": "4",
            "SECRET_KEY": secrets.token_urlsafe(32),
        },
    )
    assert (
        config.rtmp_publish_timeout,
        config.rtmp_max_connections,
        config.rtmp_max_connections_per_address,
        config.max_streams,
    ) == (5.0, 20, 4, 3)
    limits = create_app(config)[SLAVE].rtmp.limits
    assert (
        limits.publish_timeout,
        limits.max_connections,
        limits.max_connections_per_address,
        limits.max_live_paths,
    ) == (5.0, 20, 4, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-streams", "0"], "--max-streams must be at least 1"),
        (["--rtmp-max-connections", "0"], "--rtmp-max-connections must be at least 1"),
        (
            ["--rtmp-max-connections-per-address", "-1"],
            "--rtmp-max-connections-per-address must be at least 1",
        ),
        (["--rtmp-publish-timeout", "0"], "--rtmp-publish-timeout must be between 0 and 300"),
        (["--rtmp-publish-timeout", "301"], "--rtmp-publish-timeout must be between 0 and 300"),
    ],
)
def test_rtmp_caps_out_of_range(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load("slave", argv, environ={})
