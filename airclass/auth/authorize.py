"""The one place that decides whether a token lets a request through.

Every protocol (HLS playlist, RTMP publish, the API) calls `authorize` or
`verify_and_authorize`, so the rules live here once:

- the token must be for this node (a slave refuses a token minted for another one);
- the token must be for this stream path;
- `publish` needs a publish token held by a teacher;
- `read` needs a read token: each token allows one action (the token API gives a teacher a
  separate read token for the preview), so a leaked viewer URL never carries publish rights
  and a publish token is not accepted as a viewer;
- `monitor` (the dashboard, the node list, stats and metrics) needs a teacher's token, of
  either action, for any node and stream: the numbers are the whole cluster's, and the token
  a teacher signs in with is bound to the node that ingests their stream, not to the one
  showing the numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from airclass.auth.errors import AuthError, forbidden, unauthorized
from airclass.auth.tokens import Action, Claims, TokenIssuer, normalize_path

__all__ = ["AuthError", "Permission", "authorize", "extract_token", "verify_and_authorize"]

log = logging.getLogger(__name__)

#: The query parameter that carries a token in HLS and RTMP URLs.
TOKEN_QUERY_PARAM = "jwt"

Permission = Action | Literal["monitor"]
"""What a request asks to do: a token's own action, or `monitor` (see the module docstring)."""


def authorize(action: Permission, path: str, claims: Claims, *, node_id: str) -> None:
    """Raise `AuthError` (403) unless `claims` allow `action` on `path` on node `node_id`."""
    if action == "monitor":
        if claims.user_type != "teacher":
            raise forbidden("only teachers may see the cluster's numbers")
        return
    if claims.node_id != node_id:
        raise forbidden("token is for another node")
    if claims.path != normalize_path(path):
        raise forbidden("token is for another stream")
    if action == "publish":
        if claims.action != "publish":
            raise forbidden("token does not allow publish")
        if claims.user_type != "teacher":
            raise forbidden("only teachers may publish")
    elif action == "read":
        if claims.action != "read":
            raise forbidden("token does not allow read")
    else:
        raise forbidden("unknown action")


def verify_and_authorize(
    issuer: TokenIssuer,
    token: str | None,
    action: Action,
    path: str,
    node_id: str,
    now: float,
) -> Claims:
    """Verify `token` (401 on failure) then `authorize` it (403); return its claims."""
    if not token:
        raise unauthorized("missing token")
    claims = issuer.verify(token, now=now)
    try:
        authorize(action, path, claims, node_id=node_id)
    except AuthError as exc:
        log.info("refused %s on %s at node %s for user %s: %s",
                 action, normalize_path(path), node_id, claims.user_id, exc.reason)
        raise
    return claims


def extract_token(query: Mapping[str, str], authorization: str | None) -> str | None:
    """The token of a request: `Authorization: Bearer <token>` first, else `?jwt=<token>`.

    Pure: takes the parsed query and the raw header value, so every server can use it.
    Another scheme in `Authorization` (e.g. Basic) is ignored rather than refused.
    """
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            value = value.strip()
            if value:
                return value
    param = query.get(TOKEN_QUERY_PARAM)
    if param:
        return param.strip() or None
    return None
