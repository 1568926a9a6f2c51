"""`POST /api/token` (DESIGN.md §3), shared by the master and a standalone slave.

The only difference between the two is who picks the node: the master's balancer, or the slave
itself. Everything else — validation, the teacher password, the class code, the reply shape —
lives here once.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from airclass.auth.tokens import TokenIssuer
from airclass.config import Config
from airclass.web.http import HttpError, client_address, json_response, read_json
from airclass.web.ratelimit import FailureLimiter

log = logging.getLogger(__name__)

STUDENT_TTL = 3600.0
TEACHER_TTL = 12 * 3600.0
"""Seconds the teacher's read token (preview, dashboard) lives. The publish token lives
`Config.publish_token_ttl`: it travels in the RTMP URL, into OBS settings and screenshots, so
it is kept short and the teacher page renews it; a publish in progress is not cut when it
expires (the RTMP server checks the token once, at `publish`)."""
MAX_USER_ID = 64
DEFAULT_STREAM = "live/stream"
_NAME = r"[A-Za-z0-9_-]{1,64}"
STREAM_RE = re.compile(rf"^{_NAME}/{_NAME}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """Where a viewer or publisher is sent."""

    node_id: str
    hls_base: str
    """e.g. http://10.0.0.5:8888"""
    rtmp_base: str
    """e.g. rtmp://10.0.0.5:1935"""
    backups: tuple[str, ...] = field(default=())


class NodeChooser(Protocol):
    """Picks the node for a request; raises HttpError(503) when none can take it."""

    def viewer_node(self, stream: str, user_id: str) -> NodeTarget: ...

    def ingest_node(self, stream: str) -> NodeTarget: ...

    def routed(self, target: NodeTarget, stream: str) -> None:
        """Called once a viewer token for `target` has been issued."""


class TokenService:
    """Validates token requests and mints tokens bound to the chosen node."""

    def __init__(
        self,
        config: Config,
        issuer: TokenIssuer,
        chooser: NodeChooser,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.issuer = issuer
        self.chooser = chooser
        self.clock = clock
        self.limiter = FailureLimiter()
        self.issued = {"student": 0, "teacher": 0}

    def issue(self, body: dict[str, Any], client: str) -> dict[str, Any]:
        now = self.clock()
        user_type = body.get("user_type", "student")
        if user_type not in ("student", "teacher"):
            raise HttpError(400, "user_type must be 'student' or 'teacher'")
        user_id = body.get("user_id")
        if not isinstance(user_id, str) or not user_id.strip():
            raise HttpError(400, "user_id is required")
        user_id = user_id.strip()
        if len(user_id) > MAX_USER_ID or _CONTROL.search(user_id):
            raise HttpError(400, f"user_id must be at most {MAX_USER_ID} printable characters")
        stream = body.get("stream", DEFAULT_STREAM)
        if not isinstance(stream, str) or not STREAM_RE.match(stream):
            raise HttpError(400, "stream must look like 'live/stream' (letters, digits, - and _)")

        if user_type == "teacher":
            self._check_teacher(body.get("password"), client, now)
            return self._teacher_reply(user_id, stream, now)
        self._check_class_code(body.get("class_code"))
        return self._student_reply(user_id, stream, now)

    def _check_teacher(self, password: Any, client: str, now: float) -> None:
        if not self.config.teacher_password:
            raise HttpError(
                403, "teacher sign-in is disabled on this server (no teacher password set)"
            )
        wait = self.limiter.retry_after(client, now)
        if wait > 0:
            log.warning("teacher sign-in from %s rate-limited (%.0f s)", client, wait)
            raise HttpError(
                429,
                "too many wrong passwords; try again later",
                {"Retry-After": str(int(wait) + 1)},
            )
        given = password if isinstance(password, str) else ""
        if not hmac.compare_digest(given.encode(), self.config.teacher_password.encode()):
            self.limiter.failed(client, now)
            log.warning("wrong teacher password from %s", client)
            raise HttpError(401, "wrong teacher password")
        self.limiter.succeeded(client)

    def _check_class_code(self, code: Any) -> None:
        expected = self.config.class_code
        if not expected:
            return
        given = code if isinstance(code, str) else ""
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise HttpError(403, "wrong class code")

    def _student_reply(self, user_id: str, stream: str, now: float) -> dict[str, Any]:
        target = self.chooser.viewer_node(stream, user_id)
        token = self.issuer.mint(
            user_type="student",
            user_id=user_id,
            action="read",
            path=stream,
            node_id=target.node_id,
            now=now,
            ttl=STUDENT_TTL,
        )
        self.chooser.routed(target, stream)
        self.issued["student"] += 1
        return {
            "token": token,
            "hls_url": hls_url(target, stream, token),
            "node_id": target.node_id,
            "expires_in": int(STUDENT_TTL),
            "expires_at": int(now + STUDENT_TTL),
        }

    def _teacher_reply(self, user_id: str, stream: str, now: float) -> dict[str, Any]:
        ingest = self.chooser.ingest_node(stream)
        publish_ttl = self.config.publish_token_ttl
        publish = self.issuer.mint(
            user_type="teacher",
            user_id=user_id,
            action="publish",
            path=stream,
            node_id=ingest.node_id,
            now=now,
            ttl=publish_ttl,
        )
        watch = self.issuer.mint(
            user_type="teacher",
            user_id=user_id,
            action="read",
            path=stream,
            node_id=ingest.node_id,
            now=now,
            ttl=TEACHER_TTL,
        )
        app, name = stream.split("/", 1)
        self.issued["teacher"] += 1
        log.info("teacher %s may publish %s on %s", user_id, stream, ingest.node_id)
        return {
            "token": publish,
            "hls_url": hls_url(ingest, stream, watch),
            "node_id": ingest.node_id,
            "expires_in": int(publish_ttl),
            "expires_at": int(now + publish_ttl),
            "read_token": watch,
            "read_expires_at": int(now + TEACHER_TTL),
            "rtmp_url": f"{ingest.rtmp_base}/{app}",
            "stream_key": f"{name}?jwt={publish}",
            "publish_url": f"{ingest.rtmp_base}/{app}/{name}?jwt={publish}",
        }


def hls_url(target: NodeTarget, stream: str, token: str) -> str:
    return f"{target.hls_base}/{stream}/index.m3u8?jwt={quote(token, safe='')}"


TOKEN_SERVICE: web.AppKey[TokenService] = web.AppKey("token_service", TokenService)


async def token_handler(request: web.Request) -> web.Response:
    service = request.app[TOKEN_SERVICE]
    body = await read_json(request)
    return json_response(service.issue(body, client_address(request)))
