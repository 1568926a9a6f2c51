"""Settings from command-line flags and environment variables (docs/design.md §3).

Every setting is a flag and an environment variable; a flag wins over the environment, which
wins over the default. The result is a frozen dataclass handed to `create_app`.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import logging
import math
import os
import re
import socket
import stat
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
MIN_SECRET_LENGTH = 32
"""SECRET_KEY and CLUSTER_KEY: shorter than what `secrets.token_urlsafe(32)` prints."""
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
    guess_burst: int = 5
    guess_refill: float = 12.0
    guess_global_limit: int = 60
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    viewer_window: float = 30.0
    rtmp_handshake_timeout: float = 10.0
    rtmp_publish_timeout: float = 15.0
    rtmp_max_connections: int = 64
    rtmp_max_connections_per_address: int = 8
    max_streams: int = 16
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
        """Refuse missing, placeholder or guessable secrets outside demo mode (docs/design.md §2:
        no default secrets), and secrets a slave of a cluster must not hold."""
        if self.demo:
            return
        keys = [("SECRET_KEY", self.secret_key)]
        if self.role == "master" or self.master_url:
            keys.append(("CLUSTER_KEY", self.cluster_key))
        for name, value in keys:
            if not value:
                raise ConfigError(
                    f"{name} is required (set {name}_FILE, {name} or --{_flag(name)}-file)"
                )
            check_secret(name, value)
        if self.secret_key and self.secret_key == self.cluster_key:
            raise ConfigError("SECRET_KEY and CLUSTER_KEY must differ")
        if self.role == "slave" and self.master_url:
            for name, value in (
                ("TEACHER_PASSWORD", self.teacher_password),
                ("CLASS_CODE", self.class_code),
            ):
                if value:
                    raise ConfigError(
                        f"{name} is set on a slave of a cluster: teachers and students sign in "
                        f"on the master, so only the master may hold it; remove it here"
                    )
        for name, value in (
            ("TEACHER_PASSWORD", self.teacher_password),
            ("STREAM_KEY", self.stream_key),
            ("CLASS_CODE", self.class_code),
        ):
            if value:
                check_secret(name, value)


@dataclass(frozen=True, slots=True)
class SecretRule:
    """What one kind of secret must be; `advice` (how to make a good one) goes into the
    refusal message."""

    min_length: int
    min_bits: float
    advice: str


SECRET_RULES: dict[str, SecretRule] = {
    # Keys that sign tokens and the control plane can be guessed offline from one captured
    # token, at any speed: only their own entropy protects them. Nobody types them.
    "SECRET_KEY": SecretRule(
        MIN_SECRET_LENGTH, 128, "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    ),
    "CLUSTER_KEY": SecretRule(
        MIN_SECRET_LENGTH, 128, "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    ),
    # Pasted once into OBS, never typed: no reason to be short. Guessed online only (RTMP,
    # rate-limited), so less than a signing key.
    "STREAM_KEY": SecretRule(
        16, 60, "python3 -c 'import secrets; print(secrets.token_urlsafe(12))'"
    ),
    # Typed by a teacher: memorable, but guessed online only, behind the guessing limiter.
    "TEACHER_PASSWORD": SecretRule(10, 40, "e.g. four unrelated words, or 12 mixed characters"),
    # Typed by every student on a tablet, so short; the guessing limiter (a few tries per
    # address, a global ceiling per minute) is what protects it, and this floor keeps the
    # space large enough that the limiter's ceiling cannot exhaust it within a term.
    "CLASS_CODE": SecretRule(6, 26, "e.g. 6 letters (kdwmqa) or 8 digits"),
}

PLACEHOLDER_WORDS: tuple[str, ...] = (
    "change",
    "replace",
    "choose",
    "example",
    "placeholder",
    "secret",
    "password",
    "passwd",
    "default",
    "sample",
    "dummy",
    "insert",
    "airclass",
)
"""Words our own example files and the usual templates put in a value to be replaced. A value
is refused when a word of it (split on anything but letters and digits) is one of them, maybe
followed by a short tail (`replace-me`, `your-secret-key`, `ChangeMe123`). A random key's
words are long and shapeless, so the tail rule keeps generated keys from ever matching."""

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_PLACEHOLDER_WORD = re.compile(
    "(?:" + "|".join(PLACEHOLDER_WORDS) + r")(?:s|es|me|it|this|here)?[0-9]{0,4}"
)
_CHAR_CLASSES: tuple[tuple[str, int], ...] = (
    ("abcdefghijklmnopqrstuvwxyz", 26),
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26),
    ("0123456789", 10),
)
_OTHER_CLASS = 33
"""Printable ASCII punctuation and space."""


def looks_like_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in WELL_KNOWN_SECRETS:
        return True
    return any(_PLACEHOLDER_WORD.fullmatch(word) for word in _WORD_SPLIT.split(lowered))


def estimated_bits(value: str) -> float:
    """A pessimistic estimate of a secret's entropy in bits, from its characters alone.

    Bits per character come from the character classes present (lower, upper, digits,
    other). Characters that only repeat structure are not counted: a value made of one
    repeated block counts as that block; within it, a character equal to the previous one or
    continuing a run of neighbours (`aaaa`, `abcd`, `4321`) adds nothing; and no more than two
    characters are counted per distinct character, so a few symbols shuffled around stay weak.
    """
    if not value:
        return 0.0
    pool = sum(size for chars, size in _CHAR_CLASSES if any(c in chars for c in value))
    if any(not c.isascii() or not c.isalnum() for c in value):
        pool += _OTHER_CLASS
    block = value[: _period(value)]
    counted, step = 1, 0
    for a, b in itertools.pairwise(block):
        previous, step = step, ord(b) - ord(a)
        if step != 0 and not (step in (1, -1) and step == previous):
            counted += 1
    counted = min(counted, 2 * len(set(block)))
    return counted * math.log2(pool)


def _period(value: str) -> int:
    """The length of the shortest block that `value` repeats (`value` itself if none)."""
    for size in range(1, len(value) // 2 + 1):
        if all(value[i] == value[i - size] for i in range(size, len(value))):
            return size
    return len(value)


def check_secret(name: str, value: str) -> None:
    """Raise ConfigError unless `value` is good enough for the secret `name` (SECRET_RULES).
    The message never repeats the value."""
    rule = SECRET_RULES[name]
    if looks_like_placeholder(value):
        raise ConfigError(
            f"{name} is too weak: it looks like a placeholder from an example; set a real value "
            f"({rule.advice})"
        )
    if len(value) < rule.min_length or estimated_bits(value) < rule.min_bits:
        raise ConfigError(
            f"{name} is too weak: use at least {rule.min_length} characters that do not repeat "
            f"a pattern ({rule.advice})"
        )


SECRET_FILE_SETTINGS: tuple[str, ...] = (
    "secret_key",
    "cluster_key",
    "teacher_password",
    "stream_key",
    "class_code",
)
"""Secrets that can also come from a file (`--secret-key-file` / `SECRET_KEY_FILE`), as Docker
and Kubernetes secrets are mounted: a value on the command line is visible to every user of
the machine in `ps`, and one in the environment to anyone who can inspect the container."""


MAX_SECRET_FILE = 4096
"""Bytes read from a secret file at most: a wrong path (a log, a disk image) is refused rather
than read whole into memory."""


def _our_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def read_secret_file(env: str, path: str) -> str:
    """The secret in `path`, without one trailing newline (what `echo` and editors add).

    A file that other users may read (readable by others, or by a group we are not in) is
    allowed with a warning, not refused: Docker mounts secrets as the host file is, and
    Kubernetes with the mode the manifest asks for, inside a container where no other user
    runs, and refusing those would break the ordinary way to deploy; on a shared host the
    warning tells the administrator to `chmod 600` it.
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            mode, gid = info.st_mode, info.st_gid
            raw = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{env}_FILE: cannot read {path!r}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_FILE:
        raise ConfigError(
            f"{env}_FILE: {path!r} is larger than a secret ({MAX_SECRET_FILE} bytes)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{env}_FILE: {path!r} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{env}_FILE: {path!r} holds more than one line")
    if mode & stat.S_IROTH or (mode & stat.S_IRGRP and gid not in _our_groups()):
        logging.getLogger(__name__).warning(
            "%s_FILE %r is readable by other users (mode %o): chmod 600 it",
            env,
            path,
            stat.S_IMODE(mode),
        )
    return text


