"""`python -m airclass demo`: a whole classroom on one machine.

A master, two slaves and the built-in test-pattern publisher, each a child process started
exactly as in production (`python -m airclass.master`, `python -m airclass.slave`), on free
local ports, with random secrets generated for this run and printed. Separate processes keep
the demo honest (the same code paths, signals and registration as a real deployment) and let
it stop the pieces in order: on Ctrl-C the publisher stops first, then the slaves (which
unregister from the master), then the master.

The children run in their own sessions so that Ctrl-C reaches only the demo, which then
stops them in that order; a child that dies on its own stops the demo with an error.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airclass.ports import free_port, free_ports

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
"""A slave may take ~10 s: it finishes in-flight relay long-polls before it unregisters."""


@dataclass(frozen=True, slots=True)
class DemoSecrets:
    """Random secrets for one run; none has a default anywhere."""

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cluster_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    teacher_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    stream_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    def env(self) -> dict[str, str]:
        return {
            "SECRET_KEY": self.secret_key,
            "CLUSTER_KEY": self.cluster_key,
            "TEACHER_PASSWORD": self.teacher_password,
            "STREAM_KEY": self.stream_key,
        }


_SECRET_NAMES = frozenset(
    {"SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD", "STREAM_KEY", "CLASS_CODE"}
)


@dataclass(slots=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    expected_exit: bool = False


class Demo:
    """Starts, watches and stops the classroom's processes."""

    def __init__(self, host: str, slaves: int, secrets_: DemoSecrets, log_level: str) -> None:
        self.host = host
        self.slaves = slaves
        self.secrets = secrets_
        self.log_level = log_level
        self.children: list[Child] = []
        self.master_port = free_port(host)
        self.stop_event = threading.Event()

    @property
    def master_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.master_port}"

    def _env(self, slave: bool) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("MODE", "MASTER_URL", "NODE_ID", "CLASS_CODE")
            and key.removesuffix("_FILE") not in _SECRET_NAMES
        }
        env.update(self.secrets.env())
        if slave:
            # Teachers sign in on the master: a slave of a cluster refuses to hold it.
            del env["TEACHER_PASSWORD"]
        env["LOG_LEVEL"] = self.log_level
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, name: str, args: list[str]) -> Child:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=self._env(slave=args[0] == "airclass.slave"),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, proc)
        self.children.append(child)
        log.debug("started %s (pid %d)", name, proc.pid)
        return child

    def start(self) -> None:
        common = ["--bind", self.host, "--public-host", self.host]
        self._spawn(
            "master",
            ["airclass.master", *common, "--node-id", "master", "--api-port",
             str(self.master_port)],
        )
        self._wait("the master", lambda: _get_json(f"{self.master_url}/health") is not None)
        for index in range(1, self.slaves + 1):
            ports = free_ports(self.host, 3)
            self._spawn(
                f"slave-{index}",
                [
                    "airclass.slave", *common, "--node-id", f"slave-{index}",
                    "--master-url", self.master_url,
                    "--rtmp-port", str(ports[0]), "--hls-port", str(ports[1]),
                    "--api-port", str(ports[2]),
                ],
            )
        self._wait(f"{self.slaves} slaves to register", self._all_registered)
        self._spawn("test pattern", ["airclass.testsrc", "--api", self.master_url])

    def _all_registered(self) -> bool:
        nodes = _get_json(f"{self.master_url}/cluster/nodes")
        return bool(nodes) and int(nodes.get("healthy_nodes", 0)) >= self.slaves

    def _wait(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self._check_children()
            if ready():
                return
            if self.stop_event.wait(0.2):
                raise KeyboardInterrupt
        raise RuntimeError(f"timed out after {STARTUP_TIMEOUT:.0f} s waiting for {what}")

    def _check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None and not child.expected_exit:
                raise RuntimeError(f"{child.name} exited with status {code}")

    def watch(self) -> None:
        """Until Ctrl-C/SIGTERM; raises if a child dies on its own."""
        while not self.stop_event.wait(0.5):
            self._check_children()

    def stop(self) -> None:
        """Publisher first, then the slaves together (they unregister), then the master."""
        phases: list[list[Child]] = [[], [], []]
        for child in self.children:
            child.expected_exit = True
            kind = child.name.split("-")[0]
            phases[{"master": 2, "slave": 1}.get(kind, 0)].append(child)
        for phase in phases:
            running = [child for child in phase if child.proc.poll() is None]
            started = time.monotonic()
            for child in running:
                child.proc.send_signal(signal.SIGTERM)
            for child in running:
                left = max(0.1, STOP_TIMEOUT - (time.monotonic() - started))
                try:
                    child.proc.wait(left)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
                    child.proc.kill()
                    child.proc.wait(5)
                log.info("%s stopped (%.1f s)", child.name, time.monotonic() - started)

    def banner(self) -> str:
        base = self.master_url
        s = self.secrets
        lines = [
            "",
            "AIRClass demo classroom is running: a master, "
            f"{self.slaves} slaves and a test-pattern publisher.",
            "",
            f"  Student page     {base}/",
            f"  Teacher page     {base}/teacher",
            f"  Dashboard        {base}/dashboard",
            f"  Teacher password {s.teacher_password}",
            "",
            "  Secrets generated for this run (nothing is stored):",
            f"    SECRET_KEY   {s.secret_key}",
            f"    CLUSTER_KEY  {s.cluster_key}",
            f"    STREAM_KEY   {s.stream_key}   (OBS can also publish with ?key=…)",
            "",
            "Open the student page in a browser (several tabs or phones on this network if "
            "--host is a LAN address).",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        return "\n".join(lines)


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airclass demo",
        description="Run a whole classroom on this machine: master, slaves, test pattern.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on and print in URLs (a LAN address lets phones join)",
    )
    parser.add_argument("--slaves", type=int, default=2, help="number of slaves (1-8)")
    parser.add_argument(
        "--log-level", default="WARNING", help="log level of the nodes (INFO shows every request)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s", stream=sys.stderr)
    if not 1 <= args.slaves <= 8:
        print("airclass demo: --slaves must be from 1 to 8", file=sys.stderr)
        return 2
    from airclass.web.pages import find_hls_js

    if find_hls_js() is None:
        print(
            "airclass demo: hls.js is missing, so browsers cannot play; run `npm install` "
            f"in {Path(__file__).resolve().parents[1]} (or `make run`)",
            file=sys.stderr,
        )
    demo = Demo(args.host, args.slaves, DemoSecrets(), args.log_level.upper())

    def on_signal(signum: int, frame: Any) -> None:
        demo.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        demo.start()
        print(demo.banner(), flush=True)
        demo.watch()
        print("\nstopping the demo…", flush=True)
    except KeyboardInterrupt:
        print("\nstopping the demo…", flush=True)
    except RuntimeError as exc:
        print(f"airclass demo: {exc}; stopping", file=sys.stderr, flush=True)
        status = 1
    finally:
        demo.stop()
    print("demo stopped.", flush=True)
    return status


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo itself dies (even by SIGKILL), so a
    killed demo never leaves servers running in their own sessions."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
