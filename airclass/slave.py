"""`python -m airclass.slave`: an edge node (RTMP in, HLS out, token-checked viewers)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from airclass import config as config_module
from airclass.tls import TlsError, client_context, server_context
from airclass.web.runner import run, serve, setup_logging

log = logging.getLogger("airclass.slave")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_module.load("slave", argv)
        config.check_secrets()
        ssl_context = server_context(config.tls_cert, config.tls_key) if config.tls else None
        client_context(config.tls_ca)  # an unreadable CA bundle stops the node here, not later
    except (config_module.ConfigError, TlsError) as exc:
        print(f"airclass slave: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    from airclass.web.slave_app import create_app

    app = create_app(config)
    log.info(
        "slave %s: HLS %s, API %s, RTMP %s%s",
        config.node_id,
        config.hls_base,
        config.api_base,
        config.rtmp_base,
        f", master {config.master_url}" if config.master_url else " (standalone)",
    )
    from airclass.web.slave_app import FAST_PATH

    run(
        serve(
            app,
            config.bind,
            [config.hls_port, config.api_port],
            name=f"slave {config.node_id}",
            fast_path=app[FAST_PATH] if config.fast_path else None,
            ssl_context=ssl_context,
        ),
        config.event_loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
