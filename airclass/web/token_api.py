"""`POST /api/token` (docs/design.md §3), shared by the master and a standalone slave.

The only difference between the two is who picks the node: the master's balancer, or the slave
itself. Everything else — validation, the teacher password, the class code, the reply shape —
lives here once.

A slave of a cluster holds neither the teacher password nor the class code (only the master
does, so a stolen slave cannot give them away); the pages it serves still call its
`/api/token`, which `TokenForwarder` passes to the master. The forwarded request is signed
with the cluster key and names the browser's address, so the master's guessing limiter
counts the real client and not the slave, and nobody else can claim an address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from aiohttp import web

from airclass.auth.tokens import TokenIssuer
from airclass.cluster.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    ReplayCache,
    SignatureError,
    request_nonce,
    sign,
    verify,
    verify_reply,
)
from airclass.config import Config
from airclass.logtext import ThrottledWarnings
from airclass.media.names import PATH_RE
from airclass.web.http import (
    HttpError,
    client_address,
    json_error,
    json_response,
    parse_json_object,
    read_body,
    signed_reply,
)
from airclass.web.ratelimit import GuessLimiter, guess_policy

log = logging.getLogger(__name__)
refusals = ThrottledWarnings(log)
"""Failed sign-ins, logged at most once per 10 s per kind whatever the number of guessers."""

STUDENT_TTL = 3600.0
TEACHER_TTL = 12 * 3600.0
"""Seconds the teacher's read token (preview, dashboard) lives. The publish token lives
`Config.publish_token_ttl`: it travels in the RTMP URL, into OBS settings and screenshots, so
it is kept short and the teacher page renews it; a publish in progress is not cut when it
expires (the RTMP server checks the token once, at `publish`)."""
MAX_USER_ID = 64
DEFAULT_STREAM = "live/stream"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CLIENT_HEADER = "X-AIRClass-Client"
"""On a forwarded sign-in: the browser's address, as the slave saw it (covered by the
signature)."""
FORWARD_TIMEOUT = 5.0
"""Seconds a slave waits for the master's answer to a forwarded sign-in: a person is waiting."""
MAX_FORWARD_REPLY = 64 * 1024
"""A token reply is a few hundred bytes; anything larger from the master is refused."""


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
        self.replay = ReplayCache()
        self.limiter = GuessLimiter(guess_policy(config), "teacher password")
        # Its own limiter: students mistyping the code must not lock the teacher out.
        self.class_code_limiter = GuessLimiter(guess_policy(config), "class code")
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
        if not isinstance(stream, str) or not PATH_RE.fullmatch(stream):
            raise HttpError(400, "stream must look like 'live/stream' (letters, digits, - and _)")

        if user_type == "teacher":
            self._check_teacher(body.get("password"), client, now)
            return self._teacher_reply(user_id, stream, now)
        self._check_class_code(body.get("class_code"), client, now)
        return self._student_reply(user_id, stream, now)

    def forwarded_client(self, request: web.Request, body: bytes) -> str:
        """The browser's address a slave forwarded this sign-in for; 401 unless the request
        is signed with the cluster key (only the master accepts forwarded sign-ins)."""
        client = request.headers.get(CLIENT_HEADER, "")
        if self.config.role != "master" or not self.config.cluster_key:
            raise HttpError(401, "this node does not take forwarded sign-ins")
        try:
            ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            raise HttpError(400, f"{CLIENT_HEADER} must be an IP address") from None
        try:
            verify(
                self.config.cluster_key,
                request.method,
                _forwarded_path(request.path, client),
                body,
                request.headers,
                self.clock(),
                replay=self.replay,
            )
        except SignatureError as exc:
            refusals.warning("forwarded", "forwarded sign-in from %s refused: %s",
                             request.remote, exc.reason)
            raise HttpError(401, f"forwarded sign-in refused: {exc.reason}") from None
        return client

    def _check_teacher(self, password: Any, client: str, now: float) -> None:
        if not self.config.teacher_password:
            raise HttpError(
                403, "teacher sign-in is disabled on this server (no teacher password set)"
            )
        wait = self.limiter.check(client, now)
        if wait > 0:
            refusals.warning("teacher limited", "teacher sign-in from %s rate-limited (%.0f s)",
                             client, wait)
            raise _too_many("too many wrong passwords; try again later", wait)
        given = password if isinstance(password, str) else ""
        if not hmac.compare_digest(given.encode(), self.config.teacher_password.encode()):
            self.limiter.failed(client, now)
            refusals.warning("teacher password", "wrong teacher password from %s", client)
            raise HttpError(401, "wrong teacher password")
        self.limiter.succeeded(client)

    def _check_class_code(self, code: Any, client: str, now: float) -> None:
        expected = self.config.class_code
        if not expected:
            return
        wait = self.class_code_limiter.check(client, now)
        if wait > 0:
            refusals.warning("class code limited", "class code from %s rate-limited (%.0f s)",
                             client, wait)
            raise _too_many("too many wrong class codes; try again later", wait)
        given = code if isinstance(code, str) else ""
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            self.class_code_limiter.failed(client, now)
            refusals.warning("class code", "wrong class code from %s", client)
            raise HttpError(403, "wrong class code")
        self.class_code_limiter.succeeded(client)

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


