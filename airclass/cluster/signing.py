"""Signed control-plane requests (register, heartbeat, unregister, relay fetches).

A request is signed with CLUSTER_KEY over its method, path (with query), a timestamp, a
random nonce and the SHA-256 of its body, so a rogue machine cannot join the cluster and a
captured request cannot be altered. The timestamp window bounds how long a captured request
stays usable, and a `ReplayCache` refuses the same nonce twice within that window.

Canonical string (UTF-8, '\\n'-joined)::

    AIRClass-Signature-1, METHOD, path, timestamp, nonce, hex(sha256(body))

Headers: `X-AIRClass-Timestamp` (Unix seconds, 3 decimals), `X-AIRClass-Nonce` (32 hex
digits) and `X-AIRClass-Signature` (hex HMAC-SHA256 of the canonical string under a key
derived from CLUSTER_KEY).

Replies are signed too, because a slave acts on them: the master's reply names the origin
every edge relays from and the peers every viewer's playlist lists, and an origin's reply is
the video edges serve. Whoever answers on the master's or an origin's address (ARP spoofing,
or a PC switched off and its address taken) must not be able to put its own video on every
slave. A reply's signature binds it to the request it answers (the request's nonce, fresh
and random, so an old reply cannot be replayed), and covers its status, every
`X-AIRClass-*` header (the relay's metadata) and the SHA-256 of its body::

    AIRClass-Reply-1, request nonce, status, name:value (sorted, lower-case names), …,
    hex(sha256(body))

in the header `X-AIRClass-Reply-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

TIMESTAMP_HEADER: Final = "X-AIRClass-Timestamp"
NONCE_HEADER: Final = "X-AIRClass-Nonce"
SIGNATURE_HEADER: Final = "X-AIRClass-Signature"
REPLY_SIGNATURE_HEADER: Final = "X-AIRClass-Reply-Signature"
DEFAULT_WINDOW: Final = 30.0
_COVERED_PREFIX: Final = "x-airclass-"
_REPLY_VERSION: Final = "AIRClass-Reply-1"

_VERSION: Final = "AIRClass-Signature-1"
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")
_NONCE_RE: Final = re.compile(r"[0-9a-f]{32}")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """A control-plane request is refused; `reason` is short and safe to return (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derive_cluster_key(key: str | bytes) -> bytes:
    """The HMAC key for control-plane signatures, kept apart from any other use of the key."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if not raw:
        raise ValueError("cluster key must not be empty")
    return hmac.digest(raw, b"airclass-control-plane", hashlib.sha256)


def sign(
    key: str | bytes,
    method: str,
    path: str,
    body: bytes,
    now: float,
    *,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to add to a request (`path` as sent, including any query string)."""
    if not math.isfinite(now) or now < 0:
        raise ValueError("now must be a finite Unix time")
    timestamp = f"{now:.3f}"
    nonce = secrets.token_hex(16) if nonce is None else nonce
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 32 lowercase hex digits")
    signature = _signature(derive_cluster_key(key), method, path, timestamp, nonce, body)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature,
    }


def verify(
    key: str | bytes,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    window: float = DEFAULT_WINDOW,
    *,
    replay: ReplayCache | None = None,
) -> None:
    """Raise `SignatureError` unless the request is signed with `key`, fresh and (with a
    `replay` cache) not seen before.

    `headers` may be case-insensitive (aiohttp's) or a plain dict in any case.
    """
    timestamp = _header(headers, TIMESTAMP_HEADER)
    nonce = _header(headers, NONCE_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if timestamp is None or nonce is None or signature is None:
        raise SignatureError("missing signature headers")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise SignatureError("malformed timestamp")
    if not _NONCE_RE.fullmatch(nonce):
        raise SignatureError("malformed nonce")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise SignatureError("malformed signature")
    sent_at = float(timestamp)
    if sent_at < now - window:
        raise SignatureError("stale timestamp")
    if sent_at > now + window:
        raise SignatureError("timestamp in the future")
    expected = _signature(derive_cluster_key(key), method, path, timestamp, nonce, body)
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad signature")
    if replay is not None and not replay.add(nonce, now):
        raise SignatureError("replayed request")


def request_nonce(headers: Mapping[str, str]) -> str:
    """The nonce of a request signed by `sign` (what its reply's signature is bound to)."""
    nonce = _header(headers, NONCE_HEADER)
    if nonce is None or not _NONCE_RE.fullmatch(nonce):
        raise ValueError("not a signed request")
    return nonce


def sign_reply(
    key: str | bytes, nonce: str, status: int, headers: Mapping[str, str], body: bytes
) -> str:
    """The `X-AIRClass-Reply-Signature` value for a reply to the request with `nonce`,
    with `headers` the reply's headers (its `X-AIRClass-*` ones are covered)."""
    return _reply_signature(derive_cluster_key(key), nonce, status, headers, body)


def verify_reply(
    key: str | bytes, nonce: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    """Raise `SignatureError` unless the reply is signed with `key` for the request with
    `nonce` (`headers` as received, any case; several values of a name are all covered)."""
    signature = _header(headers, REPLY_SIGNATURE_HEADER)
    if signature is None:
        raise SignatureError("unsigned reply")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise SignatureError("malformed reply signature")
    expected = _reply_signature(derive_cluster_key(key), nonce, status, headers, body)
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad reply signature")


class ReplayCache:
    """Nonces of accepted requests, each kept long enough to outlive its timestamp window.

    Only requests with a valid signature are recorded, so outsiders cannot fill the cache.
    It is bounded: when full, the oldest nonce is forgotten (and counted in `evicted`);
    a legitimate cluster stays far below the bound.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, max_entries: int = 65_536) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window and max_entries must be positive")
        # A timestamp accepted at `now` may be up to `window` in the future, so its request
        # stays acceptable until `now + 2 * window`.
        self.retention = 2 * window
        self.max_entries = max_entries
        self.evicted = 0
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, now: float) -> bool:
        """Record `nonce`; False if it was already recorded (a replay)."""
        self._prune(now)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            self._seen.popitem(last=False)
            self.evicted += 1
            log.warning("replay cache full (%d nonces): forgetting the oldest", self.max_entries)
        self._seen[nonce] = now
        return True

    def _prune(self, now: float) -> None:
        seen = self._seen
        horizon = now - self.retention
        while seen:
            nonce = next(iter(seen))
            if seen[nonce] > horizon:
                break
            del seen[nonce]


def _signature(
    derived: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    canonical = "\n".join(
        (_VERSION, method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())
    )
    return hmac.new(derived, canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _reply_signature(
    derived: bytes, nonce: str, status: int, headers: Mapping[str, str], body: bytes
) -> str:
    covered = sorted(
        f"{name.lower()}:{value}"
        for name, value in headers.items()
        if name.lower().startswith(_COVERED_PREFIX)
        and name.lower() != REPLY_SIGNATURE_HEADER.lower()
    )
    canonical = "\n".join(
        (_REPLY_VERSION, nonce, str(status), *covered, hashlib.sha256(body).hexdigest())
    )
    return hmac.new(derived, canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
