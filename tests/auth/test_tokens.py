from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.auth.errors import AuthError
from airclass.auth.tokens import CLAIM_NAMES, Claims, TokenIssuer, encode_hs256

SECRET = "test-secret-key-of-at-least-32-bytes"
NOW = 1_700_000_000.0
KEY = SECRET.encode() if isinstance(SECRET, str) else SECRET  # the contract: SECRET_KEY itself


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(payload: Any, *, header: dict[str, Any] | None = None, key: bytes = KEY,
          digest: Any = hashlib.sha256, raw_payload: str | None = None) -> str:
    """A token signed by hand, so that any header or payload can be tried."""
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64((raw_payload if raw_payload is not None else json.dumps(payload)).encode())
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64(hmac.digest(key, signing_input, digest))}"


def good_payload() -> dict[str, Any]:
    return {
        "user_type": "student",
        "user_id": "s-1",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        "action": "read",
        "path": "live/stream",
        "node_id": "slave-1",
        "jti": "abc",
    }


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET)


def mint(issuer: TokenIssuer, **overrides: Any) -> str:
    args: dict[str, Any] = dict(user_type="student", user_id="s-1", action="read",
                                path="live/stream", node_id="slave-1", now=NOW, ttl=3600)
    args.update(overrides)
    return issuer.mint(**args)


def reason(issuer: TokenIssuer, token: Any, now: float = NOW) -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        issuer.verify(token, now=now)
    assert token not in info.value.reason if isinstance(token, str) and token else True
    return info.value.status, info.value.reason


def test_round_trip_has_exactly_the_claims(issuer: TokenIssuer) -> None:
    token = mint(issuer, user_type="teacher", action="publish", path="/live/stream/")
    payload = jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert sorted(payload) == sorted(CLAIM_NAMES)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = issuer.verify(token, now=NOW + 10)
    assert claims == Claims(user_type="teacher", user_id="s-1", iat=1_700_000_000,
                            exp=1_700_003_600, action="publish", path="live/stream",
                            node_id="slave-1", jti=payload["jti"])
    assert len(claims.jti) >= 16
    assert set(claims.jti) <= set(string.ascii_letters + string.digits + "-_")


def test_each_token_has_its_own_jti(issuer: TokenIssuer) -> None:
    jtis = {issuer.verify(mint(issuer), now=NOW).jti for _ in range(50)}
    assert len(jtis) == 50


def test_issue_returns_claims(issuer: TokenIssuer) -> None:
    issued = issuer.issue(user_type="student", user_id="u", action="read", path="live/stream",
                          node_id="n", now=NOW + 0.7, ttl=60)
    assert issued.claims.exp == 1_700_000_060
    assert issuer.verify(issued.token, now=NOW) == issued.claims


def test_tokens_are_a_public_contract(issuer: TokenIssuer) -> None:
    """Any system holding SECRET_KEY verifies our tokens, and mints tokens we accept."""
    payload = jwt.decode(mint(issuer), SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert sorted(payload) == sorted(CLAIM_NAMES)
    outside = jwt.encode({**payload, "user_id": "from-sso", "jti": "x1"}, SECRET, algorithm="HS256")
    assert issuer.verify(outside, now=NOW).user_id == "from-sso"


def test_expiry_is_decided_by_now_and_leeway(issuer: TokenIssuer) -> None:
    token = mint(issuer)  # exp = NOW + 3600
    exp = NOW + 3600
    assert issuer.verify(token, now=exp - 1, leeway=0).user_id == "s-1"
    assert reason_with(issuer, token, now=exp, leeway=0) == (401, "token expired")
    assert issuer.verify(token, now=exp + 29.9).user_id == "s-1"  # default leeway 30 s
    assert reason_with(issuer, token, now=exp + 30, leeway=30) == (401, "token expired")


def reason_with(issuer: TokenIssuer, token: str, *, now: float, leeway: float) -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        issuer.verify(token, now=now, leeway=leeway)
    return info.value.status, info.value.reason


def test_other_secret_is_forged(issuer: TokenIssuer) -> None:
    other = mint(TokenIssuer("another-secret"))
    assert reason(issuer, other) == (401, "bad token signature")


def test_alg_none_refused(issuer: TokenIssuer) -> None:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(good_payload()).encode())
    assert reason(issuer, f"{head}.{body}.") == (401, "token algorithm not allowed")
    assert reason(issuer, f"{head}.{body}.AAAA") == (401, "token algorithm not allowed")


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("HS512", hashlib.sha512), ("HS384", hashlib.sha384), ("RS256", hashlib.sha256),
     ("ES256", hashlib.sha256), ("hs256", hashlib.sha256), ("PS256", hashlib.sha256)],
)
def test_other_algorithms_refused_even_with_the_right_key(
    issuer: TokenIssuer, alg: str, digest: Any
) -> None:
    token = forge(good_payload(), header={"alg": alg, "typ": "JWT"}, digest=digest)
    assert reason(issuer, token) == (401, "token algorithm not allowed")


