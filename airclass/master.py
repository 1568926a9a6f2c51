"""`python -m airclass.master`: the master (routes students, signs tokens, tracks slaves)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from airclass import config as config_module
from airclass.web.runner import run, serve, setup_logging

log = logging.getLogger("airclass.master")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_module.load("master", argv)
        config.check_secrets()
    except config_module.ConfigError as exc:
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
        serve(app, config.bind, [config.api_port], name=f"master {config.node_id}"),
        config.event_loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
