"""The slave's link to its master: register, heartbeat, unregister, all signed.

Life of a link (`MasterLink.step` does one action and says how long to wait before the next,
so tests drive it without sleeping):

- not registered: `POST /cluster/register` with the node's URLs and first stats. While the
  master is down, retry with exponential backoff and jitter, capped at one heartbeat interval
  (so a master that comes back hears from every slave within one interval, and a school's
  slaves rebooting together do not knock in lockstep);
- registered: `POST /cluster/stats` every `heartbeat_interval`. A 404 with
  `{"register": true}` means the master restarted and forgot us: register again at once.
  Network errors keep the heartbeat going at its interval: viewers are served regardless;
- on shutdown (`close`, from the slave's cleanup_ctx on SIGTERM/SIGINT):
  `POST /cluster/unregister`, bounded by a short timeout.

Each reply carries the cluster view (`ClusterView`): the origin of every live stream and the
other serving nodes. Listeners added with `add_listener` get it after every reply. A reply is
acted on only with the master's signature for this very request (`signing.verify_reply`):
an unsigned or wrongly signed one counts as a failed request, whoever sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp

from airclass.cluster.signing import NONCE_HEADER, SignatureError, sign, verify_reply
from airclass.cluster.wire import (
    ClusterView,
    Heartbeat,
    NodeStats,
    Peer,
    Registration,
    StreamOrigin,
    Unregister,
    WireError,
)
from airclass.config import Config
from airclass.tls import client_context

log = logging.getLogger(__name__)

REGISTER_PATH: Final = "/cluster/register"
STATS_PATH: Final = "/cluster/stats"
UNREGISTER_PATH: Final = "/cluster/unregister"
UNREGISTER_TIMEOUT: Final = 2.0
MAX_REPLY: Final = 1024 * 1024
_STATS_EXTRA: Final = ("bytes_served", "sessions_closed", "process_cpu", "process_rss",
                       "rtmp_connections", "uptime")

HeartbeatOutcome = Literal["ok", "unknown", "error"]


class Backoff:
    """Exponential backoff with jitter: `initial × factor^n`, capped at `maximum`, each delay
    drawn uniformly from `[delay × (1 - jitter), delay]`."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 5.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.rng = rng
        self.attempts = 0
        self.level = 0.0
        """The last delay before jitter (0 before the first failure): it grows to `maximum`."""

    def next(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        delay = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        self.level = delay
        return delay * (1 - self.jitter * self.rng())

    def reset(self) -> None:
        self.attempts = 0
        self.level = 0.0


class BandwidthMeter:
    """Bytes per second served, from a cumulative byte counter sampled at each heartbeat."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def sample(self, total_bytes: int, now: float) -> float:
        last = self._last
        self._last = (now, total_bytes)
        if last is None or now <= last[0] or total_bytes < last[1]:
            return 0.0
        return (total_bytes - last[1]) / (now - last[0])


def heartbeat_stats(node_stats: Mapping[str, Any], bandwidth: float) -> NodeStats:
    """The heartbeat's `stats` from `SlaveNode.stats()`.

    `streams` lists the paths this node is origin of (a publisher is live here); `serving`
    every path it holds. `sessions_opened` lets the master reconcile the viewers it routed.
    """
    streams = node_stats.get("streams") or {}
    extra: dict[str, Any] = {}
    for key in _STATS_EXTRA:
        value = node_stats.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            extra[key] = value
    return NodeStats(
        connections=int(node_stats.get("connections", 0)),
        cpu=float(node_stats.get("cpu") or 0.0),
        memory=float(node_stats.get("memory") or 0.0),
        max_connections=int(node_stats["max_connections"]),
        sessions_opened=int(node_stats.get("sessions_opened", 0)),
        streams=frozenset(path for path, info in streams.items() if info.get("publishing")),
        serving=frozenset(streams),
        bandwidth=round(max(bandwidth, 0.0), 1),
        extra=extra,
    )


ClusterListener = Callable[[ClusterView], None]


class MasterLink:
    """Registers this slave with the master and keeps it informed (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        node_stats: Callable[[], Mapping[str, Any]],
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        if not config.master_url:
            raise ValueError("MasterLink needs config.master_url")
        if not config.cluster_key:
            raise ValueError("MasterLink needs config.cluster_key")
        self.config = config
        self.master_url = config.master_url.rstrip("/")
        self._prefix = urlsplit(self.master_url).path.rstrip("/")
        self.node_stats = node_stats
        self.clock = clock
        self.interval = config.heartbeat_interval
        self.backoff = backoff or Backoff(
            initial=min(0.5, self.interval), maximum=self.interval
        )
        self.timeout = aiohttp.ClientTimeout(total=max(1.0, min(5.0, self.interval)))
        self._session = session
        self._own_session = session is None
        self._ssl = client_context(config.tls_ca)
        """Trust for an https master: the system's roots plus --tls-ca."""
        self._meter = BandwidthMeter()
        self._listeners: list[ClusterListener] = []
        self._task: asyncio.Task[None] | None = None
        self.registered = False
        self.registration = ""
        """The secret of this node's current registration, which heartbeats carry."""
        self.bad_replies = 0
        """Replies refused for a missing or wrong signature (someone else answered)."""
        self.cluster: ClusterView | None = None
        self.registrations = 0
        self.heartbeats = 0
        self.failures = 0
        """Consecutive failed requests (reset by any success)."""

    # Public API

    def add_listener(self, listener: ClusterListener) -> None:
        """Call `listener(view)` after every register/heartbeat reply."""
        self._listeners.append(listener)

    def live_elsewhere(self, path: str) -> StreamOrigin | None:
        """The other node the master last named as the origin of `path`, if any: a publish
        here would be a second origin, which the master refuses."""
        view = self.cluster
        origin = view.streams.get(path) if view is not None else None
        if origin is None or origin.node_id == self.config.node_id:
            return None
        return origin

    async def start(self) -> None:
        if self._session is None:
            self._session = self._new_session()
        self._task = asyncio.create_task(self.run(), name="master-link")

    async def close(self, *, unregister: bool = True) -> None:
        """Stop heartbeating and, if registered, tell the master we are leaving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if unregister and self.registered:
            await self.unregister()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        while True:
            delay = await self.step()
            await asyncio.sleep(delay)

    async def step(self) -> float:
        """One register or heartbeat; the seconds to wait before the next step."""
        if not self.registered:
            if await self.register():
                self.backoff.reset()
                return self.interval
            growing = self.backoff.level < self.backoff.maximum
            delay = self.backoff.next()
            if growing:
                # Each step while the backoff grows, then silence at the cap (see _failed).
                log.info(
                    "node %s: next registration attempt in %.2f s (backoff %.2f s, cap %.2f s)",
                    self.config.node_id, delay, self.backoff.level, self.backoff.maximum,
                )
            return delay
        outcome = await self.heartbeat()
        if outcome == "unknown":
            self.registered = False
            return 0.0
        return self.interval

    async def register(self) -> bool:
        config = self.config
        registration = Registration(
            node_id=config.node_id,
            node_name=config.node_id,
            api_url=config.api_base,
            hls_url=config.hls_base,
            rtmp_url=config.rtmp_base,
            max_connections=config.max_connections,
            stats=self._stats(),
        )
        status, reply = await self._post(REGISTER_PATH, registration.to_json(), self.timeout)
        view = self._view(reply) if status == 200 else None
        if view is None or not view.registration:
            self._failed("register", status, reply if view is None else "no registration")
            return False
        if self.registrations:
            log.info("node %s registered again with %s", config.node_id, self.master_url)
        else:
            log.info("node %s registered with %s", config.node_id, self.master_url)
        self.registration = view.registration
        self.registered = True
        self.registrations += 1
        self.failures = 0
        self._update(view)
        return True

    async def heartbeat(self) -> HeartbeatOutcome:
        beat = Heartbeat(self.config.node_id, self.registration, self._stats())
        status, reply = await self._post(STATS_PATH, beat.to_json(), self.timeout)
        view = self._view(reply) if status == 200 else None
        if view is not None:
            if self.failures:
                log.info("node %s: master %s answers again", self.config.node_id,
                         self.master_url)
            self.heartbeats += 1
            self.failures = 0
            self._update(view)
            return "ok"
        if status == 404 and isinstance(reply, Mapping) and reply.get("register") is True:
            log.info("node %s: master %s does not know this registration (restarted?); "
                     "registering again", self.config.node_id, self.master_url)
            self.failures = 0
            return "unknown"
        self._failed("heartbeat", status, reply)
        return "error"

    async def unregister(self) -> bool:
        leaving = Unregister(self.config.node_id, self.registration)
        status, reply = await self._post(
            UNREGISTER_PATH, leaving.to_json(), aiohttp.ClientTimeout(total=UNREGISTER_TIMEOUT),
        )
        self.registered = False
        if status == 200:
            log.info("node %s unregistered from %s", self.config.node_id, self.master_url)
            return True
        log.warning("node %s could not unregister from %s (%s)", self.config.node_id,
                    self.master_url, _describe(status, reply))
        return False

    # Internals

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))

    def _stats(self) -> NodeStats:
        node_stats = self.node_stats()
        bandwidth = self._meter.sample(int(node_stats.get("bytes_served", 0)), self.clock())
        return heartbeat_stats(node_stats, bandwidth)

    def _view(self, reply: Any) -> ClusterView | None:
        try:
            view = ClusterView.from_json(reply)
        except WireError as exc:
            log.warning("node %s: master reply without a usable cluster view (%s)",
                        self.config.node_id, exc.reason)
            return None
        if view.node_id != self.config.node_id:
            log.warning("node %s: master reply is for node %s", self.config.node_id, view.node_id)
            return None
        return view

    def _update(self, view: ClusterView) -> None:
        self.cluster = view
        for listener in self._listeners:
            try:
                listener(view)
            except Exception:
                log.exception("cluster listener failed")

    def _failed(self, what: str, status: int | None, reply: Any) -> None:
        self.failures += 1
        # Log the first failure and then every 12th, so a long outage does not flood the log.
        if self.failures == 1 or self.failures % 12 == 0:
            log.warning("node %s: %s to %s failed (%s), %d in a row", self.config.node_id, what,
                        self.master_url, _describe(status, reply), self.failures)

    async def _post(
        self, path: str, body: Mapping[str, Any], timeout: aiohttp.ClientTimeout
    ) -> tuple[int | None, Any]:
        """POST a signed JSON body; (status, parsed reply), where a reply the slave acts on
        (200, 404) is one the master signed; else (None, why)."""
        session = self._session
        if session is None:
            self._session = session = self._new_session()
            self._own_session = True
        data = json.dumps(body, separators=(",", ":")).encode()
        signed_path = self._prefix + path
        headers = sign(self.config.cluster_key, "POST", signed_path, data, self.clock())
        nonce = headers[NONCE_HEADER]
        headers["Content-Type"] = "application/json"
        try:
            async with session.post(
                self.master_url + path, data=data, headers=headers, timeout=timeout
            ) as response:
                # content.read(n) returns what has arrived so far: read to the end, bounded.
                raw = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    raw += chunk
                    if len(raw) > MAX_REPLY:
                        return None, f"reply over {MAX_REPLY} bytes"
                status, reply_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, type(exc).__name__
        if status in (200, 404):
            try:
                verify_reply(self.config.cluster_key, nonce, status, reply_headers, bytes(raw))
            except SignatureError as exc:
                self.bad_replies += 1
                return None, f"HTTP {status} refused: {exc.reason}"
        try:
            reply = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            reply = None
        return status, reply


def _describe(status: int | None, reply: Any) -> str:
    if status is None:
        return f"unreachable: {reply}"
    if isinstance(reply, Mapping) and isinstance(reply.get("error"), str):
        return f"HTTP {status}: {reply['error'][:200]}"
    return f"HTTP {status}"


__all__ = ["Backoff", "BandwidthMeter", "ClusterView", "MasterLink", "Peer", "StreamOrigin",
           "heartbeat_stats"]