def _flag(env: str) -> str:
    return env.lower().replace("_", "-")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


# (flag, env, type, help). Flags use the docs/design.md §3 names.
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
    ("secret_key_file", "SECRET_KEY_FILE", str, "read SECRET_KEY from this file"),
    ("cluster_key_file", "CLUSTER_KEY_FILE", str, "read CLUSTER_KEY from this file"),
    ("teacher_password_file", "TEACHER_PASSWORD_FILE", str, "read TEACHER_PASSWORD from this file"),
    ("stream_key_file", "STREAM_KEY_FILE", str, "read STREAM_KEY from this file"),
    ("class_code_file", "CLASS_CODE_FILE", str, "read CLASS_CODE from this file"),
    (
        "guess_burst",
        "GUESS_BURST",
        int,
        "wrong passwords, class codes or stream keys an address may send before it waits",
    ),
    ("guess_refill", "GUESS_REFILL", float, "seconds after which a limited address may retry"),
    (
        "guess_global_limit",
        "GUESS_GLOBAL_LIMIT",
        int,
        "wrong guesses per minute from all addresses together before recent guessers wait",
    ),
    ("heartbeat_interval", "HEARTBEAT_INTERVAL", float, "seconds between slave heartbeats"),
    ("heartbeat_timeout", "HEARTBEAT_TIMEOUT", float, "silence after which a slave is offline"),
    ("viewer_window", "VIEWER_WINDOW", float, "a viewer counts while seen within this window, s"),
    (
        "rtmp_handshake_timeout",
        "RTMP_HANDSHAKE_TIMEOUT",
        float,
        "seconds an RTMP peer has from accept to connect (slowloris guard)",
    ),
    (
        "rtmp_publish_timeout",
        "RTMP_PUBLISH_TIMEOUT",
        float,
        "seconds an RTMP peer has from accept to an accepted publish",
    ),
    ("rtmp_max_connections", "RTMP_MAX_CONNECTIONS", int, "RTMP connections open at once"),
    (
        "rtmp_max_connections_per_address",
        "RTMP_MAX_CONNECTIONS_PER_ADDRESS",
        int,
        "RTMP connections open at once from one address (IPv6: one /64)",
    ),
    ("max_streams", "MAX_STREAMS", int, "streams published on this node at once"),
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
    for name in SECRET_FILE_SETTINGS:
        path = values.pop(f"{name}_file", None)
        if path is None:
            continue
        env = name.upper()
        if values.get(name):
            raise ConfigError(f"set {env} or {env}_FILE, not both")
        values[name] = read_secret_file(env, path)
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
    if not 0 < config.rtmp_publish_timeout <= 300:
        raise ConfigError("--rtmp-publish-timeout must be between 0 and 300 seconds")
    for name in ("rtmp_max_connections", "rtmp_max_connections_per_address", "max_streams"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if config.guess_burst < 1 or config.guess_global_limit < 1:
        raise ConfigError("--guess-burst and --guess-global-limit must be at least 1")
    if not 0 < config.guess_refill <= 3600:
        raise ConfigError("--guess-refill must be between 0 and 3600 seconds")
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
