"""Settings from command-line flags and environment variables (DESIGN.md §3).

Every setting is a flag and an environment variable; a flag wins over the environment, which
wins over the default. The result is a frozen dataclass handed to `create_app`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WELL_KNOWN_SECRETS = frozenset(
    {
        "secret",
        "secret_key",
        "secret-key",
        "changeme",
        "change-me",
        "change_me",
        "changeit",
        "password",
        "airclass",
        "airclass-secret",
        "your-secret-key",
        "default",
        "test",
        "example",
        "12345678",
        "1234567890123456",
    }
)
MIN_SECRET_LENGTH = 16


class ConfigError(ValueError):
    """Settings that the node refuses to start with."""


@dataclass(frozen=True, slots=True)
class Config:
    """One node's settings (master or slave)."""

    role: str = "slave"
    node_id: str = ""
    master_url: str | None = None
    bind: str = "0.0.0.0"
    public_host: str = ""
    public_network: str = ""
    rtmp_port: int = 1935
    hls_port: int = 8888
    api_port: int = 8000
    max_connections: int = 150
    hard_limit: bool = False
    segment_duration: float = 2.0
    low_latency: bool = True
    part_duration: float = 0.3
    secret_key: str = ""
    cluster_key: str = ""
    teacher_password: str = ""
    stream_key: str = ""
    class_code: str = ""
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    viewer_window: float = 30.0
    rtmp_handshake_timeout: float = 10.0
    sticky: bool = False
    event_loop: str = "auto"
    fast_path: bool = True
    demo: bool = False
    log_level: str = "INFO"
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    rtmps_port: int = 0
    publish_token_ttl: float = 900.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        """Whether the HTTP ports speak HTTPS (a certificate and its key are set)."""
        return bool(self.tls_cert)

    @property
    def http_scheme(self) -> str:
        """The scheme of the URLs this node advertises for its HLS and API ports."""
        return "https" if self.tls else "http"

    @property
    def hls_base(self) -> str:
        """Base URL viewers use for this node's HLS."""
        return f"{self.http_scheme}://{_url_host(self.public_host)}:{self.hls_port}"

    @property
    def api_base(self) -> str:
        return f"{self.http_scheme}://{_url_host(self.public_host)}:{self.api_port}"

    @property
    def rtmp_base(self) -> str:
        return f"rtmp://{_url_host(self.public_host)}:{self.rtmp_port}"

    def check_secrets(self) -> None:
        """Refuse empty or well-known keys outside demo mode (DESIGN.md §2: no default secrets)."""
        if self.demo:
            return
        keys = [("SECRET_KEY", self.secret_key)]
        if self.role == "master" or self.master_url:
            keys.append(("CLUSTER_KEY", self.cluster_key))
        for name, value in keys:
            if not value:
                raise ConfigError(f"{name} is required (set --{_flag(name)} or {name})")
            if value.strip().lower() in WELL_KNOWN_SECRETS or len(value) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"{name} is too weak: use at least {MIN_SECRET_LENGTH} random characters "
                    f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        if self.secret_key and self.secret_key == self.cluster_key:
            raise ConfigError("SECRET_KEY and CLUSTER_KEY must differ")


def _flag(env: str) -> str:
    return env.lower().replace("_", "-")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