def test_header_without_alg_refused(issuer: TokenIssuer) -> None:
    token = forge(good_payload(), header={"typ": "JWT"})
    assert reason(issuer, token) == (401, "token algorithm not allowed")


def test_forged_by_hand_with_right_key_is_accepted(issuer: TokenIssuer) -> None:
    # The control for the refusal tests: the forging helper itself makes valid tokens.
    assert issuer.verify(forge(good_payload()), now=NOW).user_id == "s-1"


def test_tampered_payload_refused(issuer: TokenIssuer) -> None:
    head, _body, sig = mint(issuer).split(".")
    payload = good_payload()
    payload["node_id"] = "slave-2"
    tampered = f"{head}.{b64(json.dumps(payload).encode())}.{sig}"
    assert reason(issuer, tampered) == (401, "bad token signature")


def test_tampered_signature_refused(issuer: TokenIssuer) -> None:
    token = mint(issuer)
    last = "A" if token[-2] != "A" else "B"
    assert reason(issuer, token[:-2] + last + token[-1]) == (401, "bad token signature")


@pytest.mark.parametrize("claim", CLAIM_NAMES)
def test_missing_claim_refused(issuer: TokenIssuer, claim: str) -> None:
    payload = good_payload()
    del payload[claim]
    assert reason(issuer, forge(payload)) == (401, f"token claim {claim} missing")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("user_type", "admin"), ("user_type", 1), ("user_type", None),
        ("user_id", 5), ("user_id", ""), ("user_id", ["a"]), ("user_id", "x" * 257),
        ("iat", "1700000000"), ("iat", True), ("iat", None),
        ("exp", "1700003600"), ("exp", False), ("exp", [1]), ("exp", {"a": 1}),
        ("action", "write"), ("action", 0),
        ("path", 7), ("path", ""), ("path", "/"),
        ("node_id", None), ("node_id", 3.5),
        ("jti", 12),
    ],
)
def test_wrong_claim_type_refused(issuer: TokenIssuer, claim: str, value: Any) -> None:
    payload = good_payload()
    payload[claim] = value
    assert reason(issuer, forge(payload)) == (401, f"token claim {claim} invalid")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_exp_refused(issuer: TokenIssuer, literal: str) -> None:
    raw = json.dumps(good_payload()).replace("1700003600", literal)
    assert literal in raw
    assert reason(issuer, forge(None, raw_payload=raw)) == (401, "token claim exp invalid")


def test_iat_after_exp_refused(issuer: TokenIssuer) -> None:
    payload = good_payload()
    payload["iat"] = payload["exp"] + 1
    assert reason(issuer, forge(payload)) == (401, "token claim iat invalid")


def test_float_times_accepted(issuer: TokenIssuer) -> None:
    payload = good_payload()
    payload["exp"] = 1_700_003_600.9
    assert issuer.verify(forge(payload), now=NOW).exp == 1_700_003_600


