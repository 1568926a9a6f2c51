"""A cluster slave's view of the teacher password epoch (auth/epoch.py): asked of the master.

A slave may run without the teacher password, yet it checks teacher tokens (an RTMP publish,
the teacher's preview, its dashboard). Every heartbeat interval it sends a signed
`POST /cluster/teacher-epoch` and keeps the answer in `TeacherEpochs`, so a password changed
on the master revokes old teacher tokens here within one interval. A failed request keeps the
last answer: a master that is briefly down does not re-open revoked tokens.

A request of its own rather than a field of the heartbeat reply: the epoch is a security
decision with its own life, and this keeps it out of the cluster view's format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from airclass.auth.epoch import TeacherEpochs
from airclass.cluster.signing import NONCE_HEADER, SignatureError, sign, verify_reply
from airclass.config import Config
from airclass.tls import client_context

log = logging.getLogger(__name__)

TEACHER_EPOCH_PATH: Final = "/cluster/teacher-epoch"
MAX_REPLY: Final = 4096
"""Bytes: the answer is one short JSON object; anything longer is not the master's."""
FIRST_ANSWER_WAIT: Final = 1.0
"""Seconds a starting slave waits for the master's first answer before it accepts
publishers: long enough for a master on the LAN, short enough that a master that is down
barely delays the slave (which then checks teacher tokens on signature and expiry alone
until the master answers; see auth/epoch.py)."""


class EpochFollower:
    """Keeps `epochs` equal to the master's current teacher password epoch."""

    def __init__(
        self,
        config: Config,
        epochs: TeacherEpochs,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not config.master_url or not config.cluster_key:
            raise ValueError("EpochFollower needs config.master_url and config.cluster_key")
        self.config = config
        self.epochs = epochs
        self.clock = clock
        self.url = config.master_url.rstrip("/") + TEACHER_EPOCH_PATH
        self._signed_path = urlsplit(config.master_url).path.rstrip("/") + TEACHER_EPOCH_PATH
        self.interval = config.heartbeat_interval
        self.timeout = aiohttp.ClientTimeout(total=max(1.0, min(5.0, self.interval)))
        self._ssl = client_context(config.tls_ca)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.answers = 0
        self.failures = 0
        """Consecutive failed requests (reset by an answer)."""

    async def start(self, first_wait: float = FIRST_ANSWER_WAIT) -> None:
        """Ask once (waiting at most `first_wait`), then every interval in the background."""
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        first = asyncio.ensure_future(self.fetch())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), first_wait)
        self._task = asyncio.create_task(self._run_after(first), name="teacher-epoch")

    async def _run_after(self, first: asyncio.Future[bool]) -> None:
        await first
        await asyncio.sleep(self.interval)
        await self.run()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        while True:
            await self.fetch()
            await asyncio.sleep(self.interval)

    async def fetch(self) -> bool:
        """Ask once; True if the master answered with a valid epoch (or null)."""
        session = self._session
        if session is None:
            return False
        body = json.dumps({"node_id": self.config.node_id}, separators=(",", ":")).encode()
        headers = sign(self.config.cluster_key, "POST", self._signed_path, body, self.clock())
        headers["Content-Type"] = "application/json"
        try:
            async with session.post(
                self.url, data=body, headers=headers, timeout=self.timeout
            ) as response:
                # content.read(n) returns what has arrived so far: read to the end, bounded.
                raw = bytearray()
                async for chunk in response.content.iter_chunked(1024):
                    raw += chunk
                    if len(raw) > MAX_REPLY:
                        break
                status, reply_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._failed(type(exc).__name__)
        if status != 200 or len(raw) > MAX_REPLY:
            return self._failed(f"HTTP {status}")
        try:  # a forged epoch would refuse every teacher, or none
            verify_reply(self.config.cluster_key, headers[NONCE_HEADER], status, reply_headers,
                         bytes(raw))
        except SignatureError as exc:
            return self._failed(f"reply refused: {exc.reason}")
        try:
            reply = json.loads(raw)
            epoch = reply["teacher_epoch"]
            if epoch is not None and not isinstance(epoch, str):
                raise ValueError("not a string")
            changed = self.epochs.learn(epoch)
        except (ValueError, KeyError, TypeError, RecursionError):
            return self._failed("malformed reply")
        if changed and self.answers:
            log.warning(
                "node %s: the teacher password changed on the master: older teacher tokens "
                "are refused from now on", self.config.node_id,
            )
        self.answers += 1
        self.failures = 0
        return True

    def _failed(self, what: str) -> bool:
        self.failures += 1
        if self.failures == 1 or self.failures % 12 == 0:
            log.warning("node %s: teacher password epoch from %s failed (%s), %d in a row; "
                        "keeping the last one", self.config.node_id, self.url, what,
                        self.failures)
        return False


__all__ = ["TEACHER_EPOCH_PATH", "EpochFollower"]
