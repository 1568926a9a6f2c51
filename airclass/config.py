"""Settings from command-line flags and environment variables (DESIGN.md §3).

Every setting is a flag and an environment variable; a flag wins over the environment, which
wins over the default. The result is a frozen dataclass handed to `create_app`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
DEFAULT_TRUSTED_NETWORKS = "127.0.0.0/8,::1/128"
"""Who may read the node list, /api/stats and /metrics without credentials: this machine."""


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
    sessions_per_token: int = 3
    entry_burst: int = 10
    entry_refill: float = 2.0
    trusted_networks: str = DEFAULT_TRUSTED_NETWORKS
    metrics_token_file: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hls_base(self) -> str:
        """Base URL viewers use for this node's HLS."""
        return f"http://{_url_host(self.public_host)}:{self.hls_port}"

    @property
    def api_base(self) -> str:
        return f"http://{_url_host(self.public_host)}:{self.api_port}"

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
    (
        "sessions_per_token",
        "SESSIONS_PER_TOKEN",
        int,
        "viewer sessions one token may hold at once on a node (tabs, reloads)",
    ),
    ("entry_burst", "ENTRY_BURST", int, "entry playlist requests one token may make at once"),
    (
        "entry_refill",
        "ENTRY_REFILL",
        float,
        "seconds after which a token may make one more entry request, past the burst",
    ),
    (
        "trusted_networks",
        "TRUSTED_NETWORKS",
        str,
        "comma-separated CIDRs that may read the node list, /api/stats and /metrics without "
        "credentials (others need a teacher token or the metrics token)",
    ),
    (
        "metrics_token_file",
        "METRICS_TOKEN_FILE",
        str,
        "file holding the bearer token Prometheus sends for /metrics and the node list",
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
    if config.sessions_per_token < 1:
        raise ConfigError("--sessions-per-token must be at least 1")
    if config.entry_burst < 1:
        raise ConfigError("--entry-burst must be at least 1")
    if not 0 < config.entry_refill <= 3600:
        raise ConfigError("--entry-refill must be between 0 and 3600 seconds")
    parse_networks(config.trusted_networks)
    if config.metrics_token_file:
        read_token_file(config.metrics_token_file)
    if config.event_loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError("--event-loop must be auto, uvloop or asyncio")
    for port_name in ("rtmp_port", "hls_port", "api_port"):
        port = getattr(config, port_name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"--{port_name.replace('_', '-')} {port} is not a port")
    return config


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated CIDR list (`--trusted-networks`); empty: none."""
    networks: list[IPNetwork] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"TRUSTED_NETWORKS: {item!r} is not a network (e.g. 10.0.0.0/24 or ::1/128)"
            ) from exc
    return tuple(networks)


MIN_METRICS_TOKEN_LENGTH = MIN_SECRET_LENGTH
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: str) -> str:
    """The token in `path` (`--metrics-token-file`), surrounding whitespace removed as
    Prometheus does with its `credentials_file`; refused when missing, empty or guessable."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"METRICS_TOKEN_FILE {path!r} cannot be read: {exc.strerror}") from exc
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"METRICS_TOKEN_FILE {path!r} is larger than {MAX_TOKEN_FILE_BYTES} B")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"METRICS_TOKEN_FILE {path!r} must hold an ASCII token") from exc
    if len(token) < MIN_METRICS_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise ConfigError(
            f"METRICS_TOKEN_FILE {path!r} must hold one token of at least "
            f"{MIN_METRICS_TOKEN_LENGTH} characters without spaces "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


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