# (flag, env, type, help). Flags use the DESIGN.md §3 names.
_SETTINGS: list[tuple[str, str, type, str]] = [
    ("node_id", "NODE_ID", str, "node id (default: host name, plus API port when not 8000)"),
    ("master_url", "MASTER_URL", str, "master URL, e.g. http://master:8000 (unset: standalone)"),
    ("bind", "BIND_HOST", str, "address to listen on"),
    ("public_host", "PUBLIC_HOST", str, "host name viewers and the master use to reach this node"),
    (
        "public_network",
        "PUBLIC_NETWORK",
        str,
        "without --public-host: advertise this node's address in this network (CIDR)",
    ),
    ("rtmp_port", "RTMP_PORT", int, "RTMP ingest port"),
    ("hls_port", "HLS_PORT", int, "HLS port"),
    ("api_port", "API_PORT", int, "API port (the master's only port)"),
    ("max_connections", "MAX_CONNECTIONS", int, "viewer capacity reported to the master"),
    ("hard_limit", "HARD_LIMIT", bool, "refuse new viewers beyond --max-connections"),
    ("segment_duration", "SEGMENT_DURATION", float, "target HLS segment duration, seconds"),
    (
        "low_latency",
        "LOW_LATENCY",
        bool,
        "LL-HLS: partial segments, blocking reload (--no-low-latency: plain HLS only)",
    ),
    ("part_duration", "PART_DURATION", float, "LL-HLS partial segment target, seconds"),
    ("secret_key", "SECRET_KEY", str, "HS256 key for viewer and publisher tokens"),
    ("cluster_key", "CLUSTER_KEY", str, "key that signs master/slave control messages"),
    ("teacher_password", "TEACHER_PASSWORD", str, "password teachers use to get a publish token"),
    ("stream_key", "STREAM_KEY", str, "optional static publish key (rtmp://...?key=...)"),
    ("class_code", "CLASS_CODE", str, "optional code students must enter to join"),
    ("heartbeat_interval", "HEARTBEAT_INTERVAL", float, "seconds between slave heartbeats"),
    ("heartbeat_timeout", "HEARTBEAT_TIMEOUT", float, "silence after which a slave is offline"),
    ("viewer_window", "VIEWER_WINDOW", float, "a viewer counts while seen within this window, s"),
    (
        "rtmp_handshake_timeout",
        "RTMP_HANDSHAKE_TIMEOUT",
        float,
        "seconds an RTMP peer has from accept to connect (slowloris guard)",
    ),
    ("sticky", "STICKY", bool, "route each stream to the same slave (rendezvous hashing)"),
    ("event_loop", "EVENT_LOOP", str, "auto (uvloop when installed), uvloop or asyncio"),
    (
        "fast_path",
        "FAST_PATH",
        bool,
        "answer playlist, segment and part requests on the lean HTTP path, on uvloop "
        "(--no-fast-path: everything through aiohttp)",
    ),
    ("log_level", "LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR"),
    ("tls_cert", "TLS_CERT", str, "PEM certificate (chain): HTTPS on the HLS and API ports"),
    ("tls_key", "TLS_KEY", str, "PEM private key of --tls-cert"),
    (
        "tls_ca",
        "TLS_CA",
        str,
        "PEM CA bundle trusted, besides the system's, for calls to the master and other nodes",
    ),
    ("rtmps_port", "RTMPS_PORT", int, "RTMP over TLS ingest port, with --tls-cert (0: off)"),
    (
        "publish_token_ttl",
        "PUBLISH_TOKEN_TTL",
        float,
        "seconds a teacher's publish token is valid (the teacher page renews it)",
    ),
]


def build_parser(role: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m airclass.{role}",
        description=f"AIRClass {role}: "
        + (
            "registers slaves, routes students, signs tokens."
            if role == "master"
            else "RTMP ingest, in-memory HLS, token-checked viewers."
        ),
    )
    for name, env, kind, help_text in _SETTINGS:
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            # --flag / --no-flag: a default-on setting (LOW_LATENCY) must be switchable off.
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} [{env}]",
            )
        else:
            parser.add_argument(
                flag, dest=name, type=kind, default=None, help=f"{help_text} [{env}]"
            )
    return parser


_VALUE_FLAGS = frozenset("--" + name.replace("_", "-") for name, _, kind, _ in _SETTINGS
                         if kind is not bool)


