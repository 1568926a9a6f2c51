"""Settings from flags: values that start with "-" (a generated key may) are values."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from airclass.config import ConfigError, load, read_token_file


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


def test_viewer_limits_and_operator_access_settings(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("  scrape-0123456789abcdef\n")
    config = load(
        "slave",
        ["--sessions-per-token", "2", "--entry-burst", "5", "--entry-refill", "1.5",
         f"--metrics-token-file={token_file}"],
        environ={"TRUSTED_NETWORKS": "10.0.0.0/8, 127.0.0.1/32"},
    )
    assert (config.sessions_per_token, config.entry_burst, config.entry_refill) == (2, 5, 1.5)
    assert config.trusted_networks == "10.0.0.0/8, 127.0.0.1/32"
    assert read_token_file(config.metrics_token_file) == "scrape-0123456789abcdef"
    defaults = load("slave", [], environ={})
    limits = (defaults.sessions_per_token, defaults.entry_burst, defaults.entry_refill)
    assert limits == (3, 10, 2.0)
    assert defaults.trusted_networks == "127.0.0.0/8,::1/128"
    assert defaults.metrics_token_file == ""


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--trusted-networks", "10.0.0.0/33"], {}, "'10.0.0.0/33' is not a network"),
        ([], {"TRUSTED_NETWORKS": "school-lan"}, "'school-lan' is not a network"),
        (["--sessions-per-token", "0"], {}, "--sessions-per-token must be at least 1"),
        (["--entry-burst", "0"], {}, "--entry-burst must be at least 1"),
        (["--entry-refill", "0"], {}, "--entry-refill must be between"),
        (["--metrics-token-file", "/nonexistent/token"], {}, "cannot be read"),
    ],
)
def test_malformed_settings_are_refused_at_start(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("slave", argv, environ=environ)


@pytest.mark.parametrize("content", [b"", b"short\n", b"two words 0123456789\n", b"\xff" * 20])
def test_a_weak_or_odd_metrics_token_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="METRICS_TOKEN_FILE"):
        load("master", [f"--metrics-token-file={path}"], environ={})
