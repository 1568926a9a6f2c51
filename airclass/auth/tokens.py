"""JWTs for viewers and publishers: HS256 only, every claim required and type-checked.

The master mints a token for one user, one action, one stream path and one node (the slave
it is valid on); that slave checks it when the viewer or publisher enters. Time is passed in
(`now`, Unix seconds) so that expiry is decided by the caller's clock, not by PyJWT's.

Teacher tokens also carry `pwe`, the epoch of the teacher password they were minted under
(`epoch.py`): an issuer given `TeacherEpochs` stamps it and refuses teacher tokens of another
epoch, so a password change revokes them.

The HMAC key is SECRET_KEY itself, as the claims and the key are a public contract: a school's
own sign-in service may mint tokens for us with the same secret. Session ids (`sessions.py`)
use a key derived from SECRET_KEY with a label, so the two can never be confused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import warnings
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

import jwt
import jwt.warnings

from airclass.auth.epoch import SHARED_TEACHER, TeacherEpochs, check_epoch
from airclass.auth.errors import unauthorized

log = logging.getLogger(__name__)

# Our own configuration enforces a minimum key length (config.MIN_SECRET_LENGTH); PyJWT's
# stricter recommendation would otherwise warn on every token a school's 16-character key signs.
warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)

UserType = Literal["student", "teacher"]
Action = Literal["read", "publish"]

USER_TYPES: Final[frozenset[str]] = frozenset(get_args(UserType))
ACTIONS: Final[frozenset[str]] = frozenset(get_args(Action))

ALGORITHM: Final = "HS256"
#: A token longer than this is refused before any parsing (it arrives in a URL or header).
MAX_TOKEN_LENGTH: Final = 4096
#: Longest accepted string claim; ours are far shorter.
MAX_CLAIM_LENGTH: Final = 256
#: Default tolerance for clock skew between the master that mints and the slave that checks.
DEFAULT_LEEWAY: Final = 30.0

#: The encoded JOSE header of every token we mint: the bytes PyJWT writes for HS256
#: (`{"alg":"HS256","typ":"JWT"}`, keys sorted, no spaces), so our tokens equal PyJWT's.
_HEADER_B64: Final = base64.urlsafe_b64encode(
    json.dumps({"alg": ALGORITHM, "typ": "JWT"}, separators=(",", ":"), sort_keys=True).encode()
).rstrip(b"=")
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"))

CLAIM_NAMES: Final = ("user_type", "user_id", "iat", "exp", "action", "path", "node_id", "jti")
_STRING_CLAIMS: Final = ("user_id", "path", "node_id", "jti")
EPOCH_CLAIM: Final = "pwe"
"""Optional claim: the password epoch of a teacher token (absent on student tokens)."""
_TIME_CLAIMS: Final = ("iat", "exp")


def derive_key(secret: str | bytes, label: bytes) -> bytes:
    """A 32-byte key for one purpose, so one SECRET_KEY serves tokens and sessions separately."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise ValueError("secret must not be empty")
    return hmac.digest(raw, label, hashlib.sha256)


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def encode_hs256(payload: dict[str, Any], key: bytes) -> str:
    """Compact HS256 JWS of `payload`, byte for byte what `jwt.encode(payload, key)` returns.

    Minting is the master's hot path during a class-wide join (thousands of tokens a second);
    PyJWT spends most of its time on generic header handling and key checks, while the token
    itself is a fixed header, compact JSON and one HMAC.
    """
    signing_input = _HEADER_B64 + b"." + _b64url(_COMPACT_JSON.encode(payload).encode())
    signature = hmac.digest(key, signing_input, hashlib.sha256)
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def normalize_path(path: str) -> str:
    """`/live/stream/` and `live/stream` name the same stream."""
    return path.strip("/")


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of a token."""

    user_type: UserType
    user_id: str
    iat: int
    """Issued at, Unix seconds."""
    exp: int
    """Expires at, Unix seconds: the token is refused from this instant (plus leeway) on."""
    action: Action
    path: str
    """Stream path without surrounding slashes, e.g. `live/stream`."""
    node_id: str
    """The only node on which this token is valid."""
    jti: str
    """Random, url-safe: tells two tokens of the same user apart."""
    pwe: str | None = None
    """Teacher tokens: the epoch of the password signed in with (`epoch.password_epoch`)."""

    def to_payload(self) -> dict[str, Any]:
        payload = {name: getattr(self, name) for name in CLAIM_NAMES}
        if self.pwe is not None:
            payload[EPOCH_CLAIM] = self.pwe
        return payload


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: Claims


class TokenIssuer:
    """Mints and verifies HS256 tokens keyed with SECRET_KEY; with `epochs`, stamps teacher
    tokens with the current password epoch and refuses those of another one."""

    __slots__ = ("_key", "epochs")

    def __init__(self, secret: str | bytes, epochs: TeacherEpochs | None = None) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("secret must not be empty")
        self._key = key
        self.epochs = epochs

    def issue(
        self,
        *,
        user_type: UserType,
        user_id: str,
        action: Action,
        path: str,
        node_id: str,
        now: float,
        ttl: float,
    ) -> IssuedToken:
        """Mint a token and return it with its claims (the caller replies with `exp`)."""
        if user_type not in USER_TYPES:
            raise ValueError(f"unknown user_type {user_type!r}")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if not (math.isfinite(now) and math.isfinite(ttl)) or ttl <= 0:
            raise ValueError("now must be finite and ttl positive")
        path = normalize_path(path)
        for name, value in (("user_id", user_id), ("path", path), ("node_id", node_id)):
            if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
                raise ValueError(f"{name} must be a non-empty string of at most "
                                 f"{MAX_CLAIM_LENGTH} characters")
        iat = math.floor(now)
        exp = math.floor(now + ttl)
        if exp <= iat:
            exp = iat + 1
        claims = Claims(
            user_type=user_type,
            user_id=user_id,
            iat=iat,
            exp=exp,
            action=action,
            path=path,
            node_id=node_id,
            jti=secrets.token_urlsafe(12),
            pwe=(
                self.epochs.current(SHARED_TEACHER)
                if self.epochs is not None and user_type == "teacher"
                else None
            ),
        )
        token = encode_hs256(claims.to_payload(), self._key)
        return IssuedToken(token, claims)

    def mint(
        self,
        *,
        user_type: UserType,
        user_id: str,
        action: Action,
        path: str,
        node_id: str,
        now: float,
        ttl: float,
    ) -> str:
        """Mint a token (see `issue` for one that also returns the claims)."""
        return self.issue(
            user_type=user_type,
            user_id=user_id,
            action=action,
            path=path,
            node_id=node_id,
            now=now,
            ttl=ttl,
        ).token

    def verify(self, token: str, *, now: float, leeway: float = DEFAULT_LEEWAY) -> Claims:
        """Return the claims of a genuine, unexpired token; raise `AuthError` (401) otherwise."""
        if not isinstance(token, str) or not token:
            raise unauthorized("missing token")
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise unauthorized("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise unauthorized("token algorithm not allowed")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": [],
                },
            )
        except jwt.InvalidSignatureError:
            raise unauthorized("bad token signature") from None
        except jwt.InvalidAlgorithmError:
            raise unauthorized("token algorithm not allowed") from None
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        claims = _claims_from_payload(payload)
        if now - leeway >= claims.exp:
            raise unauthorized("token expired")
        if self.epochs is not None:
            check_epoch(claims.user_type, claims.pwe, self.epochs.current(SHARED_TEACHER))
        return claims


def _claims_from_payload(payload: dict[str, Any]) -> Claims:
    for name in CLAIM_NAMES:
        if name not in payload:
            raise unauthorized(f"token claim {name} missing")
    values: dict[str, Any] = {}
    for name in _STRING_CLAIMS:
        value = payload[name]
        if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
            raise unauthorized(f"token claim {name} invalid")
        values[name] = value
    for name in _TIME_CLAIMS:
        value = payload[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise unauthorized(f"token claim {name} invalid")
        values[name] = math.floor(value)
    user_type = payload["user_type"]
    if not isinstance(user_type, str) or user_type not in USER_TYPES:
        raise unauthorized("token claim user_type invalid")
    action = payload["action"]
    if not isinstance(action, str) or action not in ACTIONS:
        raise unauthorized("token claim action invalid")
    if values["iat"] > values["exp"]:
        raise unauthorized("token claim iat invalid")
    path = normalize_path(values["path"])
    if not path:
        raise unauthorized("token claim path invalid")
    pwe = payload.get(EPOCH_CLAIM)
    if pwe is not None and (
        not isinstance(pwe, str) or not pwe or len(pwe) > MAX_CLAIM_LENGTH
    ):
        raise unauthorized(f"token claim {EPOCH_CLAIM} invalid")
    return Claims(
        user_type=cast(UserType, user_type),
        user_id=values["user_id"],
        iat=values["iat"],
        exp=values["exp"],
        action=cast(Action, action),
        path=path,
        node_id=values["node_id"],
        jti=values["jti"],
        pwe=pwe,
    )
