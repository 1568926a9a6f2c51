"""Who may read the operator views (`OperatorAccess`): networks, the metrics token, teachers."""

from __future__ import annotations

import ipaddress

import pytest

from airclass.auth.errors import AuthError
from airclass.auth.operator import OperatorAccess, peer_address
from airclass.auth.tokens import TokenIssuer
from airclass.config import ConfigError, parse_networks

NOW = 1_700_000_000.0
SECRET = "operator-test-secret-0123456789abcdef"
METRICS_TOKEN = "scrape-0123456789abcdefghij"
ISSUER = TokenIssuer(SECRET)


def access(networks: str = "127.0.0.1/32,10.1.0.0/16,fd00::/8") -> OperatorAccess:
    return OperatorAccess(parse_networks(networks), ISSUER, "master", METRICS_TOKEN)


def token(user_type: str = "teacher", action: str = "publish", **kw: object) -> str:
    values: dict[str, object] = dict(
        user_type=user_type, user_id="t", action=action, path="live/stream",
        node_id="slave-9", now=NOW, ttl=3600.0,
    )
    values.update(kw)
    return ISSUER.mint(**values)  # type: ignore[arg-type]


def refusal(remote: str | None, authorization: str | None, now: float = NOW) -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        access().check(remote, authorization, now)
    return info.value.status, info.value.reason


def test_parse_networks() -> None:
    assert parse_networks("127.0.0.0/8, ::1/128,,10.0.0.5") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.5/32"),
    )
    assert parse_networks("10.0.0.7/24") == (ipaddress.ip_network("10.0.0.0/24"),)
    assert parse_networks("") == ()
    for bad in ("10.0.0.0/33", "school", "10.0.0.0/8;", "::1/129", "*"):
        with pytest.raises(ConfigError):
            parse_networks(bad)


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("fe80::1%eth0", "fe80::1"),
        ("", None),
        (None, None),
        ("unknown", None),
    ],
)
def test_peer_address(remote: str | None, expected: str | None) -> None:
    address = peer_address(remote)
    assert (str(address) if address is not None else None) == expected


def test_trusted_networks_need_no_credentials() -> None:
    rule = access()
    for remote in ("127.0.0.1", "10.1.255.255", "::ffff:10.1.0.1", "fd12::5"):
        assert rule.check(remote, None, NOW) == "network", remote
    for remote in ("127.0.0.2", "10.2.0.1", "::1", "192.168.1.1", "", None, "garbage"):
        assert not rule.trusted(remote), remote


def test_untrusted_needs_the_metrics_token_or_a_teacher_token() -> None:
    assert refusal("127.0.0.2", None) == (
        401,
        "this needs credentials from outside the trusted networks: "
        "Authorization: Bearer <metrics token or teacher token>",
    )
    rule = access()
    assert rule.check("127.0.0.2", f"Bearer {METRICS_TOKEN}", NOW) == "metrics token"
    assert rule.check("127.0.0.2", f"bearer  {METRICS_TOKEN} ", NOW) == "metrics token"
    assert rule.check("127.0.0.2", f"Bearer {token()}", NOW) == "teacher"
    assert rule.check("127.0.0.2", f"Bearer {token(action='read')}", NOW) == "teacher"


def test_bad_credentials_are_refused() -> None:
    assert refusal("127.0.0.2", f"Bearer {METRICS_TOKEN}x") == (401, "bad token")
    assert refusal("127.0.0.2", f"Bearer {METRICS_TOKEN[:-1]}") == (401, "bad token")
    # Another scheme carries no bearer token: as if there were no header.
    assert refusal("127.0.0.2", f"Basic {METRICS_TOKEN}") == refusal("127.0.0.2", None)
    assert refusal("127.0.0.2", "Bearer é") == (401, "bad token")
    assert refusal("127.0.0.2", f"Bearer {token(user_type='student', action='read')}") == (
        403, "only teachers may see the cluster's numbers"
    )
    forged = TokenIssuer("another-secret-0123456789abcdef").mint(
        user_type="teacher", user_id="t", action="publish", path="live/stream",
        node_id="slave-9", now=NOW, ttl=3600.0,
    )
    assert refusal("127.0.0.2", f"Bearer {forged}") == (401, "bad token signature")
    assert refusal("127.0.0.2", f"Bearer {token()}", now=NOW + 3600 + 30) == (401, "token expired")


def test_without_a_metrics_token_only_teachers_get_in() -> None:
    rule = OperatorAccess(parse_networks("127.0.0.1/32"), ISSUER, "master", None)
    with pytest.raises(AuthError) as info:
        rule.check("127.0.0.2", f"Bearer {METRICS_TOKEN}", NOW)
    assert (info.value.status, info.value.reason) == (401, "bad token")
    assert rule.check("127.0.0.2", f"Bearer {token()}", NOW) == "teacher"
