"""Password epochs: the claim's exact value, and the refusal of a teacher token of another
epoch (auth/epoch.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from airclass.auth.epoch import TeacherEpochs, check_epoch, password_epoch
from airclass.auth.errors import AuthError
from airclass.auth.tokens import TokenIssuer

SECRET = "k" * 32
NOW = 1_700_000_000.0


def payload_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def mint_teacher(issuer: TokenIssuer, action: Any = "publish") -> str:
    return issuer.mint(user_type="teacher", user_id="ms-kim", action=action,
                       path="live/stream", node_id="slave-1", now=NOW, ttl=900)


def test_epoch_exact_values() -> None:
    # HMAC-SHA256(HMAC-SHA256(SECRET, label), "teacher\0correct horse")[:12], base64url.
    assert password_epoch(SECRET, "teacher", "correct horse") == "NcKT4hTm8p5CnkV8"
    assert password_epoch(SECRET, "teacher", "correct horse2") == "ywtcqfnJSRJb9kSm"
    # Per-teacher accounts: the same password of another teacher is another epoch.
    assert password_epoch(SECRET, "ms-kim", "correct horse") == "ccsRTZuk6jshbx0S"
    # Another SECRET_KEY, another epoch: nobody without the key can compute one.
    assert password_epoch("j" * 32, "teacher", "correct horse") != "NcKT4hTm8p5CnkV8"


def test_epoch_never_contains_the_password() -> None:
    epoch = password_epoch(SECRET, "teacher", "correct horse")
    assert "horse" not in epoch and len(epoch) == 16


@pytest.mark.parametrize("teacher", ["", "a\0b"])
def test_epoch_refuses_bad_account(teacher: str) -> None:
    with pytest.raises(ValueError):
        password_epoch(SECRET, teacher, "pw")


def test_check_epoch_rules() -> None:
    check_epoch("teacher", "AAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAA")
    check_epoch("student", None, "AAAAAAAAAAAAAAAA")  # students have no password
    check_epoch("teacher", "AAAAAAAAAAAAAAAA", None)  # epoch unknown here: no check
    with pytest.raises(AuthError) as other:
        check_epoch("teacher", "AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB")
    assert other.value.status == 401
    assert other.value.reason == (
        "teacher token revoked (the teacher password changed): sign in again"
    )
    with pytest.raises(AuthError) as missing:
        check_epoch("teacher", None, "BBBBBBBBBBBBBBBB")
    assert (missing.value.status, missing.value.reason) == (
        401, "teacher token without a password epoch: sign in again"
    )


def test_issuer_stamps_and_checks_the_epoch() -> None:
    old = TokenIssuer(SECRET, TeacherEpochs.from_password(SECRET, "correct horse"))
    token = mint_teacher(old)
    assert payload_of(token)["pwe"] == "NcKT4hTm8p5CnkV8"
    assert old.verify(token, now=NOW).pwe == "NcKT4hTm8p5CnkV8"
    student = old.mint(user_type="student", user_id="s", action="read", path="live/stream",
                       node_id="slave-1", now=NOW, ttl=60)
    assert "pwe" not in payload_of(student)

    # The same SECRET_KEY after a password change: the old teacher tokens are refused, both
    # the publish token and the teacher's read token; students keep theirs.
    new = TokenIssuer(SECRET, TeacherEpochs.from_password(SECRET, "battery staple"))
    for stale in (token, mint_teacher(old, "read")):
        with pytest.raises(AuthError) as refused:
            new.verify(stale, now=NOW)
        assert refused.value.status == 401
    assert new.verify(student, now=NOW).user_type == "student"
    assert new.verify(mint_teacher(new), now=NOW).pwe == password_epoch(
        SECRET, "teacher", "battery staple"
    )

    # A token from before epochs (or a node without a password) is refused once one is known.
    plain = mint_teacher(TokenIssuer(SECRET))
    assert "pwe" not in payload_of(plain)
    with pytest.raises(AuthError):
        new.verify(plain, now=NOW)


def test_slave_without_password_learns_the_epoch() -> None:
    epochs = TeacherEpochs()
    slave = TokenIssuer(SECRET, epochs)
    token = mint_teacher(TokenIssuer(SECRET, TeacherEpochs.from_password(SECRET, "pw-one")))
    assert slave.verify(token, now=NOW).user_type == "teacher"  # unknown: signature decides
    assert epochs.learn(password_epoch(SECRET, "teacher", "pw-two")) is True
    with pytest.raises(AuthError):
        slave.verify(token, now=NOW)
    assert epochs.learn(password_epoch(SECRET, "teacher", "pw-two")) is False
    assert epochs.updates == 1
    with pytest.raises(ValueError):
        epochs.learn("not an epoch!")
    assert epochs.current() == password_epoch(SECRET, "teacher", "pw-two")


def test_no_password_no_epoch() -> None:
    assert TeacherEpochs.from_password(SECRET, "").current() is None