def _too_many(message: str, wait: float) -> HttpError:
    return HttpError(429, message, {"Retry-After": str(math.ceil(wait))})


def hls_url(target: NodeTarget, stream: str, token: str) -> str:
    return f"{target.hls_base}/{stream}/index.m3u8?jwt={quote(token, safe='')}"


TOKEN_SERVICE: web.AppKey[TokenService] = web.AppKey("token_service", TokenService)


def _forwarded_path(path: str, client: str) -> str:
    """What a forwarded sign-in's signature covers as its path: the path and the client."""
    return f"{path}?client={client}"


async def token_handler(request: web.Request) -> web.Response:
    service = request.app[TOKEN_SERVICE]
    body = await read_body(request)
    if SIGNATURE_HEADER not in request.headers:
        return json_response(service.issue(parse_json_object(body), client_address(request)))
    client = service.forwarded_client(request, body)
    # The slave hands this reply to a browser (it names the node to watch): signed, errors too.
    try:
        response = json_response(service.issue(parse_json_object(body), client))
    except HttpError as exc:
        response = json_error(exc.status, exc.message, exc.headers)
    return signed_reply(response, service.config.cluster_key, request_nonce(request.headers))


class TokenForwarder:
    """A slave of a cluster: `/api/token` and the sign-in parts of `/api/info` come from the
    master (see the module docstring)."""

    def __init__(
        self, master_url: str, cluster_key: str, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.master_url = master_url
        self.cluster_key = cluster_key
        self.ssl_context = ssl_context
        """Trust for an https master: the system's roots plus the node's --tls-ca."""
        self.session: aiohttp.ClientSession | None = None
        self._info: tuple[float, dict[str, Any]] | None = None

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: one HTTP session for the app's lifetime."""
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            connector=aiohttp.TCPConnector(ssl=self.ssl_context or True),
        )
        yield
        await self.session.close()

    async def forward(self, body: bytes, client: str) -> web.Response:
        if self.session is None:
            raise HttpError(503, "this node is starting; try again")
        path = "/api/token"
        headers = sign(self.cluster_key, "POST", _forwarded_path(path, client), body, time.time())
        headers[CLIENT_HEADER] = client
        headers["Content-Type"] = "application/json"
        try:
            async with self.session.post(
                self.master_url + path, data=body, headers=headers
            ) as resp:
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_FORWARD_REPLY:
                        raise HttpError(502, "the master's answer was not understood")
                status, retry = resp.status, resp.headers.get("Retry-After")
                reply_headers = resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning(
                "sign-in for %s: the master did not answer (%s)", client, type(exc).__name__
            )
            raise HttpError(503, "the master cannot be reached; try again shortly") from None
        if not 200 <= status < 600:
            raise HttpError(502, "the master's answer was not understood")
        try:
            verify_reply(self.cluster_key, headers[NONCE_HEADER], status, reply_headers,
                         bytes(data))
        except SignatureError as exc:
            log.warning("sign-in for %s: refused a reply from %s: %s", client, self.master_url,
                        exc.reason)
            raise HttpError(502, "the master's answer could not be verified") from None
        extra = {"Retry-After": retry} if retry and retry.isdigit() else {}
        return web.Response(
            status=status, body=bytes(data), content_type="application/json", headers=extra
        )

    async def sign_in_info(self, now: float) -> dict[str, Any]:
        """`class_code_required` and `teacher_enabled` as the master says (kept a few seconds,
        so a page load costs the master nothing); empty when it cannot be asked."""
        if self._info is not None and now - self._info[0] < 10.0:
            return self._info[1]
        info: dict[str, Any] = {}
        if self.session is not None:
            try:
                async with self.session.get(self.master_url + "/api/info") as resp:
                    reply = parse_json_object(await resp.content.read(MAX_FORWARD_REPLY))
                info = {
                    key: bool(reply.get(key))
                    for key in ("class_code_required", "teacher_enabled")
                }
            except (TimeoutError, aiohttp.ClientError, HttpError):
                return {}
        self._info = (now, info)
        return info


TOKEN_FORWARDER: web.AppKey[TokenForwarder] = web.AppKey("token_forwarder", TokenForwarder)


async def forward_token_handler(request: web.Request) -> web.Response:
    body = await read_body(request)
    return await request.app[TOKEN_FORWARDER].forward(body, client_address(request))
