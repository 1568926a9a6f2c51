"""Viewer sessions: the JWT is checked once, then a short signed session id (sid) is used.

A viewer's first playlist request carries its JWT. The node then gives it a sid that sits in
the PATH of its media URLs (`/live/stream/<sid>/index.m3u8`, `/live/stream/<sid>/12.ts`), so
tokens stay out of segment URLs and logs, and each sid is one viewer: the live viewer count
is the number of sids seen within a window.

A sid is base64url (no padding, never '/') of::

    rid (8 random bytes) | expires_at (uint32, Unix s) | token (8) | len(user) (1) |
    user (<= 32 bytes) | tag

where `token` names the JWT the sid was minted for (`token_key`: a hash of its `jti` and user,
all zero for none) and `tag` is a 12-byte keyed BLAKE2s over the node id, the stream path and
the bytes before it, under a key derived from SECRET_KEY. Node and path are not carried, only
signed: a sid presented on another node or for another stream fails the tag. Without a user
id a sid is 44 characters.

The token travels in the sid so that whichever node admits a sid, the origin or a backup,
counts it against that token's sessions (`SessionTable`'s `per_token` cap): a viewer may fetch
the entry playlist many times and only start using the sids later, so a count kept at the
entry alone could be bypassed. Since every node shares SECRET_KEY, a node can mint the sid a
viewer will use on a backup node (`node_id=` override) for seamless failover.

Expiry: `check` only proves the sid genuine and returns its `expires_at`; `SessionTable.admit`
applies the rule that a viewer whose token expires mid-lecture is not cut off as long as its
session stays active (seen within the window), while a sid that went quiet after its expiry
is refused. A backup node sees a viewer's sid for the first time when the viewer fails over
to it, so a backup sid must carry an expiry that is still ahead at that moment (the caller
chooses it, e.g. the token's expiry or a lecture-length bound).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, NamedTuple

from airclass.auth.tokens import derive_key, normalize_path

log = logging.getLogger(__name__)

_RID_LEN: Final = 8
_TAG_LEN: Final = 12
TOKEN_KEY_LEN: Final = 8
NO_TOKEN: Final = bytes(TOKEN_KEY_LEN)
"""The token field of a sid minted for no token (tools, benchmarks): never capped."""
MAX_USER_BYTES: Final = 32
_EXPIRY_END: Final = _RID_LEN + 4
_TOKEN_END: Final = _EXPIRY_END + TOKEN_KEY_LEN
_FIXED_LEN: Final = _TOKEN_END + 1
_MIN_RAW: Final = _FIXED_LEN + _TAG_LEN
_MAX_RAW: Final = _MIN_RAW + MAX_USER_BYTES
_MIN_SID: Final = (_MIN_RAW * 4 + 2) // 3
_MAX_SID: Final = (_MAX_RAW * 4 + 2) // 3
_MAX_EXPIRY: Final = 0xFFFFFFFF
_MAX_CACHED_PATHS: Final = 256
_DOMAIN: Final = b"airclass-sid/2\x00"
_TOKEN_PERSON: Final = b"airc-tok"
# The strict standard decoder is the fast one: swapping the two alphabets' last characters
# makes it decode base64url and refuse '+' and '/'.
_SWAP: Final = bytes.maketrans(b"-_+/", b"+/-_")
_PAD: Final = (b"", b"===", b"==", b"=")
_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_INDEX: Final = bytes(_ALPHABET.find(bytes([c])) & 0xFF for c in range(256))
# Bits of the last character that a canonical encoding leaves zero, by length mod 4.
_TAIL_MASK: Final = (0, 0xFF, 0x0F, 0x03)


class SessionInfo(NamedTuple):
    """What a genuine sid says about its viewer (a tuple: built on every media request)."""

    sid: str
    viewer_id: str
    """Hex of the random part: safe to log, unlike the sid itself."""
    node_id: str
    path: str
    expires_at: float
    """Unix seconds; past it, the sid is only accepted while its session stays active."""
    user_id: str | None
    token: bytes
    """`token_key` of the JWT the sid was minted for (`NO_TOKEN`: none)."""


def token_key(jti: str, user_id: str) -> bytes:
    """What identifies one JWT among a node's sessions: its `jti`, with its user so that a
    sign-in service that reuses one jti for several users still keeps them apart."""
    jti_bytes = jti.encode("utf-8", "surrogatepass")
    user_bytes = user_id.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2s(
        len(jti_bytes).to_bytes(4, "big") + jti_bytes + user_bytes,
        digest_size=TOKEN_KEY_LEN,
        person=_TOKEN_PERSON,
    ).digest()
    # All zeros means "no token"; a real token never maps there.
    return digest if digest != NO_TOKEN else b"\x01" + digest[1:]


# NamedTuple's generated __new__ is Python code; the tuple constructor is not.
_new_info: Final = tuple.__new__


class SessionSigner:
    """Mints and checks this node's sids (and, for failover, the sids of other nodes)."""

    __slots__ = ("_inner", "_mac", "_paths", "node_id")

    def __init__(self, secret: str | bytes, node_id: str) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        self._mac = _Mac(derive_key(secret, b"airclass-session"))
        self.node_id = node_id
        self._inner = self._mac.inner(node_id)
        self._paths: dict[str, tuple[str, bytes]] = {}

    def mint(
        self,
        path: str,
        expires_at: float,
        user_id: str | None = None,
        *,
        node_id: str | None = None,
        token: bytes = NO_TOKEN,
    ) -> str:
        """A new sid for one viewer of `path` on `node_id` (default: this node), holding
        `token` (a `token_key`) so the session counts against that token's cap."""
        if node_id is None or node_id == self.node_id:
            inner = self._inner
        elif node_id:
            inner = self._mac.inner(node_id)
        else:
            raise ValueError("node_id must not be empty")
        if not math.isfinite(expires_at):
            raise ValueError("expires_at must be finite")
        if len(token) != TOKEN_KEY_LEN:
            raise ValueError(f"token must be {TOKEN_KEY_LEN} bytes")
        expiry = min(max(math.floor(expires_at), 0), _MAX_EXPIRY)
        user = _clip_user(user_id)
        body = b"".join(
            (secrets.token_bytes(_RID_LEN), struct.pack(">I", expiry), token,
             len(user).to_bytes(1, "big"), user)
        )
        tag = self._mac.tag(inner, normalize_path(path), body)
        return base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode("ascii")

    def check(self, sid: str, path: str) -> SessionInfo | None:
        """The sid's info if it is genuine for this node and `path`, else None.

        Cheap enough to run on every media request: one keyed BLAKE2s from a precomputed
        state, no JWT. Does not decide expiry (see `SessionTable.admit`).
        """
        n = len(sid)
        # One viewer has exactly one sid string: refuse padding, '+' and '/', and set bits in
        # the unused low end of the last character.
        if n < _MIN_SID or n > _MAX_SID or "=" in sid:
            return None
        try:
            data = sid.encode("ascii")
            if _B64_INDEX[data[-1]] & _TAIL_MASK[n & 3]:
                return None
            raw = binascii.a2b_base64(data.translate(_SWAP) + _PAD[n & 3], strict_mode=True)
        except (UnicodeEncodeError, binascii.Error):
            return None
        user_len = raw[_FIXED_LEN - 1]
        body_len = _FIXED_LEN + user_len
        if len(raw) != body_len + _TAG_LEN:
            return None
        cached = self._paths.get(path)
        if cached is None:
            cached = self._cache_path(path)
        path, path_bytes = cached
        state = self._inner.copy()
        state.update(path_bytes)
        state.update(raw[:body_len])
        if not hmac.compare_digest(raw[body_len:], state.digest()):
            return None
        try:
            user = raw[_FIXED_LEN:body_len].decode("utf-8") if user_len else None
        except UnicodeDecodeError:
            return None
        expiry = float(int.from_bytes(raw[_RID_LEN:_EXPIRY_END], "big"))
        return _new_info(
            SessionInfo,
            (sid, raw[:_RID_LEN].hex(), self.node_id, path, expiry, user,
             raw[_EXPIRY_END:_TOKEN_END]),
        )

    def _cache_path(self, path: str) -> tuple[str, bytes]:
        if len(self._paths) >= _MAX_CACHED_PATHS:
            self._paths.clear()
        norm = normalize_path(path)
        entry = (norm, _path_bytes(norm))
        self._paths[path] = entry
        return entry


