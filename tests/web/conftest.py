"""An in-process slave app driven by pytest-aiohttp, with streams fed by real encoded frames.

Time is injected: the HLS views, the token service, the stream table and its packagers all
read `Clock`, so a test moves time with `clock.advance(s)` instead of sleeping.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from airclass.auth.sessions import SessionSigner
from airclass.auth.tokens import Action, TokenIssuer, UserType
from airclass.config import Config, finalize
from airclass.hls.packager import HlsPackager
from airclass.media.hub import Publication
from airclass.web.hls_views import HLS_CONTEXT
from airclass.web.slave_app import SLAVE, create_app
from airclass.web.token_api import TOKEN_SERVICE
from tests.hls.conftest import make_test_frames

NODE_ID = "slave-a"
PATH = "live/stream"
T0 = 1_700_000_000.0
SID_LINE = re.compile(r"^([A-Za-z0-9_-]{8,96})/media\.m3u8$")


class Clock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(**overrides: Any) -> Config:
    values: dict[str, Any] = {
        "role": "slave",
        "node_id": NODE_ID,
        "bind": "127.0.0.1",
        "public_host": "127.0.0.1",
        "rtmp_port": 0,
        "hls_port": 8888,
        "api_port": 8000,
        "secret_key": secrets.token_urlsafe(32),
        "teacher_password": "correct horse battery",
    }
    values.update(overrides)
    return finalize(Config(**values))


@dataclass
class Slave:
    """One in-process slave: its app, a client talking to it, and helpers."""

    app: web.Application
    client: TestClient[web.Request, web.Application]
    config: Config
    clock: Clock

    @property
    def issuer(self) -> TokenIssuer:
        return self.app[HLS_CONTEXT].issuer

    def token(
        self,
        path: str = PATH,
        *,
        node_id: str = NODE_ID,
        action: Action = "read",
        user_type: UserType = "student",
        user_id: str = "alice",
        ttl: float = 3600.0,
        now: float | None = None,
    ) -> str:
        return self.issuer.mint(
            user_type=user_type,
            user_id=user_id,
            action=action,
            path=path,
            node_id=node_id,
            now=self.clock() if now is None else now,
            ttl=ttl,
        )

    def publish(self, path: str = PATH, seconds: float = 9.0, owner: str = "test") -> Publication:
        """Publish `seconds` of a real H.264+AAC stream (2 s GOP): four complete segments."""
        video, audio, frames = make_test_frames(seconds)
        pub = self.app[SLAVE].streams.hub.publish(path, owner)
        pub.send_video_config(video)
        pub.send_audio_config(audio)
        for frame in frames:
            pub.send(frame)
        return pub

    def packager(self, path: str = PATH) -> HlsPackager:
        stream = self.app[SLAVE].streams.get(path)
        assert stream is not None, f"no stream {path}"
        return stream.packager

    def signer_for(self, node_id: str, secret: str | None = None) -> SessionSigner:
        return SessionSigner(secret or self.config.secret_key, node_id)

    async def enter(self, path: str = PATH, token: str | None = None) -> str:
        """Open the entry playlist with a token; return the session id it hands out."""
        token = token or self.token(path)
        resp = await self.client.get(f"/{path}/index.m3u8", params={"jwt": token})
        text = await resp.text()
        assert resp.status == 200, text
        sids = [m.group(1) for line in text.splitlines() if (m := SID_LINE.match(line))]
        assert len(sids) == 1, text
        return sids[0]

    async def stats(self) -> dict[str, Any]:
        resp = await self.client.get("/api/stats")
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


SlaveFactory = Callable[..., Awaitable[Slave]]


@pytest.fixture
def make_slave(aiohttp_client: Any) -> SlaveFactory:
    """`await make_slave(**config_overrides)` → a started in-process Slave."""

    async def factory(**overrides: Any) -> Slave:
        config = make_config(**overrides)
        clock = Clock()
        app = create_app(config)
        app[HLS_CONTEXT].clock = clock
        app[TOKEN_SERVICE].clock = clock
        app[SLAVE].streams.clock = clock
        client = await aiohttp_client(app)
        return Slave(app, client, config, clock)

    return factory


@pytest.fixture
async def slave(make_slave: SlaveFactory) -> Slave:
    return await make_slave()


@pytest.fixture
async def live(slave: Slave) -> Slave:
    """A slave with `live/stream` published and four segments in its ring."""
    slave.publish()
    assert slave.packager().state == "live"
    return slave
