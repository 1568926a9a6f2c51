"""Password epochs: changing a teacher's password revokes every token minted before.

A teacher token (publish, and the teacher's read token) carries a `pwe` claim: the epoch of
the password the teacher signed in with, `password_epoch(SECRET_KEY, teacher, password)`, the
first `EPOCH_BYTES` bytes of an HMAC of the password under a key derived from SECRET_KEY. The
claim is in every teacher's URL and OBS settings, so it must not help anyone guess the
password: without SECRET_KEY the HMAC cannot be computed at all, and a plain hash of a
password could be tested offline word by word. Verification refuses a teacher token whose
epoch is not the node's current one (`check_epoch`), so restarting the master with another
TEACHER_PASSWORD is enough to revoke what the old password opened.

`teacher` names the account: there is one shared account today (`SHARED_TEACHER`, the
TEACHER_PASSWORD); per-teacher accounts pass their own id and password record (e.g. its
stored hash) and each teacher's change revokes only that teacher's tokens.

Where the current epoch comes from (`TeacherEpochs`):

- a node with a TEACHER_PASSWORD that answers teachers itself (the master, a standalone
  slave) computes it from that password;
- a slave in a cluster need not know the password: it asks its master for the current epoch
  (`POST /cluster/teacher-epoch`, signed with CLUSTER_KEY like every control request) every
  heartbeat interval, and checks against the latest answer. Until the first answer (a slave
  started while its master is down) it cannot tell an old epoch from a new one and lets teacher
  tokens through on their signature alone; a publish token's short life
  (--publish-token-ttl) bounds that window. A password change reaches such a slave within one
  heartbeat interval.

Signing tokens under a key derived from the epoch would revoke just as well, but a slave that
does not know the password could then not verify any teacher token: the epoch as a claim,
checked against a current value the slave is told, keeps one key for every token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from airclass.auth.errors import unauthorized

EPOCH_LABEL: Final = b"airclass-teacher-password-epoch"
"""Derives the epoch key from SECRET_KEY, apart from the token and session keys."""
EPOCH_BYTES: Final = 12
"""Bytes of the HMAC kept: 96 bits, so that two passwords never share an epoch by chance,
short enough for an RTMP URL."""
SHARED_TEACHER: Final = "teacher"
"""The account behind TEACHER_PASSWORD, shared by every teacher of the school."""
EPOCH_RE: Final = re.compile(r"[A-Za-z0-9_-]{16}")
"""What an epoch looks like (base64url of `EPOCH_BYTES` bytes, no padding)."""


def password_epoch(secret_key: str | bytes, teacher: str, password_record: str) -> str:
    """The epoch of `teacher`'s password: base64url of the first `EPOCH_BYTES` bytes of
    HMAC-SHA256(HMAC-SHA256(SECRET_KEY, EPOCH_LABEL), teacher NUL password_record)."""
    raw = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
    if not raw:
        raise ValueError("secret_key must not be empty")
    if not teacher or "\0" in teacher:
        raise ValueError("teacher must be a non-empty name without NUL")
    key = hmac.digest(raw, EPOCH_LABEL, hashlib.sha256)
    mac = hmac.digest(key, teacher.encode() + b"\0" + password_record.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac[:EPOCH_BYTES]).rstrip(b"=").decode("ascii")


def check_epoch(user_type: str, token_epoch: str | None, current: str | None) -> None:
    """Raise `AuthError` (401) if a teacher token's epoch is not `current`.

    `current` None means this node does not know the current epoch (no password here and no
    answer from the master yet): the token's signature and expiry decide alone. A teacher token
    without an epoch is refused once an epoch is known: it predates epochs, or was minted
    where no password was set.
    """
    if user_type != "teacher" or current is None:
        return
    if token_epoch is None:
        raise unauthorized("teacher token without a password epoch: sign in again")
    if not hmac.compare_digest(token_epoch.encode(), current.encode()):
        raise unauthorized("teacher token revoked (the teacher password changed): sign in again")


class TeacherEpochs:
    """The current password epoch of each teacher account, as this node knows it."""

    __slots__ = ("_shared", "updates")

    def __init__(self, shared: str | None = None) -> None:
        self._shared = shared
        self.updates = 0
        """How many times a different epoch was learned (a password change seen here)."""

    @classmethod
    def from_password(cls, secret_key: str, password: str) -> TeacherEpochs:
        """A node that checks the shared TEACHER_PASSWORD itself (empty: no teacher sign-in,
        so no epoch is known)."""
        if not password:
            return cls(None)
        return cls(password_epoch(secret_key, SHARED_TEACHER, password))

    def current(self, teacher: str = SHARED_TEACHER) -> str | None:
        """The epoch tokens of `teacher` must carry, or None if unknown here."""
        return self._shared

    def learn(self, epoch: str | None) -> bool:
        """Take the master's answer for the shared account; True if it changed."""
        if epoch is not None and not EPOCH_RE.fullmatch(epoch):
            raise ValueError("not a password epoch")
        if epoch == self._shared:
            return False
        self._shared = epoch
        self.updates += 1
        return True


__all__ = [
    "EPOCH_BYTES",
    "SHARED_TEACHER",
    "TeacherEpochs",
    "check_epoch",
    "password_epoch",
]