class _Mac:
    """Keyed BLAKE2s (RFC 7693's MAC mode) with the node prefix absorbed once, not per call.

    `tag(inner(node), path, body)` equals
    `blake2s(prefix(node) + len(path) + path + body, key=key, digest_size=12)`. A keyed
    BLAKE2s is a MAC by design and, unlike HMAC, needs one hash pass rather than two nested
    ones, which matters on every media request.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def inner(self, node_id: str) -> hashlib.blake2s:
        return hashlib.blake2s(_node_prefix(node_id), key=self._key, digest_size=_TAG_LEN)

    @staticmethod
    def tag(inner: hashlib.blake2s, path: str, body: bytes) -> bytes:
        state = inner.copy()
        state.update(_path_bytes(path))
        state.update(body)
        return state.digest()


def _node_prefix(node_id: str) -> bytes:
    n = node_id.encode("utf-8")
    return _DOMAIN + len(n).to_bytes(4, "big") + n


def _path_bytes(path: str) -> bytes:
    p = path.encode("utf-8", "surrogatepass")
    return len(p).to_bytes(4, "big") + p


def _clip_user(user_id: str | None) -> bytes:
    if not user_id:
        return b""
    raw = user_id.encode("utf-8")
    if len(raw) <= MAX_USER_BYTES:
        return raw
    # Cut on a character boundary so the embedded user id always decodes.
    return raw[:MAX_USER_BYTES].decode("utf-8", "ignore").encode("utf-8")


@dataclass(slots=True)
class _Session:
    path: str
    user_id: str | None
    opened_at: float
    last_seen: float
    nbytes: int
    token: bytes


class SessionTable:
    """Which sessions are active (seen within `window` seconds), counted incrementally.

    `touch` is O(1); expired sessions are dropped lazily from the front of an LRU order, so
    `count` and `count_by_path` are amortised O(1) and cheap to call on every heartbeat.
    `now` must not go backwards (use one clock, e.g. `time.time()`, for `now` and for
    comparing with sid expiries).

    Limits: with `hard_limit` and a `capacity`, a new session beyond capacity is refused
    (active sessions are never cut); with `per_token`, a new session of a token that already
    has that many active sessions is refused, so one free token cannot fill the node's viewer
    count (a student's second tab and a reload still fit); `max_sessions` bounds memory
    whatever the settings. Only active sessions count: a player that was closed stops
    counting one window after its last request.
    """

    def __init__(
        self,
        window: float = 30.0,
        *,
        capacity: int | None = None,
        hard_limit: bool = False,
        per_token: int | None = None,
        max_sessions: int = 100_000,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if per_token is not None and per_token < 1:
            raise ValueError("per_token must be at least 1")
        self.window = window
        self.capacity = capacity
        self.hard_limit = hard_limit
        self.per_token = per_token
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._by_path: dict[str, int] = {}
        self._by_token: dict[bytes, int] = {}
        self._bytes_by_path: dict[str, int] = {}
        self.bytes_served = 0
        self.sessions_opened = 0
        self.sessions_closed = 0
        self.sessions_refused = 0
        self.refused_per_token = 0
        """New sessions refused because their token had `per_token` active ones."""

    def admit(self, info: SessionInfo, now: float, *, nbytes: int = 0) -> bool:
        """Touch a checked sid, unless it expired while not active (or a limit refuses it)."""
        if info.expires_at <= now and not self.is_active(info.sid, now):
            self.sessions_refused += 1
            return False
        return self.touch(
            info.sid, info.path, now, nbytes=nbytes, user_id=info.user_id, token=info.token
        )

    def touch(
        self,
        sid: str,
        path: str,
        now: float,
        *,
        nbytes: int = 0,
        user_id: str | None = None,
        token: bytes = NO_TOKEN,
    ) -> bool:
        """Record a request of `sid`; False if it would be a new session over a limit."""
        self.prune(now)
        session = self._sessions.get(sid)
        if session is None:
            active = len(self._sessions)
            if active >= self.max_sessions or (
                self.hard_limit and self.capacity is not None and active >= self.capacity
            ):
                self.sessions_refused += 1
                return False
            if token != NO_TOKEN:
                held = self._by_token.get(token, 0)
                if self.per_token is not None and held >= self.per_token:
                    self.sessions_refused += 1
                    self.refused_per_token += 1
                    return False
                self._by_token[token] = held + 1
            session = _Session(path, user_id, now, now, 0, token)
            self._sessions[sid] = session
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self.sessions_opened += 1
        else:
            if now > session.last_seen:
                session.last_seen = now
            self._sessions.move_to_end(sid)
        if nbytes:
            session.nbytes += nbytes
            self.bytes_served += nbytes
            self._bytes_by_path[session.path] = self._bytes_by_path.get(session.path, 0) + nbytes
        return True

    def token_sessions(self, token: bytes, now: float) -> int:
        """Active sessions minted for `token` (a `token_key`)."""
        self.prune(now)
        return self._by_token.get(token, 0) if token != NO_TOKEN else 0

    def token_full(self, token: bytes, now: float) -> bool:
        """Whether a new session of `token` would be refused by the `per_token` cap."""
        return self.per_token is not None and self.token_sessions(token, now) >= self.per_token

    def touch_active(self, sid: str, path: str, now: float) -> bool:
        """Record a request of a sid that is already active for `path`; False otherwise.

        The fast path of every media request: a sid in the table was checked when it was
        admitted, so while it stays active a dictionary lookup replaces the MAC check.
        """
        session = self._sessions.get(sid)
        if session is None or session.path != path or now - session.last_seen >= self.window:
            return False
        if now > session.last_seen:
            session.last_seen = now
        self._sessions.move_to_end(sid)
        return True

    def add_bytes(self, sid: str, nbytes: int) -> None:
        """Count bytes sent to a session after its request was admitted (e.g. on completion)."""
        session = self._sessions.get(sid)
        if session is None:
            return
        session.nbytes += nbytes
        self.bytes_served += nbytes
        self._bytes_by_path[session.path] = self._bytes_by_path.get(session.path, 0) + nbytes

    def is_active(self, sid: str, now: float) -> bool:
        session = self._sessions.get(sid)
        return session is not None and now - session.last_seen < self.window

    def count(self, now: float) -> int:
        """Active sessions: the `connections` a node reports to the master."""
        self.prune(now)
        return len(self._sessions)

    def count_by_path(self, now: float) -> dict[str, int]:
        self.prune(now)
        return dict(self._by_path)

    def bytes_by_path(self) -> dict[str, int]:
        """Bytes served per stream path since start (closed sessions included)."""
        return dict(self._bytes_by_path)

    def prune(self, now: float) -> int:
        """Drop sessions not seen for `window` seconds; return how many were closed."""
        sessions = self._sessions
        closed = 0
        while sessions:
            sid = next(iter(sessions))
            session = sessions[sid]
            if now - session.last_seen < self.window:  # the same test as is_active()
                break
            del sessions[sid]
            left = self._by_path[session.path] - 1
            if left:
                self._by_path[session.path] = left
            else:
                del self._by_path[session.path]
            if session.token != NO_TOKEN:
                held = self._by_token[session.token] - 1
                if held:
                    self._by_token[session.token] = held
                else:
                    del self._by_token[session.token]
            closed += 1
        if closed:
            self.sessions_closed += closed
        return closed
