"""The teacher page renews the short-lived publish token and shows the new stream key, in a
real browser (the page's clock is moved forward; the node's is real), and the new key
publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import ONE_BROWSER_AT_A_TIME, Cluster, http_json, publish, wait_for
from tests.e2e.test_browser import browser, new_page

__all__ = ["browser"]  # the fixture, imported for this module's test

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), ONE_BROWSER_AT_A_TIME]


def test_teacher_page_renews_the_publish_key_before_it_expires(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    slave = cluster.slave("--publish-token-ttl", "60")
    page = new_page(browser)
    page.clock.install()
    page.goto(f"{slave.api}/teacher")
    page.fill("#password", cluster.teacher_password)
    page.press("#password", "Enter")
    page.wait_for_selector("#teacher-view:not(.hidden)")
    first = page.input_value("#stream-key")
    assert page.evaluate("window.airclass.reply.expires_in") == 60

    # Renewal is due a fifth of the lifetime before expiry (48 s in); 40 s in, nothing yet.
    page.clock.fast_forward(40_000)
    page.wait_for_timeout(500)
    assert page.input_value("#stream-key") == first
    assert page.evaluate("window.airclass.renewals || 0") == 0
    page.clock.fast_forward(10_000)
    page.wait_for_function("(window.airclass.renewals || 0) === 1", timeout=10_000)
    second = page.input_value("#stream-key")
    assert second != first and second.startswith("stream?jwt=")
    token = parse_qs(second.partition("?")[2])["jwt"][0]
    assert token == page.evaluate("window.airclass.reply.token")

    # The renewed key is what OBS would use next: it publishes.
    pub = publish(f"{page.input_value('#server')}/{second}", 6, log_path=tmp_path / "pub.log")
    try:
        def live() -> bool:
            _status, stats = http_json("GET", f"{slave.api}/api/stats", timeout=2)
            return bool((stats["streams"].get("live/stream") or {}).get("publishing"))

        wait_for(live, 15, what="a publish with the renewed key")
    finally:
        pub.kill()
        pub.wait()
