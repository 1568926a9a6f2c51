"""Settings from flags: values that start with "-" (a generated key may) are values."""

from __future__ import annotations

import secrets
from typing import Any

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


def test_tls_settings_are_checked_at_start(tmp_path: Any) -> None:
    import pytest

    from airclass.config import ConfigError

    cert = tmp_path / "node.pem"
    cert.write_text("x")
    key = tmp_path / "node.key"
    key.write_text("x")
    config = load("slave", ["--tls-cert", str(cert), "--tls-key", str(key),
                            "--public-host", "10.0.0.5", "--hls-port", "8443"], environ={})
    assert config.tls and config.hls_base == "https://10.0.0.5:8443"
    assert config.api_base == "https://10.0.0.5:8000"
    assert config.rtmp_base == "rtmp://10.0.0.5:1935"
    plain = load("slave", ["--public-host", "10.0.0.5"], environ={})
    assert not plain.tls and plain.hls_base == "http://10.0.0.5:8888"
    env = load("master", [], environ={"TLS_CERT": str(cert), "TLS_KEY": str(key),
                                      "TLS_CA": str(cert)})
    assert (env.tls_cert, env.tls_key, env.tls_ca) == (str(cert), str(key), str(cert))
    refused = {
        "--tls-cert and --tls-key go together": ["--tls-cert", str(cert)],
        "--rtmps-port needs --tls-cert": ["--rtmps-port", "1936"],
        "no such file": ["--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing")],
        "--tls-ca": ["--tls-ca", str(tmp_path / "missing-ca.pem")],
    }
    for message, argv in refused.items():
        with pytest.raises(ConfigError, match=message):
            load("slave", argv, environ={})


def test_publish_token_ttl_is_bounded() -> None:
    import pytest

    from airclass.config import ConfigError

    assert load("slave", [], environ={}).publish_token_ttl == 900.0
    assert load("slave", [], environ={"PUBLISH_TOKEN_TTL": "300"}).publish_token_ttl == 300.0
    for bad in ("59", "43201"):
        with pytest.raises(ConfigError, match="--publish-token-ttl must be between 60 and 43200"):
            load("slave", ["--publish-token-ttl", bad], environ={})