def _attach_values(argv: Sequence[str]) -> list[str]:
    """`--flag value` as `--flag=value` for every flag that takes a value, so that a value
    starting with "-" (one key in 64 from `secrets.token_urlsafe` does) is not read as a flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _VALUE_FLAGS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def load(
    role: str,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build a Config from flags, then environment, then defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser(role).parse_args(_attach_values(sys.argv[1:] if argv is None else argv))
    values: dict[str, Any] = {"role": role}
    for name, env, kind, _ in _SETTINGS:
        value = getattr(args, name)
        if value is None and env in environ and environ[env] != "":
            raw = environ[env]
            try:
                value = _bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from exc
        if value is not None:
            values[name] = value
    values.update(overrides)
    config = Config(**values)
    return finalize(config)


def finalize(config: Config) -> Config:
    """Fill derived defaults (node id, public host) and validate ranges."""
    import dataclasses

    changes: dict[str, Any] = {}
    if not config.node_id:
        host = socket.gethostname() or "node"
        changes["node_id"] = host if config.api_port == 8000 else f"{host}-{config.api_port}"
    if not config.public_host:
        if config.public_network:
            changes["public_host"] = address_in_network(config.public_network)
        elif config.bind not in ("0.0.0.0", "::", ""):
            changes["public_host"] = config.bind
        else:
            changes["public_host"] = _default_public_host()
    if config.master_url:
        changes["master_url"] = config.master_url.rstrip("/")
    config = dataclasses.replace(config, **changes)
    if config.max_connections < 1:
        raise ConfigError("--max-connections must be at least 1")
    if not 0.5 <= config.segment_duration <= 10:
        raise ConfigError("--segment-duration must be between 0.5 and 10 seconds")
    if config.low_latency and not 0.1 <= config.part_duration <= config.segment_duration:
        raise ConfigError("--part-duration must be between 0.1 s and the segment duration")
    if config.heartbeat_interval <= 0 or config.heartbeat_timeout <= config.heartbeat_interval:
        raise ConfigError("--heartbeat-timeout must exceed --heartbeat-interval (> 0)")
    if not 0 < config.rtmp_handshake_timeout <= 300:
        raise ConfigError("--rtmp-handshake-timeout must be between 0 and 300 seconds")
    if config.event_loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError("--event-loop must be auto, uvloop or asyncio")
    check_tls(config)
    if not MIN_PUBLISH_TOKEN_TTL <= config.publish_token_ttl <= MAX_PUBLISH_TOKEN_TTL:
        raise ConfigError(
            f"--publish-token-ttl must be between {MIN_PUBLISH_TOKEN_TTL:.0f} and "
            f"{MAX_PUBLISH_TOKEN_TTL:.0f} seconds"
        )
    for port_name in ("rtmp_port", "hls_port", "api_port", "rtmps_port"):
        port = getattr(config, port_name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"--{port_name.replace('_', '-')} {port} is not a port")
    return config


MIN_PUBLISH_TOKEN_TTL = 60.0
"""Seconds: the teacher page renews a publish token a little before it expires, so a shorter
life would have it ask for a new one all the time."""
MAX_PUBLISH_TOKEN_TTL = 12 * 3600.0
"""Seconds: a publish token is a bearer key in the RTMP URL (OBS settings, screenshots, logs);
a school day is the longest it should stay usable."""


def check_tls(config: Config) -> None:
    """Certificate and key come together and exist (the entry points then load them, and the
    CA bundle, with `airclass.tls`); refuse to start otherwise, so a typo in a path never
    leaves a node silently on plain HTTP."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if config.rtmps_port and not config.tls_cert:
        raise ConfigError("--rtmps-port needs --tls-cert and --tls-key")
    for flag, path in (("tls-cert", config.tls_cert), ("tls-key", config.tls_key),
                       ("tls-ca", config.tls_ca)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"--{flag} {path}: no such file")


def _default_public_host() -> str:
    """The address other machines most likely reach us on: our host name's address."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address


def address_in_network(cidr: str) -> str:
    """This machine's address inside `cidr` (one container, several networks: pick the one
    viewers are routed to)."""
    import ipaddress

    import psutil

    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError(f"PUBLIC_NETWORK={cidr!r} is not a network") from exc
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            try:
                address = ipaddress.ip_address(entry.address.split("%", 1)[0])
            except ValueError:
                continue
            if address in network:
                return str(address)
    raise ConfigError(f"no local address in PUBLIC_NETWORK {cidr}")
