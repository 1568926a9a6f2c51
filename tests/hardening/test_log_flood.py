"""Failed sign-ins and unsigned control requests from many addresses cost a real master a few
log lines, not one each: a flood must not fill the disk or hide the lines that matter."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import Cluster
from tests.hardening.test_hostile_http import raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _post(port: int, path: str, body: dict[str, object], source: str) -> int:
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    return raw_request(port, head + data, source=source).status


def test_a_flood_of_refusals_from_many_addresses_is_a_few_log_lines(cluster: Cluster) -> None:
    master = cluster.master()
    port = master.ports["api"]
    started = time.monotonic()
    statuses: list[int] = []
    for i in range(60):
        source = f"127.0.{i // 200}.{10 + i % 200}"
        for _ in range(3):
            statuses.append(_post(port, "/api/token", {
                "user_type": "teacher", "user_id": "t", "password": "wrong-wrong-wrong",
            }, source))
            statuses.append(_post(port, "/cluster/stats", {"node_id": "x"}, source))
    elapsed = time.monotonic() - started
    # 401 for each wrong password, 429 once the guessing limiter's global ceiling is reached.
    assert set(statuses) <= {401, 429} and statuses.count(401) > 180, set(statuses)
    log = master.log()
    lines = {kind: log.count(kind) for kind in (
        "wrong teacher password from", "teacher sign-in from", "refused POST /cluster/stats"
    )}
    print(f"{len(statuses)} refusals from 60 addresses in {elapsed:.1f} s: log lines {lines}")
    # One line per kind per 10 s, whatever the number of addresses.
    bound = 1 + int(elapsed // 10) + 1
    assert all(count <= bound for count in lines.values()), lines
    assert lines["wrong teacher password from"] and lines["refused POST /cluster/stats"]
    time.sleep(max(0.0, 10.5 - (time.monotonic() - started)))
    _post(port, "/cluster/stats", {"node_id": "x"}, "127.0.0.9")
    assert "more like this not logged" in master.log()
