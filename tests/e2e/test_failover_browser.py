"""Failover without a reload, in a real browser: Chromium (Debian's, headless) plays the lecture
with the student page's player and hls.js from the npm package; the test SIGKILLs the slave
the student was assigned to, and playback carries on from a backup node listed in the entry
playlist, at the same media sequence, with no user action."""

from __future__ import annotations

import http.server
import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.e2e.conftest import (
    ONE_BROWSER_AT_A_TIME,
    ROOT,
    Cluster,
    Node,
    free_port,
    http_json,
    publish,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), ONE_BROWSER_AT_A_TIME]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAYER_JS = ROOT / "airclass" / "web" / "static" / "player.js"
MAX_STALL = 4.0
INTERVAL = 1.0
MASTER_ARGS = ("--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", "3")
SLAVE_ARGS = ("--heartbeat-interval", str(INTERVAL))

# The student page's player (airclass/web/static/player.js: its hls.js settings, its own
# recovery) on a bare page, with hls.js's events logged. It is given no way to ask the master
# for another node, so playback can only carry on through the entry playlist's backup variant.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>failover</title><script src="/hls.min.js"></script>
<script src="/player.js"></script>
</head><body><video id="v" muted autoplay playsinline></video><script>
window.log = {samples: [], frags: [], levels: [], errors: []};
const Base = window.Hls;
window.Hls = class extends Base {
  constructor(config) {
    super(config);
    // LL-HLS: a segment still being made is played from its parts and has no URL of its own.
    this.on(Base.Events.FRAG_CHANGED, (_e, d) =>
      log.frags.push([performance.now(), d.frag.sn, new URL(d.frag.url || d.frag.baseurl).host]));
    this.on(Base.Events.LEVEL_LOADED, (_e, d) =>
      log.levels.push([performance.now(), d.details.startSN, d.details.endSN,
                       new URL(d.details.url).host]));
    this.on(Base.Events.ERROR, (_e, d) => log.errors.push([performance.now(), d.details, d.fatal]));
  }
};
const video = document.getElementById("v");
const reply = JSON.parse(new URLSearchParams(location.search).get("reply"));
window.player = new AirPlayer(video, {
  getTicket: async () => {
    log.errors.push([performance.now(), "the player asked for another node", true]);
    throw Object.assign(new Error("no other node in this test"), {fatal: true});
  },
  muted: true,
});
player.start(reply);
let last = -1;
setInterval(() => {
  if (video.currentTime !== last) {
    last = video.currentTime;
    log.samples.push([performance.now(), last]);
  }
}, 50);
</script></body></html>
"""


PLAYED_3_S = """() => {
  const first = window.log.samples.find(([, t]) => t > 0);
  return first !== undefined && document.getElementById("v").currentTime - first[1] > 3;
}"""


@dataclass
class FailoverResult:
    stall: float
    """Longest time (s) video.currentTime stood still from 2 s before the kill to the end."""
    advanced: float
    """Seconds of media played after the kill."""
    primary_host: str
    backup_host: str
    last_sn_before: int
    first_sn_after: int
    sns: list[int]
    errors: list[Any]
    unsticks: int
    """Times the player re-attached the media to get hls.js loading again (see player.js)."""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        elif path == "/hls.min.js":
            body, kind = HLS_JS.read_bytes(), "text/javascript"
        elif path == "/player.js":
            body, kind = PLAYER_JS.read_bytes(), "text/javascript"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    if not HLS_JS.is_file():
        pytest.fail("hls.js is not installed: run `npm install` in the repository")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start_lecture(cluster: Cluster, tmp_path: Path, slaves: int = 3) -> tuple[
    Node, dict[str, Node], Any
]:
    """A master, `slaves` slaves, and ffmpeg publishing to the node the master names."""
    master = cluster.master(*MASTER_ARGS)
    nodes = {
        f"slave-{i}": cluster.slave(*SLAVE_ARGS, node_id=f"slave-{i}", master=master)
        for i in range(1, slaves + 1)
    }
    wait_for(lambda: http_json("GET", f"{master.api}/cluster/nodes")[1]["healthy_nodes"]
             == slaves, 10, what="registered slaves")
    status, teacher = http_json("POST", f"{master.api}/api/token", {
        "user_type": "teacher", "user_id": "ms-kim", "password": cluster.teacher_password})
    assert status == 200, teacher
    publisher = publish(f"{teacher['rtmp_url']}/{teacher['stream_key']}", 120,
                        log_path=tmp_path / "publisher.log")

    def everyone_serves() -> bool:
        for node in nodes.values():
            _, stats = http_json("GET", f"{node.api}/api/stats")
            info = stats["streams"].get("live/stream")
            if not info or info.get("media_sequence") is None or info["media_sequence"] < 1:
                return False
        return True

    wait_for(everyone_serves, 25, what="every slave to serve the stream")
    # Peers (the backups) arrive with the next heartbeat reply after everyone registered.
    time.sleep(2 * INTERVAL)
    return master, nodes, (publisher, teacher["node_id"])


def student_on_an_edge(master: Node, origin_id: str) -> dict[str, Any]:
    """A student token from the master for a node that is not the origin."""
    for i in range(12):
        status, reply = http_json("POST", f"{master.api}/api/token",
                                  {"user_type": "student", "user_id": f"student-{i}"})
        assert status == 200, reply
        if reply["node_id"] != origin_id:
            return dict(reply)
    raise AssertionError("the master never routed a student to an edge")


def run_failover(cluster: Cluster, tmp_path: Path, page_base: str, *,
                 watch_after: float = 15.0) -> FailoverResult:
    """Play in Chromium, SIGKILL the student's node, and measure what the viewer saw."""
    from playwright.sync_api import sync_playwright

    master, nodes, (publisher, origin_id) = start_lecture(cluster, tmp_path)
    try:
        reply = student_on_an_edge(master, origin_id)
        victim = nodes[reply["node_id"]]
        primary_host = urlsplit(reply["hls_url"]).netloc
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{page_base}/?reply={quote(json.dumps(reply), safe='')}")
                # currentTime is the stream's clock, which a live player joins at several
                # seconds in: wait for 3 s played, counted from the first frame shown.
                page.wait_for_function(PLAYED_3_S, timeout=30_000)
                killed_at = page.evaluate("performance.now()")
                victim.stop(signal.SIGKILL)
                t_end = time.monotonic() + watch_after
                while time.monotonic() < t_end:
                    page.wait_for_timeout(500)
                log = page.evaluate(
                    "({...window.log, now: performance.now(), unsticks: player.unsticks})"
                )
            finally:
                browser.close()
    finally:
        publisher.kill()
        publisher.wait(5)

    samples = [(t / 1000, ct) for t, ct in log["samples"]]
    kill = killed_at / 1000
    # currentTime is sampled every 50 ms and logged when it changes: the stall is the longest
    # gap between changes from 2 s before the kill until the end (the tail counts too).
    times = [t for t, _ in samples if t >= kill - 2] + [log["now"] / 1000]
    stall = max(b - a for a, b in itertools.pairwise(times))
    played_at_kill = max((ct for t, ct in samples if t <= kill), default=0.0)
    frags = [(t / 1000, int(sn), host) for t, sn, host in log["frags"]]
    before = [f for f in frags if f[2] == primary_host]
    after = [f for f in frags if f[2] != primary_host]
    return FailoverResult(
        stall=stall,
        advanced=samples[-1][1] - played_at_kill,
        primary_host=primary_host,
        backup_host=after[0][2] if after else "",
        last_sn_before=before[-1][1] if before else -1,
        first_sn_after=after[0][1] if after else -1,
        sns=[sn for _, sn, _ in frags],
        errors=log["errors"],
        unsticks=int(log["unsticks"]),
    )


@pytest.mark.timing
def test_killing_the_students_node_keeps_the_video_playing(
    cluster: Cluster, tmp_path: Path, page_server: str
) -> None:
    result = run_failover(cluster, tmp_path, page_server)
    print(f"failover: stall {result.stall:.2f} s, {result.primary_host} -> "
          f"{result.backup_host}, sn {result.last_sn_before} -> {result.first_sn_after}, "
          f"unsticks {result.unsticks}")
    assert result.backup_host, f"playback never moved to a backup node: {result.errors}"
    assert result.advanced >= 10, f"only {result.advanced:.1f} s played after the kill"
    assert result.stall <= MAX_STALL, f"video stood still for {result.stall:.2f} s"
    # The same media sequence continues: the backup's fragments follow the primary's.
    assert result.last_sn_before <= result.first_sn_after <= result.last_sn_before + 1
    assert all(b in (a, a + 1) for a, b in itertools.pairwise(result.sns)), result.sns
    fatal = [e for e in result.errors if e[2]]
    assert not fatal, fatal
