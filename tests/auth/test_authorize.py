from __future__ import annotations

from typing import Any

import pytest

from airclass.auth.authorize import authorize, extract_token, verify_and_authorize
from airclass.auth.errors import AuthError
from airclass.auth.tokens import Action, Claims, TokenIssuer

NOW = 1_700_000_000.0
SECRET = "authorize-test-secret-0123456789abcdef"


def claims(**overrides: Any) -> Claims:
    values: dict[str, Any] = dict(user_type="student", user_id="s-1", iat=1_700_000_000,
                                  exp=1_700_003_600, action="read", path="live/stream",
                                  node_id="slave-1", jti="j")
    values.update(overrides)
    return Claims(**values)


def refusal(action: Action, path: str, c: Claims, node_id: str = "slave-1") -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        authorize(action, path, c, node_id=node_id)
    return info.value.status, info.value.reason


def test_student_reads_its_stream_on_its_node() -> None:
    authorize("read", "live/stream", claims(), node_id="slave-1")
    authorize("read", "/live/stream/", claims(), node_id="slave-1")


def test_teacher_publishes_but_a_publish_token_does_not_read() -> None:
    teacher = claims(user_type="teacher", action="publish")
    authorize("publish", "live/stream", teacher, node_id="slave-1")
    assert refusal("read", "live/stream", teacher) == (403, "token does not allow read")


def test_wrong_node() -> None:
    assert refusal("read", "live/stream", claims(), "slave-2") == (403, "token is for another node")


def test_wrong_path() -> None:
    assert refusal("read", "live/other", claims()) == (403, "token is for another stream")
    assert refusal("read", "live/stream2", claims()) == (403, "token is for another stream")
    assert refusal("read", "live", claims()) == (403, "token is for another stream")


def test_read_token_cannot_publish() -> None:
    assert refusal("publish", "live/stream", claims()) == (403, "token does not allow publish")
    teacher_read = claims(user_type="teacher", action="read")
    assert refusal("publish", "live/stream", teacher_read) == (403, "token does not allow publish")


def test_only_teachers_publish() -> None:
    student_publish = claims(user_type="student", action="publish")
    assert refusal("publish", "live/stream", student_publish) == (403, "only teachers may publish")


def test_unknown_action() -> None:
    assert refusal("delete", "live/stream", claims()) == (403, "unknown action")  # type: ignore[arg-type]


def test_verify_and_authorize() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.mint(user_type="student", user_id="s-9", action="read", path="live/stream",
                        node_id="slave-1", now=NOW, ttl=3600)
    got = verify_and_authorize(issuer, token, "read", "live/stream", "slave-1", NOW + 1)
    assert got.user_id == "s-9"
    for tok, action, path, node, now, expected in [
        (None, "read", "live/stream", "slave-1", NOW, (401, "missing token")),
        ("", "read", "live/stream", "slave-1", NOW, (401, "missing token")),
        ("garbage", "read", "live/stream", "slave-1", NOW, (401, "malformed token")),
        (token, "read", "live/stream", "slave-1", NOW + 7200, (401, "token expired")),
        (token, "read", "live/stream", "slave-2", NOW, (403, "token is for another node")),
        (token, "read", "live/x", "slave-1", NOW, (403, "token is for another stream")),
        (token, "publish", "live/stream", "slave-1", NOW, (403, "token does not allow publish")),
    ]:
        with pytest.raises(AuthError) as info:
            verify_and_authorize(issuer, tok, action, path, node, now)  # type: ignore[arg-type]
        assert (info.value.status, info.value.reason) == expected
        assert token not in str(info.value)


def test_extract_token() -> None:
    assert extract_token({"jwt": "q"}, None) == "q"
    assert extract_token({}, "Bearer h") == "h"
    assert extract_token({"jwt": "q"}, "Bearer h") == "h"
    assert extract_token({"jwt": "q"}, "bearer   h ") == "h"
    assert extract_token({"jwt": "q"}, "Basic dXNlcjpwdw==") == "q"
    assert extract_token({"jwt": "q"}, "Bearer ") == "q"
    assert extract_token({}, "Bearer") is None
    assert extract_token({"jwt": ""}, None) is None
    assert extract_token({"jwt": "  "}, None) is None
    assert extract_token({"token": "x"}, "") is None


def test_monitor_needs_a_teacher_token_of_any_action_node_and_stream() -> None:
    for action in ("publish", "read"):
        teacher = claims(user_type="teacher", action=action, node_id="slave-7", path="x/y")
        authorize("monitor", "", teacher, node_id="master")
    student = claims()
    with pytest.raises(AuthError) as info:
        authorize("monitor", "", student, node_id="slave-1")
    assert (info.value.status, info.value.reason) == (
        403, "only teachers may see the cluster's numbers"
    )
