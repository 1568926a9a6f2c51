"""`python -m airclass.master`: the master (routes students, signs tokens, tracks slaves)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from airclass import config as config_module
from airclass.tls import TlsError, client_context, server_context
from airclass.web.runner import run, serve, setup_logging

log = logging.getLogger("airclass.master")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_module.load("master", argv)
        config.check_secrets()
        ssl_context = server_context(config.tls_cert, config.tls_key) if config.tls else None
        client_context(config.tls_ca)  # an unreadable CA bundle stops the node here, not later
    except (config_module.ConfigError, TlsError) as exc:
        print(f"airclass master: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    from airclass.web.master_app import create_master_app

    app = create_master_app(config)
    log.info(
        "master %s: API %s (heartbeat timeout %.0f s%s)",
        config.node_id,
        config.api_base,
        config.heartbeat_timeout,
        ", sticky routing" if config.sticky else "",
    )
    run(
        serve(
            app,
            config.bind,
            [config.api_port],
            name=f"master {config.node_id}",
            ssl_context=ssl_context,
        ),
        config.event_loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
