"""The operator views' gate on an aiohttp app (`auth.operator` holds the rule).

`install(app, config, issuer)` puts the node's `OperatorAccess` in the app; `operator_only`
wraps a handler so that it runs only for a request the rule lets through, and every other
request gets a JSON 401/403 (with `WWW-Authenticate: Bearer` on a 401, as RFC 6750 asks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from airclass.auth.errors import AuthError
from airclass.auth.operator import OperatorAccess
from airclass.auth.tokens import TokenIssuer
from airclass.config import Config, parse_networks, read_token_file
from airclass.web.http import Handler, HttpError

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="airclass"'}


@dataclass(slots=True)
class OperatorGate:
    access: OperatorAccess
    clock: Callable[[], float]


OPERATOR: web.AppKey[OperatorGate] = web.AppKey("operator", OperatorGate)


def install(
    app: web.Application,
    config: Config,
    issuer: TokenIssuer,
    clock: Callable[[], float] = time.time,
) -> None:
    """The settings' trusted networks and metrics token (files are read here, once)."""
    token = read_token_file(config.metrics_token_file) if config.metrics_token_file else None
    access = OperatorAccess(parse_networks(config.trusted_networks), issuer, config.node_id, token)
    app[OPERATOR] = OperatorGate(access, clock)


def operator_allowed(request: web.Request) -> bool:
    """Whether the rule lets `request` through (for a view that answers everyone, but says
    more to operators)."""
    gate = request.app[OPERATOR]
    try:
        gate.access.check(request.remote, request.headers.get("Authorization"), gate.clock())
    except AuthError:
        return False
    return True


def operator_only(handler: Handler) -> Handler:
    """`handler`, answered only to trusted networks or with a metrics or teacher token."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        gate = request.app[OPERATOR]
        try:
            gate.access.check(request.remote, request.headers.get("Authorization"), gate.clock())
        except AuthError as exc:
            log.info(
                "node %s: refused %s to %s: %s",
                gate.access.node_id, request.path, request.remote, exc.reason,
            )
            challenge = dict(CHALLENGE) if exc.status == 401 else None
            raise HttpError(exc.status, exc.reason, challenge) from None
        return await handler(request)

    return guarded
