"""One free student token against a real slave's viewer count (sessions per token, entry rate).

Each entry request mints a viewer session; before the cap, one token could open a hundred and
fill a node, and with --hard-limit lock the rest of the class out. Here a real slave (uvloop,
fast path) serves a real ffmpeg lecture with --hard-limit and a small --max-connections: one
token's hundred entries yield at most --sessions-per-token viewers, refusals are clean JSON
429s, and another student still gets in.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airclass.auth.tokens import TokenIssuer
from tests.e2e.conftest import Cluster, Node, http_get, http_json, need, publish, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PATH = "live/stream"
ATTEMPTS = 100
CAPACITY = 8
SID_LINE = re.compile(r"^([A-Za-z0-9_-]{8,96})/media\.m3u8$", re.MULTILINE)


def tokens_for(cluster: Cluster, node_id: str) -> Callable[[str], str]:
    issuer = TokenIssuer(cluster.secret_key)

    def token(user: str) -> str:
        return issuer.mint(
            user_type="student", user_id=user, action="read", path=PATH, node_id=node_id,
            now=time.time(), ttl=600,
        )

    return token


def entry(slave: Node, token: str) -> tuple[int, bytes, dict[str, str]]:
    return http_get(f"{slave.hls}/{PATH}/index.m3u8?jwt={urllib.parse.quote(token, safe='')}")


def play(slave: Node, sid: str) -> tuple[int, bytes]:
    status, body, _ = http_get(f"{slave.hls}/{PATH}/{sid}/media.m3u8")
    return status, body


def viewers(slave: Node) -> int:
    return int(http_json("GET", f"{slave.api}/api/stats")[1]["connections"])


@pytest.fixture
def lecture(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Node]:
    """A standalone slave with --hard-limit, serving a live ffmpeg lecture."""
    extra: tuple[str, ...] = getattr(request, "param", ())
    slave = cluster.slave("--hard-limit", "--max-connections", str(CAPACITY), *extra)
    publisher: subprocess.Popen[bytes] = publish(
        f"{slave.rtmp}/{PATH}?key={cluster.stream_key}", 90
    )
    try:
        probe = tokens_for(cluster, "slave-1")("probe")
        wait_for(lambda: entry(slave, probe)[0] == 200, 30, interval=0.5, what="the lecture")
        yield slave
    finally:
        publisher.terminate()
        publisher.wait(10)


def test_a_hundred_entries_of_one_token_are_rate_limited_and_capped(
    cluster: Cluster, lecture: Node
) -> None:
    token = tokens_for(cluster, "slave-1")
    mallory = token("mallory")
    started = time.monotonic()
    replies = [entry(lecture, mallory) for _ in range(ATTEMPTS)]
    elapsed = time.monotonic() - started
    granted = [body for status, body, _ in replies if status == 200]
    # The default burst is 10, then one entry per 2 s.
    assert 10 <= len(granted) <= 10 + math.ceil(elapsed / 2.0), (len(granted), elapsed)
    for status, body, headers in replies:
        if status != 200:
            assert status == 429
            assert headers["Content-Type"] == "application/json"
            wait = int(headers["Retry-After"])
            assert 1 <= wait <= 2
            assert json.loads(body) == {
                "error": f"too many requests with this link; try again in {wait} s"
            }
    sids = [sid for body in granted for sid in SID_LINE.findall(body.decode())]
    assert len(sids) == len(granted)
    played = [play(lecture, sid) for sid in sids]
    assert [status for status, _ in played].count(200) == 3
    for status, body in played:
        if status != 200:
            assert status == 429
            assert json.loads(body) == {
                "error": "this link is already playing in the most players allowed (3); "
                "close one and try again in 30 s"
            }
    assert viewers(lecture) == 3
    # The three admitted players keep playing; another student still gets in.
    assert all(play(lecture, sid)[0] == 200 for sid, (status, _) in zip(sids, played,
                                                                       strict=True)
               if status == 200)
    status, body, _ = entry(lecture, token("yuna"))
    assert status == 200, body
    assert play(lecture, SID_LINE.findall(body.decode())[0])[0] == 200
    assert viewers(lecture) == 4
    metrics = http_get(f"{lecture.api}/metrics")[1].decode()
    assert f"airclass_entries_rate_limited_total {ATTEMPTS - len(granted)}.0" in metrics
    assert f"airclass_sessions_refused_per_token_total {len(sids) - 3}.0" in metrics


@pytest.mark.parametrize("lecture", [("--entry-burst", "1000")], indirect=True)
def test_the_cap_alone_keeps_one_token_from_filling_a_hard_limited_node(
    cluster: Cluster, lecture: Node
) -> None:
    """Even with a rate limit loose enough to hand out a hundred sessions ids, one token
    holds three viewers: before the cap, its hundred sids took every seat of the node."""
    token = tokens_for(cluster, "slave-1")
    mallory = token("mallory")
    replies = [entry(lecture, mallory) for _ in range(ATTEMPTS)]
    assert [status for status, _, _ in replies] == [200] * ATTEMPTS
    sids = [sid for _, body, _ in replies for sid in SID_LINE.findall(body.decode())]
    assert len(set(sids)) == ATTEMPTS
    played = [play(lecture, sid)[0] for sid in sids]
    assert played.count(200) == 3 and played.count(429) == ATTEMPTS - 3
    assert viewers(lecture) == 3
    # Once the token holds three, its next entry is refused outright.
    status, body, headers = entry(lecture, mallory)
    assert status == 429 and headers["Retry-After"] == "30", body
    # The rest of the class still gets in, up to the node's capacity.
    others = []
    for i in range(CAPACITY - 3):
        status, body, _ = entry(lecture, token(f"student-{i}"))
        assert status == 200, body
        others.append(SID_LINE.findall(body.decode())[0])
    assert [play(lecture, sid)[0] for sid in others] == [200] * (CAPACITY - 3)
    assert viewers(lecture) == CAPACITY


def test_a_player_opening_the_backup_variant_too_fits_a_cap_of_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    """ffmpeg (as VLC) opens every variant of the entry playlist: the origin's and the backup
    node's. The backup's session counts on the backup node only, so a cap of one session per
    token still lets it play, and still refuses the same token a second player."""
    beat = ("--heartbeat-interval", "1", "--heartbeat-timeout", "5")
    master = cluster.master(*beat)
    nodes = {
        node_id: cluster.slave(*beat, "--sessions-per-token", "1", node_id=node_id,
                               master=master)
        for node_id in ("slave-a", "slave-b")
    }
    wait_for(lambda: http_json("GET", f"{master.api}/cluster/nodes")[1]["healthy_nodes"] == 2,
             10, what="registered slaves")
    status, teacher = http_json("POST", f"{master.api}/api/token", {
        "user_type": "teacher", "user_id": "ms-kim", "password": cluster.teacher_password})
    assert status == 200, teacher
    publisher = publish(f"{teacher['rtmp_url']}/{teacher['stream_key']}", 90)
    reader: subprocess.Popen[bytes] | None = None
    try:
        status, student = http_json(
            "POST", f"{master.api}/api/token", {"user_type": "student", "user_id": "yuna"}
        )
        assert status == 200, student
        primary = nodes[student["node_id"]]
        backup = next(node for node in nodes.values() if node is not primary)
        probe = tokens_for(cluster, student["node_id"])("probe")

        def entry_with_backup() -> bool:
            status, body, _ = entry(primary, probe)
            return status == 200 and f"{backup.hls}/{PATH}/".encode() in body

        wait_for(entry_with_backup, 30, interval=1.0, what="an entry listing the backup")
        reader = subprocess.Popen(
            [need("ffmpeg"), "-v", "error", "-i", student["hls_url"], "-map", "0",
             "-t", "6", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "reader.log", "wb"),  # noqa: SIM115
        )
        wait_for(lambda: viewers(primary) == 1 and viewers(backup) == 1, 20, interval=0.5,
                 what="ffmpeg's sessions on the origin and the backup")
        # The token's one session on its node is taken: another player is refused.
        status, body, _ = entry(primary, student["token"])
        assert (status, json.loads(body)) == (429, {
            "error": "this link is already playing in the most players allowed (1); "
            "close one and try again in 30 s"
        })
        assert reader.wait(30) == 0, (tmp_path / "reader.log").read_text()
        for node in (primary, backup):
            metrics = http_get(f"{node.api}/metrics")[1].decode()
            assert "airclass_sessions_refused_per_token_total 0.0" in metrics, node.api
    finally:
        for proc in (reader, publisher):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
