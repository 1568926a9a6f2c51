"""Run an aiohttp app on one or more ports until SIGINT/SIGTERM, then clean up in order.

`web.run_app` serves one address; a slave serves HLS and its API on two ports, so this is the
small loop both entry points share. Cleanup (`cleanup_ctx`) runs on a signal, which is where a
slave unregisters from its master.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

log = logging.getLogger(__name__)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(app: web.Application, host: str, ports: list[int], *, name: str) -> None:
    """Serve `app` on every port in `ports` (duplicates once) until a stop signal."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for port in dict.fromkeys(ports):
            site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
            await site.start()
            log.info("%s listening on http://%s:%d", name, host, port)
        await stop.wait()
        log.info("%s stopping", name)
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
