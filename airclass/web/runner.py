"""Run an aiohttp app on one or more ports until SIGINT/SIGTERM, then clean up in order.

`web.run_app` serves one address; a slave serves HLS and its API on two ports, so this is the
small loop both entry points share. Cleanup (`cleanup_ctx`) runs on a signal, which is where a
slave unregisters from its master.

Connection limits a hostile or broken client can push on are set here, once for every node:
aiohttp's own default keep-alive is an hour, and it is also the only timer that closes a
connection that never sends a complete request, so 10,000 silent sockets would stay open.
On a stop signal, in-flight handlers (a relay long poll waits up to 20 s) get
`SHUTDOWN_TIMEOUT` seconds to finish before they are cancelled.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
import signal
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    from airclass.web.fastpath import FastPath

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = 15.0
"""Seconds an idle connection (or one that never completes a request) stays open. A player
reloads its playlist every target duration (≤ 10 s), so it never hits this."""
SHUTDOWN_TIMEOUT = 0.5
"""Seconds in-flight handlers get after a stop signal before they are cancelled. aiohttp waits
up to this twice (for the handler, then after cancelling its request) before it cancels the
handler's task, so a held relay long poll delays the exit by about one second."""


class BadRequestLogFilter(logging.Filter):
    """One short WARNING per malformed request, at most `per_second` a second.

    aiohttp logs every request its parser refuses (an overlong line, too many headers, garbage)
    at ERROR with a traceback whose message quotes the start of the offending line, which can
    hold a viewer's token. A client could fill the disk with them. This keeps the client's
    address and the kind of error, drops the quote and the traceback, and counts what it skips.
    Errors in our handlers are not parser errors and keep their traceback.
    """

    def __init__(
        self, per_second: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self._allowance = per_second
        self._last = clock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self.clock()
        self._allowance = min(
            self.per_second, self._allowance + (now - self._last) * self.per_second
        )
        self._last = now
        if self._allowance < 1:
            self.suppressed += 1
            return False
        self._allowance -= 1
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "refused a malformed request from %s: %s (HTTP %s)%s"
        skipped = f"; {self.suppressed} more not logged" if self.suppressed else ""
        record.args = (client, type(exc).__name__, exc.code, skipped)
        self.suppressed = 0
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(BadRequestLogFilter())


async def serve(
    app: web.Application,
    host: str,
    ports: list[int],
    *,
    name: str,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    fast_path: FastPath | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve `app` on every port in `ports` (duplicates once) until a stop signal, with
    `fast_path` (if any) in front of aiohttp on every connection, as HTTPS with `ssl_context`
    (the fast path hands TLS connections to aiohttp: it writes to the socket itself).

    On the signal the listening sockets close; aiohttp runs `app.on_shutdown` (a slave
    unregisters there), then waits at most `shutdown_timeout` for in-flight handlers, then runs
    `cleanup_ctx`; connections still on the fast path close last.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.Server] = []
    try:
        assert runner.server is not None
        factory: Callable[[], asyncio.BaseProtocol] = runner.server
        if fast_path is not None:
            fast_path.keepalive_timeout = keepalive_timeout
            factory = fast_path.wrap(runner.server)
        for port in dict.fromkeys(ports):
            servers.append(
                await loop.create_server(
                    factory,
                    host,
                    port,
                    backlog=1024,
                    reuse_address=True,
                    ssl=ssl_context,
                    # A client that opens a connection and never finishes the TLS handshake is
                    # closed as one that never finishes a request.
                    ssl_handshake_timeout=keepalive_timeout if ssl_context else None,
                )
            )
            scheme = "https" if ssl_context is not None else "http"
            log.info("%s listening on %s://%s:%d", name, scheme, host, port)
        await stop.wait()
        log.info("%s stopping", name)
    finally:
        for server in servers:
            server.close()
        await runner.cleanup()
        if fast_path is not None:
            fast_path.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


OPEN_FILES_WANTED: Final = 65536

HEAP_BLOCKS_UP_TO: Final = 32 << 20
"""Bytes: memory blocks up to this size come from the heap and are reused when freed. A
segment is at most 16 MiB (`Segmenter.max_bytes`)."""
HEAP_KEEPS_FREE: Final = 64 << 20
"""Bytes of freed memory at the top of the heap kept before any is given back to the system."""
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def keep_freed_memory(
    blocks_up_to: int = HEAP_BLOCKS_UP_TO, keeps_free: int = HEAP_KEEPS_FREE
) -> bool:
    """Have glibc's allocator reuse the memory of freed large blocks; False where there is no
    glibc (the defaults stay). A slave makes and drops a segment of several hundred KB every
    target duration; by default glibc maps every block from 128 KiB up afresh and unmaps it
    when freed, so that joining a closed segment's bytes faults in every page of it anew, on
    the ingest's time, where pages used before are already mapped. Each node keeps up to
    `keeps_free` bytes it freed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # musl has a mallopt that does nothing and says so (0).
    return bool(
        mallopt(_M_MMAP_THRESHOLD, blocks_up_to) and mallopt(_M_TRIM_THRESHOLD, keeps_free)
    )


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's soft limit on open files to `wanted` (or the hard limit, if
    lower); returns the limit now in force. A viewer's connection on the fast path holds two
    descriptors (its socket and a duplicate for sending headers with MSG_MORE), and every
    shared body a memory file: the usual soft limit of 1,024 would turn viewers away near 450,
    fewer than a gigabit card carries at 1.6 Mbit/s."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def run(main: Coroutine[Any, Any, None], event_loop: str = "auto") -> None:
    """Run `main` on uvloop when it is installed (or asked for), else on asyncio's own loop,
    with the open file limit raised (`raise_open_file_limit`) and freed memory kept for reuse
    (`keep_freed_memory`).

    uvloop's loop and transports are written in C, and the event loop's own work per request
    and per socket read is most of what a slave does (benchmarks/RESULTS.md, "Event loop").
    """
    limit = raise_open_file_limit()
    log.debug("open file limit: %d", limit)
    log.debug("freed memory kept for reuse: %s", keep_freed_memory())
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if event_loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                raise
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        log.debug("event loop: %s", type(runner.get_loop()).__module__)
        runner.run(main)
