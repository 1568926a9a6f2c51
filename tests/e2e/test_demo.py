"""`python -m airclass demo`: it prints the URLs and password, a student gets a token on the
master, ffmpeg plays the test pattern, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import psutil
import pytest

from tests.e2e.conftest import ROOT, http_get, http_json, need, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class LineReader:
    """Collects a process's stdout lines on a thread, so reads can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen = ""
        self.thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self.thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen += line
            if re.search(pattern, line):
                return self.seen
        raise AssertionError(f"demo did not print {pattern!r} in {timeout} s; got:\n{self.seen}")


def test_demo_runs_a_classroom_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD", "MODE", "MASTER_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(tmp_path / "demo.err", "w") as stderr:
        demo = subprocess.Popen([sys.executable, "-m", "airclass", "demo"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        reader = LineReader(demo)
        out = reader.until(r"Ctrl-C", 60)
        student = re.search(r"Student page\s+(http://\S+)/\n", out)
        teacher = re.search(r"Teacher page\s+(http://\S+/teacher)\n", out)
        dashboard = re.search(r"Dashboard\s+(http://\S+/dashboard)\n", out)
        password = re.search(r"Teacher password\s+(\S+)\n", out)
        secret = re.search(r"SECRET_KEY\s+(\S+)\n", out)
        assert student and teacher and dashboard and password and secret, out
        master = student.group(1)
        assert len(password.group(1)) >= 12 and len(secret.group(1)) >= 32
        children = psutil.Process(demo.pid).children(recursive=True)
        names = sorted(" ".join(c.cmdline()[2:3]) for c in children)
        assert names == ["airclass.master", "airclass.slave", "airclass.slave",
                         "airclass.testsrc"], names

        # The pages are there, and the password printed is the teacher's.
        for url in (f"{master}/", teacher.group(1), dashboard.group(1)):
            assert http_get(url)[0] == 200, url
        status, reply = http_json("POST", f"{master}/api/token", {
            "user_type": "teacher", "user_id": "t", "password": password.group(1)})
        assert status == 200, reply
        status, nodes = http_json("GET", f"{master}/cluster/nodes")
        assert {n["node_id"] for n in nodes["nodes"]} == {"slave-1", "slave-2"}

        # A student gets a token on the master; the built-in test pattern plays with ffmpeg.
        status, reply = http_json("POST", f"{master}/api/token",
                                  {"user_type": "student", "user_id": "Park Seoyeon"})
        assert status == 200, reply
        hls_url = reply["hls_url"]
        wait_for(lambda: http_get(hls_url)[0] == 200, 30, what="the test pattern to be live")
        clip = tmp_path / "clip.ts"
        ffmpeg = subprocess.run(
            [need("ffmpeg"), "-hide_banner", "-v", "error", "-i", hls_url, "-t", "4",
             "-c", "copy", "-y", str(clip)],
            capture_output=True, timeout=60,
        )
        assert ffmpeg.returncode == 0, ffmpeg.stderr.decode()
        with av.open(str(clip)) as container:
            video = container.streams.video[0]
            assert (video.codec_context.width, video.codec_context.height) == (640, 360)
            assert container.streams.audio, "the tone is there"
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 4 * 25 * 0.9, frames

        # Ctrl-C: everything stops, cleanly and in order.
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(45) == 0
        elapsed = time.monotonic() - started
        assert "demo stopped." in reader.until(r"demo stopped", 5)
        print(f"\ndemo stopped {len(children)} processes in {elapsed:.1f} s after Ctrl-C")
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [p.pid for p in alive]
        log = (tmp_path / "demo.err").read_text()
        assert "killing" not in log, log
        assert "exited with status" not in log, log
        assert password.group(1) not in log and secret.group(1) not in log
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        for child in psutil.Process().children(recursive=True):
            if "airclass" in " ".join(child.cmdline()):
                child.kill()
