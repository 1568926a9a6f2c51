"""The pages in a real browser (Debian's Chromium, headless, via Playwright) against real nodes.

Proofs: a student joins, waits for the teacher, and the video really plays; the latency from
EXT-X-PROGRAM-DATE-TIME is reported; the token is renewed without interrupting the video; the
teacher page's stream key publishes (ffmpeg uses exactly what the page shows) and the page warns
about a long keyframe interval; the dashboard shows the nodes and updates when a slave stops.
Screenshots go to artifacts/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ONE_BROWSER_AT_A_TIME,
    ROOT,
    Cluster,
    Node,
    http_json,
    publish,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), ONE_BROWSER_AT_A_TIME]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `scripts/install.sh test`, which installs it")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any, locale: str = "en-US") -> Any:
    # bypass_csp: Playwright evaluates strings; the pages themselves run under their CSP.
    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 860},
                                  bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda msg: msg.type == "error" and print("console:", msg.text))
    return page


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def run_testsrc(url_or_api: list[str], log_path: Path, env: dict[str, str] | None = None,
            duration: float = 180) -> subprocess.Popen[bytes]:
    """The built-in PyAV test-pattern publisher as a process."""
    return subprocess.Popen(
        [sys.executable, "-m", "airclass.testsrc", *url_or_api, "--duration", str(duration)],
        cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def join_as_student(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/")
    page.fill("#name", name)
    page.press("#name", "Enter")
    page.wait_for_selector("#watch-view:not(.hidden)")


def wait_playing(page: Any, timeout_ms: int = 40_000) -> dict[str, Any]:
    """Wait until the video plays for real: currentTime advances and frames have a size."""
    page.wait_for_function("window.airclass.player && window.airclass.player.state === 'playing'",
                           timeout=timeout_ms)
    start = page.evaluate("document.getElementById('video').currentTime")
    page.wait_for_function(
        f"document.getElementById('video').currentTime > {start} + 2", timeout=15_000
    )
    video: dict[str, Any] = page.evaluate(
        "(() => { const v = document.getElementById('video');"
        " return {t: v.currentTime, w: v.videoWidth, h: v.videoHeight, paused: v.paused}; })()"
    )
    assert video["w"] > 0 and video["h"] > 0, video
    assert not video["paused"]
    return video


PLAYER_STATE = """(() => {
  const hls = window.airclass.player.hls, video = document.getElementById('video');
  const frag = hls && hls.streamController.currentFrag;
  const details = hls && hls.levels[hls.currentLevel] && hls.levels[hls.currentLevel].details;
  const last = details && details.fragments[details.fragments.length - 1];
  const ago = (ms) => ms == null ? null : (Date.now() - ms) / 1000;
  return {
    currentTime: video.currentTime,
    bufferedEnd: video.buffered.length ? video.buffered.end(video.buffered.length - 1) : null,
    frag: frag && {sn: frag.sn, start: frag.start, datedAgo: ago(frag.programDateTime)},
    newest: last && {sn: last.sn, start: last.start, duration: last.duration,
                     datedAgo: ago(last.programDateTime)},
    hlsLatency: hls && hls.latency, targetLatency: hls && hls.targetLatency,
  };
})()"""


def latency(page: Any) -> float:
    page.wait_for_function("window.airclass.player && window.airclass.player.latency !== null")
    value = float(page.evaluate("window.airclass.player.latency"))
    return value


def test_student_waits_then_plays_reports_latency_and_renews(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    slave = cluster.slave("--segment-duration", "1")
    page = new_page(browser)
    join_as_student(page, slave.api, "Kim Minji")

    # Nothing is live yet: the student waits, and the page says so.
    page.wait_for_function("window.airclass.state === 'waiting'")
    assert "Waiting for the teacher" in page.inner_text("#overlay-text")
    screenshot(page, "student-waiting.png")

    pub = run_testsrc([f"{slave.rtmp}/live/stream?key={cluster.stream_key}"], tmp_path / "src.log")
    try:
        video = wait_playing(page)
        assert (video["w"], video["h"]) == (640, 360)
        assert page.inner_text("#node") == "slave-1"

        # Glass-to-glass: the program date of the frame on screen against the wall clock.
        page.wait_for_timeout(4000)
        samples, states = [], []
        for _ in range(5):
            samples.append(latency(page))
            states.append(page.evaluate(PLAYER_STATE))
            page.wait_for_timeout(1000)
        median = sorted(samples)[len(samples) // 2]
        print(f"\nstudent latency (hls.playingDate vs Date.now()), 1 s segments: "
              f"median {median:.2f} s, samples {[round(s, 2) for s in samples]}")
        assert 0.2 < median < 10, "\n".join([f"samples {samples}", *map(str, states)])
        assert page.inner_text("#latency").endswith(" s")
        screenshot(page, "student.png")

        # Renew the token now instead of in 54 minutes: the video keeps going on the new
        # session ids, without a reload.
        page.evaluate(
            "(() => { window.__emptied = 0; document.getElementById('video')"
            ".addEventListener('emptied', () => window.__emptied++); })()"
        )
        old_sid = page.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => n.endsWith('.ts')).pop()"
        ).split("/")[-2]
        # The browser keeps 250 resource timings and then drops new ones: on a slow machine
        # the playlists and segments fetched so far fill that, and the new session's fetches
        # would never show. Start from an empty, larger buffer.
        page.evaluate(
            "performance.setResourceTimingBufferSize(100000); performance.clearResourceTimings()"
        )
        assert page.evaluate("window.airclass.player.renew()") is True
        new_sid = page.evaluate("[...window.airclass.player.sidMap.values()][0]")
        assert new_sid and new_sid != old_sid
        page.wait_for_function(
            f"performance.getEntriesByType('resource').some(e => e.name.includes('/{new_sid}/')"
            " && e.name.endsWith('.ts'))",
            timeout=15_000,
        )
        wait_playing(page, 5_000)
        assert page.evaluate("window.__emptied") == 0, "the video was reloaded"
        assert page.evaluate("window.airclass.player.renewals") == 1
    finally:
        stop(pub)


def test_teacher_page_stream_key_publishes_and_keyframe_warning(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    # The browser is not in the node's trusted networks (TEST-NET-1 is): the page gets the
    # stream's numbers from /api/stats with the teacher's token, as from a classroom PC.
    slave = cluster.slave("--trusted-networks=192.0.2.0/24")
    page = new_page(browser)
    page.goto(f"{slave.api}/teacher")
    page.fill("#password", "wrong password")
    page.press("#password", "Enter")
    page.wait_for_function("document.getElementById('signin-error').textContent.length > 0")
    assert "Wrong password" in page.inner_text("#signin-error")

    page.fill("#password", cluster.teacher_password)
    page.press("#password", "Enter")
    page.wait_for_selector("#teacher-view:not(.hidden)")
    server = page.input_value("#server")
    key = page.input_value("#stream-key")
    assert server == f"{slave.rtmp}/live"
    assert key.startswith("stream?jwt=")

    # ffmpeg publishes with exactly what the page shows, as OBS would (Server + Stream Key),
    # with a 3 s keyframe interval: longer than the 2 s segment target.
    pub = publish(f"{server}/{key}", 90, gop=75, size="640x360", log_path=tmp_path / "pub.log")
    try:
        wait_playing(page)
        page.wait_for_selector("#kf-warning:not(.hidden)", timeout=30_000)
        warning = page.inner_text("#kf-warning")
        assert "3.0 s" in warning and "Keyframe Interval" in warning
        page.wait_for_function("Number(document.getElementById('viewers').textContent) >= 1")
        assert page.inner_text("#resolution") == "640×360"
        screenshot(page, "teacher.png")
    finally:
        pub.terminate()
        pub.wait(10)


def test_pages_speak_korean_to_korean_browsers(cluster: Cluster, browser: Any) -> None:
    slave = cluster.slave()
    page = new_page(browser, locale="ko-KR")
    page.goto(f"{slave.api}/")
    assert page.inner_text("h1") == "수업 참여하기"
    assert page.get_attribute("#name", "placeholder") == "예: 김민지"
    assert page.evaluate("document.documentElement.lang") == "ko"
    screenshot(page, "student-ko.png")
    page.click("#lang-switch")
    assert page.inner_text("h1") == "Join the lecture"
    page.reload()  # the choice is remembered
    assert page.inner_text("h1") == "Join the lecture"
    english = new_page(browser, locale="en-GB")
    english.goto(f"{slave.api}/teacher")
    assert english.inner_text("h1") == "Teacher"


def _dashboard_nodes(page: Any) -> dict[str, str]:
    result: dict[str, str] = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#nodes .node')]"
        ".map(n => [n.dataset.nodeId, n.dataset.status]))"
    )
    return result


def test_cluster_student_on_master_and_dashboard_follows_a_dead_slave(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    pytest.importorskip("airclass.web.master_app")
    master: Node = cluster.master("--heartbeat-timeout", "4", "--heartbeat-interval", "1")
    fast = ("--heartbeat-interval", "1")
    slaves = [cluster.slave(*fast, master=master, node_id=f"slave-{i}") for i in (1, 2)]
    env = cluster.env()
    pub = run_testsrc(["--api", master.api], tmp_path / "src.log", env=env)
    try:
        dash = new_page(browser)
        dash.goto(f"{master.api}/dashboard")
        dash.fill("#password", cluster.teacher_password)
        dash.press("#password", "Enter")
        dash.wait_for_selector("#dash-view:not(.hidden)")
        wait_for(lambda: _dashboard_nodes(dash) == {"slave-1": "healthy", "slave-2": "healthy"},
                 20, what="two healthy nodes on the dashboard")

        # Two students join on the master; the master spreads them over both slaves.
        students = [new_page(browser), new_page(browser)]
        for index, student in enumerate(students):
            join_as_student(student, master.api, f"Student {index + 1}")
        for student in students:
            wait_playing(student, 60_000)
        serving = [student.inner_text("#node") for student in students]
        assert sorted(serving) == ["slave-1", "slave-2"], serving
        for name, student in zip(serving, students, strict=True):
            print(f"\nstudent via master on {name}: latency {latency(student):.2f} s")
        dash.wait_for_function(
            "[...document.querySelectorAll('#nodes dd')]"
            ".some(d => d.textContent.includes('live/stream'))"
        )
        dash.wait_for_function("document.getElementById('t-viewers').textContent.startsWith('2 /')")
        polls = dash.evaluate("window.airclass.polls")
        screenshot(dash, "dashboard.png")

        # The slave that only relays dies without a word. Its student carries on from the other
        # node by itself; the dashboard marks it offline by itself.
        _status, nodes = http_json("GET", f"{master.api}/cluster/nodes")
        origin = next(n["node_id"] for n in nodes["nodes"] if "live/stream" in n["streams"])
        victim = "slave-2" if origin == "slave-1" else "slave-1"
        orphan = students[serving.index(victim)]
        killed_at = time.monotonic()
        slaves[int(victim[-1]) - 1].kill()
        wait_for(lambda: _dashboard_nodes(dash).get(victim) == "offline", 20,
                 what=f"{victim} shown offline")
        assert _dashboard_nodes(dash)[origin] in ("healthy", "warning", "critical")
        assert dash.evaluate("window.airclass.polls") > polls, "updated without a reload"
        assert dash.inner_text("#t-nodes").startswith("1 / 2")
        screenshot(dash, "dashboard-slave-down.png")

        before = orphan.evaluate("document.getElementById('video').currentTime")
        orphan.wait_for_function(
            f"document.getElementById('video').currentTime > {before} + 6", timeout=60_000
        )
        recovered = time.monotonic() - killed_at
        node_now = orphan.inner_text("#node")
        assert node_now == origin, node_now
        print(f"\nstudent on {victim} kept playing after it died: now on {node_now}, "
              f"6 s of new video {recovered:.1f} s after the kill, "
              f"rejoins {orphan.evaluate('window.airclass.player.rejoins')}")
        wait_playing(students[serving.index(origin)], 10_000)
    finally:
        stop(pub)