def test_extra_claims_ignored(issuer: TokenIssuer) -> None:
    payload = good_payload()
    payload["role"] = "admin"
    assert issuer.verify(forge(payload), now=NOW) == Claims(**good_payload())


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "..", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9..", "é.é.é",
     "x" * 5000, "a" * 2000 + "." + "b" * 2000 + "." + "c" * 200],
)
def test_garbage_refused(issuer: TokenIssuer, token: str) -> None:
    status, why = reason(issuer, token)
    assert status == 401
    assert why in {"missing token", "malformed token", "token algorithm not allowed",
                   "bad token signature"}


def test_payload_not_an_object_refused(issuer: TokenIssuer) -> None:
    assert reason(issuer, forge([1, 2])) == (401, "malformed token")
    assert reason(issuer, forge(None, raw_payload="not json")) == (401, "malformed token")


def test_non_string_token_refused(issuer: TokenIssuer) -> None:
    assert reason(issuer, None) == (401, "missing token")
    assert reason(issuer, b"a.b.c") == (401, "missing token")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_refused_cleanly(token: str) -> None:
    issuer = TokenIssuer(SECRET)
    with pytest.raises(AuthError) as info:
        issuer.verify(token, now=NOW)
    assert info.value.status == 401


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ABCDEFGHabcdefgh0123456789-_", max_size=60),
                min_size=3, max_size=3))
def test_any_three_part_string_is_refused_cleanly(parts: list[str]) -> None:
    issuer = TokenIssuer(SECRET)
    with pytest.raises(AuthError) as info:
        issuer.verify(".".join(parts), now=NOW)
    assert info.value.status == 401


def test_mint_rejects_bad_arguments(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        mint(issuer, user_type="admin")
    with pytest.raises(ValueError):
        mint(issuer, action="delete")
    with pytest.raises(ValueError):
        mint(issuer, ttl=0)
    with pytest.raises(ValueError):
        mint(issuer, node_id="")
    with pytest.raises(ValueError):
        mint(issuer, path="/")
    with pytest.raises(ValueError):
        TokenIssuer("")


_CLAIM_TEXT = st.text(min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(user_id=_CLAIM_TEXT, path=_CLAIM_TEXT.filter(lambda p: p.strip("/") != ""),
       node_id=_CLAIM_TEXT, user_type=st.sampled_from(["student", "teacher"]),
       action=st.sampled_from(["read", "publish"]),
       now=st.integers(min_value=0, max_value=4_000_000_000), ttl=st.integers(1, 10**6))
def test_our_encoder_writes_what_pyjwt_writes_and_pyjwt_verifies_it(
    user_id: str, path: str, node_id: str, user_type: Any, action: Any, now: int, ttl: int
) -> None:
    issued = TokenIssuer(SECRET).issue(user_type=user_type, user_id=user_id, action=action,
                                       path=path, node_id=node_id, now=now, ttl=ttl)
    payload = issued.claims.to_payload()
    assert issued.token == jwt.encode(payload, KEY, algorithm="HS256")
    decoded = jwt.decode(issued.token, KEY, algorithms=["HS256"],
                         options={"verify_exp": False, "verify_iat": False})
    assert decoded == payload
    assert jwt.get_unverified_header(issued.token) == {"alg": "HS256", "typ": "JWT"}


def test_pyjwt_refuses_our_token_under_another_key() -> None:
    token = encode_hs256(good_payload(), KEY)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, b"another-secret-key-of-32-bytes!!", algorithms=["HS256"],
                   options={"verify_exp": False})


def test_we_verify_what_pyjwt_mints(issuer: TokenIssuer) -> None:
    payload = good_payload() | {"user_id": "학생-1 ✓"}
    token = jwt.encode(payload, KEY, algorithm="HS256")
    assert encode_hs256(payload, KEY) == token
    assert issuer.verify(token, now=NOW).to_payload() == payload
