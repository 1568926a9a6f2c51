"""Who may read a node's operator views: the node list, the Prometheus targets, `/api/stats`
and `/metrics`.

They name every node's address and every stream, so they answer without credentials only to
the trusted networks (this machine, unless configured), and to anyone else only with one of
two credentials in `Authorization: Bearer`: the metrics token (read from a file; Prometheus
sends it from its `credentials_file`, as it does for MediaMTX), or a teacher's token from
`POST /api/token` (what the dashboard and the teacher page hold), checked by
`authorize("monitor", ...)`.

Pure: the caller passes the peer's address, the raw header and the time. The address is the
socket's peer, never a forwarded-for header, which any client can write.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable

from airclass.auth.authorize import authorize, extract_token
from airclass.auth.errors import AuthError, unauthorized
from airclass.auth.tokens import TokenIssuer

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(remote: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address from a socket's text form; an IPv4 client on a dual-stack socket
    (`::ffff:10.0.0.5`) as its IPv4 address; None when there is none (a Unix socket)."""
    if not remote:
        return None
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class OperatorAccess:
    """The rule for the operator views of one node."""

    __slots__ = ("issuer", "metrics_token", "networks", "node_id")

    def __init__(
        self,
        networks: Iterable[IPNetwork],
        issuer: TokenIssuer,
        node_id: str,
        metrics_token: str | None = None,
    ) -> None:
        self.networks = tuple(networks)
        self.issuer = issuer
        self.node_id = node_id
        self.metrics_token = metrics_token.encode() if metrics_token else None

    def trusted(self, remote: str | None) -> bool:
        address = peer_address(remote)
        return address is not None and any(address in network for network in self.networks)

    def check(self, remote: str | None, authorization: str | None, now: float) -> str:
        """How the request is allowed ("network", "metrics token" or "teacher"); raise
        `AuthError` (401 without or with a bad credential, 403 for a non-teacher token)."""
        if self.trusted(remote):
            return "network"
        token = extract_token({}, authorization)
        if token is None:
            raise unauthorized(
                "this needs credentials from outside the trusted networks: "
                "Authorization: Bearer <metrics token or teacher token>"
            )
        given = token.encode("utf-8", "surrogateescape")
        if self.metrics_token is not None and hmac.compare_digest(given, self.metrics_token):
            return "metrics token"
        if token.count(".") != 2:
            raise unauthorized("bad token")
        claims = self.issuer.verify(token, now=now)
        authorize("monitor", "", claims, node_id=self.node_id)
        return "teacher"


__all__ = ["AuthError", "IPNetwork", "OperatorAccess", "peer_address"]
