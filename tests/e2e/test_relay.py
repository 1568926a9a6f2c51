"""One stream, every node, with real processes: a master, three slaves, ffmpeg publishing to
one of them and ffmpeg readers decoding the stream from the other two. Playlists and segments
are compared byte for byte at the same media sequence; a slave started while the lecture is
live serves it within one segment duration."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airclass.auth.tokens import TokenIssuer
from tests.e2e.conftest import Cluster, Node, http_get, http_json, need, publish, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PATH = "live/stream"
INTERVAL = 1.0
MASTER_ARGS = ("--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", "3")
SLAVE_ARGS = ("--heartbeat-interval", str(INTERVAL))
SEGMENT = 2.0
_SEQ = re.compile(rb"#EXT-X-MEDIA-SEQUENCE:(\d+)")


def viewer_url(cluster: Cluster, node: Node, node_id: str, user: str = "kim") -> str:
    """A student's entry URL for `node`, with a token the master would have issued."""
    token = TokenIssuer(cluster.secret_key).mint(
        user_type="student", user_id=user, action="read", path=PATH, node_id=node_id,
        now=time.time(), ttl=3600,
    )
    return f"{node.hls}/{PATH}/index.m3u8?jwt={quote(token, safe='')}"


def media_url(entry_url: str) -> str:
    status, body, _ = http_get(entry_url)
    assert status == 200, body
    uri = next(line for line in body.decode().splitlines() if line and not line.startswith("#"))
    return entry_url.split("index.m3u8")[0] + uri


def serving(node: Node) -> dict[str, Any] | None:
    status, stats = http_json("GET", f"{node.api}/api/stats")
    if status != 200:
        return None
    info = stats["streams"].get(PATH)
    return info if info and info.get("media_sequence") is not None else None


def same_moment(urls: list[str], timeout: float = 10.0) -> list[bytes]:
    """The media playlists of every node at one media sequence and newest segment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [http_get(url)[1] for url in urls]
        if all(body == bodies[0] for body in bodies) and _SEQ.search(bodies[0]):
            return bodies
        time.sleep(0.05)
    raise AssertionError(f"playlists never matched: {bodies!r}")


def test_three_slaves_serve_identical_bytes_and_readers_decode(
    cluster: Cluster, tmp_path: Path
) -> None:
    master = cluster.master(*MASTER_ARGS)
    slaves = {
        f"slave-{i}": cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master)
        for i in (1, 2, 3)
    }
    wait_for(lambda: http_json("GET", f"{master.api}/cluster/nodes")[1]["healthy_nodes"] == 3,
             10, what="three registered slaves")
    status, teacher = http_json("POST", f"{master.api}/api/token", {
        "user_type": "teacher", "user_id": "ms-kim", "password": cluster.teacher_password})
    assert status == 200, teacher
    origin_id = teacher["node_id"]
    edges = [node_id for node_id in slaves if node_id != origin_id]
    publisher = publish(f"{teacher['rtmp_url']}/{teacher['stream_key']}", 60,
                        log_path=tmp_path / "publisher.log")
    try:
        wait_for(lambda: serving(slaves[origin_id]), 15, what="the origin's first segment")
        for node_id in edges:
            wait_for(lambda node_id=node_id: serving(slaves[node_id]), 5 + 2 * INTERVAL,
                     what=f"{node_id} to relay the stream")
        # Only the origin publishes; the others relay.
        assert serving(slaves[origin_id])["publishing"] is True  # type: ignore[index]
        for node_id in edges:
            assert serving(slaves[node_id])["publishing"] is False  # type: ignore[index]

        # Two real readers, one per edge, decode 10 s of audio and video without an error.
        # They read the edge's media playlist: given the entry playlist, ffmpeg would open
        # every redundant variant (all three nodes) at once, which no player does.
        readers = [
            subprocess.Popen(
                [need("ffmpeg"), "-hide_banner", "-v", "error", "-i",
                 media_url(viewer_url(cluster, slaves[node_id], node_id)), "-t", "10",
                 "-map", "0:v",
                 "-map", "0:a", "-f", "framecrc", "-"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            for node_id in edges
        ]
        for reader in readers:
            out, err = reader.communicate(timeout=60)
            assert reader.returncode == 0, err.decode()
            assert err.decode().strip() == ""
            lines = [line for line in out.decode().splitlines() if line and line[0] != "#"]
            video = [line for line in lines if line.startswith("0,")]
            audio = [line for line in lines if line.startswith("1,")]
            assert len(video) >= 10 * 25 * 0.95 and len(audio) >= 10 * 46 * 0.95

        # Playlists: byte for byte at the same media sequence, several times over.
        urls = [media_url(viewer_url(cluster, node, node_id)) for node_id, node in slaves.items()]
        sequences = set()
        for _ in range(3):
            bodies = same_moment(urls)
            text = bodies[0].decode()
            match = _SEQ.search(bodies[0])
            assert match is not None
            sequences.add(int(match.group(1)))
            # Segments: the same bytes on every node.
            names = [line for line in text.splitlines() if line and not line.startswith("#")]
            assert len(names) >= 3
            for name in names:
                datas = [http_get(url.replace("media.m3u8", name))[1] for url in urls]
                assert len(datas[0]) > 1000 and datas[0][0] == 0x47
                assert all(data == datas[0] for data in datas[1:]), name
            time.sleep(SEGMENT)
        assert len(sequences) >= 2, "compared at more than one media sequence"

        # Scale-out: a slave started while live serves the stream within one segment.
        late = cluster.slave(*SLAVE_ARGS, node_id="slave-4", master=master)
        ready = time.monotonic()
        wait_for(lambda: serving(late), SEGMENT, interval=0.02,
                 what="the new slave to serve the live stream")
        took = time.monotonic() - ready
        urls.append(media_url(viewer_url(cluster, late, "slave-4")))
        bodies = same_moment(urls)
        assert bodies[-1] == bodies[0]
        print(f"slave-4 served the stream {took:.3f} s after it became healthy")
        # ... and takes new students at once (it is the least loaded).
        routed = [http_json("POST", f"{master.api}/api/token",
                            {"user_type": "student", "user_id": f"late-{i}"})[1]["node_id"]
                  for i in range(4)]
        assert "slave-4" in routed
    finally:
        publisher.kill()
        publisher.wait(5)
