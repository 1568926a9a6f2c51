"""Settings from flags: values that start with "-" (a generated key may) are values."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from airclass.config import ConfigError, load, read_token_file
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
# -- secret strength ---------------------------------------------------------------------------

import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from airclass.config import (  # noqa: E402
    check_secret,
    estimated_bits,
    looks_like_placeholder,
)

ROOT = Path(__file__).resolve().parents[1]
LOWER = math.log2(26)


@pytest.mark.parametrize(
    ("value", "bits"),
    [
        ("", 0.0),
        ("aaaaaaaaaaaaaaaa", LOWER),
        ("abcdefghijklmnop", 2 * LOWER),  # a run of neighbours counts its first step only
        ("abababababababababababababababab", 2 * LOWER),  # one repeated block
        ("zyxwvu", 2 * LOWER),
        ("kdwmqa", 6 * LOWER),
        ("482913", 6 * math.log2(10)),
        ("48291375", 8 * math.log2(10)),
        ("kdwmQA", 6 * math.log2(52)),
        ("ab-ab-ab-ab-", 3 * math.log2(26 + 33)),
        ("acbdacbdbcadbdca", 8 * LOWER),  # at most two per distinct character
    ],
)
def test_estimated_bits(value: str, bits: float) -> None:
    assert estimated_bits(value) == pytest.approx(bits)


def _example_values() -> list[tuple[str, str]]:
    """Every secret value written in our example and deployment files."""
    found: list[tuple[str, str]] = []
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/secret.example.yaml").read_text()):
        found += [(k, str(v)) for k, v in doc["stringData"].items()]
    files = [ROOT / "deploy/k8s/secret.example.yaml", *sorted(ROOT.glob("docker-compose*.yml"))]
    for path in files:
        text = path.read_text()
        found += [("TEACHER_PASSWORD", v) for v in re.findall(r"printf '%s\\n' '([^']+)'", text)]
        found += [(k, v) for k, v in re.findall(r"\b([A-Z_]+)=['\"]([^'\"$]+)['\"]", text)
                  if k in ("SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD")]
    return found


def test_every_example_value_is_refused() -> None:
    values = _example_values()
    assert len(values) >= 4, values
    for name, value in values:
        with pytest.raises(ConfigError, match=f"^{name} is too weak") as refused:
            check_secret(name, value)
        assert value not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "a" * 64),
        ("SECRET_KEY", "q7Vd2mX9kLp4Rw8Zt1Bn6Hc3Jf5Gs0Y"),  # strong characters, too short
        ("SECRET_KEY", "your-secret-key-" + "Kp3xW9vQ2mZ7rT5yB8nL4cH6"),
        ("SECRET_KEY", "ChangeMe." + "Yt6Qw2Er9Ui4Op7As1Df3Gh8Jk5Lz0Xc2Vb6Nm9Qp4"),
        ("CLUSTER_KEY", "0123456789abcdefghijklmnopqrstuvwxyz"),
        ("CLUSTER_KEY", "1234567890123456"),
        ("TEACHER_PASSWORD", "Password123!"),
        ("TEACHER_PASSWORD", "letmein"),
        ("TEACHER_PASSWORD", "aaaaaaaaaaaaaaaa"),
        ("STREAM_KEY", "obs-stream-key"),
        ("STREAM_KEY", "abcabcabcabcabcabcabc"),
        ("CLASS_CODE", "123456"),
        ("CLASS_CODE", "4821"),
        ("CLASS_CODE", "example"),
    ],
)
def test_weak_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} is too weak"):
        check_secret(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TEACHER_PASSWORD", "Tr0ub4dor&3x"),
        ("TEACHER_PASSWORD", "correct horse battery staple"),
        ("CLASS_CODE", "kdwmqa"),
        ("CLASS_CODE", "48291375"),
        ("STREAM_KEY", "Zq3-v9LmK2pX7wRt"),
    ],
)
def test_reasonable_values_pass(name: str, value: str) -> None:
    check_secret(name, value)


def test_generated_values_always_pass() -> None:
    """What the README, the demo and the tests generate: token_urlsafe(32) for keys, (12) for
    passwords and stream keys."""
    for _ in range(3000):
        check_secret("SECRET_KEY", secrets.token_urlsafe(32))
        check_secret("CLUSTER_KEY", secrets.token_urlsafe(32))
        check_secret("TEACHER_PASSWORD", secrets.token_urlsafe(12))
        check_secret("STREAM_KEY", secrets.token_urlsafe(12))


def test_placeholder_words_match_whole_words_with_a_short_tail() -> None:
    assert looks_like_placeholder("replace-me")
    assert looks_like_placeholder("CHANGEME")
    assert looks_like_placeholder("x_secret_key_x")
    assert looks_like_placeholder("replace-with-32-random-characters")
    assert not looks_like_placeholder("xchangex-Zq3v9LmK2pX7")
    assert not looks_like_placeholder("Bf-changeXq-Q1HLjL")  # a long tail: a random word


def _strong() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(32), "CLUSTER_KEY": secrets.token_urlsafe(32)}


def test_a_slave_of_a_cluster_refuses_the_teacher_password_and_class_code() -> None:
    for name in ("TEACHER_PASSWORD", "CLASS_CODE"):
        config = load(
            "slave", [], environ={**_strong(), "MASTER_URL": "http://m:8000", name: "kdwmqazpxy"}
        )
        with pytest.raises(ConfigError, match=f"^{name} is set on a slave of a cluster"):
            config.check_secrets()
    # The master and a standalone slave hold them.
    env = {**_strong(), "TEACHER_PASSWORD": "Tr0ub4dor&3x", "CLASS_CODE": "kdwmqa"}
    load("master", [], environ=env).check_secrets()
    load("slave", [], environ=env).check_secrets()


def test_secret_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = secrets.token_urlsafe(32)
    path = tmp_path / "secret_key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        config = load("slave", ["--secret-key-file", str(path)], environ={})
    assert config.secret_key == key and caplog.records == []
    # Only one newline is stripped; a second line is refused.
    path.write_text(key + "\n\n")
    with pytest.raises(ConfigError, match="more than one line"):
        load("slave", [], environ={"SECRET_KEY_FILE": str(path)})
    path.write_text(key + "\r\n")
    assert load("slave", [], environ={"SECRET_KEY_FILE": str(path)}).secret_key == key
    # A file others may read: allowed, with a warning that does not show the secret.
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert load("slave", [], environ={"SECRET_KEY_FILE": str(path)}).secret_key == key
    assert "readable by other users" in caplog.text and key not in caplog.text
    with pytest.raises(ConfigError, match="set SECRET_KEY or SECRET_KEY_FILE, not both"):
        load("slave", [], environ={"SECRET_KEY_FILE": str(path), "SECRET_KEY": key})
    with pytest.raises(ConfigError, match="CLASS_CODE_FILE: cannot read"):
        load("slave", ["--class-code-file", str(tmp_path / "missing")], environ={})
    for name in ("CLUSTER_KEY", "TEACHER_PASSWORD", "STREAM_KEY", "CLASS_CODE"):
        path.write_text("v-" + name)
        config = load("master", [], environ={f"{name}_FILE": str(path)})
        assert getattr(config, name.lower()) == "v-" + name
    assert os.stat(path).st_size > 0
def test_viewer_limits_and_operator_access_settings(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("  scrape-0123456789abcdef0123456789abcdef\n")
    config = load(
        "slave",
        ["--sessions-per-token", "2", "--entry-burst", "5", "--entry-refill", "1.5",
         f"--metrics-token-file={token_file}"],
        environ={"TRUSTED_NETWORKS": "10.0.0.0/8, 127.0.0.1/32"},
    )
    assert (config.sessions_per_token, config.entry_burst, config.entry_refill) == (2, 5, 1.5)
    assert config.trusted_networks == "10.0.0.0/8, 127.0.0.1/32"
    assert read_token_file(config.metrics_token_file) == "scrape-0123456789abcdef0123456789abcdef"
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
