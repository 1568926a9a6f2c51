"""Whether the machine itself stood still while a test measured playback.

The playback-timing tests measure what a viewer sees, to a fraction of a second, on a machine of
two virtual cores that others share. When the hypervisor stops the machine or gives its cores
to someone else for part of a second, every process here stands still together: the publisher,
the slave and the browser. A player 1.2 s behind live with well under a second of buffer then
runs dry, whatever the product does. `MachineWatch` tells such a measurement apart: a thread
that sleeps 10 ms at a time notes how late it wakes (nothing of the test's runs on it, so a late
wake is the machine's), and the CPU time the hypervisor took for others (`steal` in /proc/stat)
is summed per second. `measure` runs a measurement again when it failed while the machine stood
still; a failure on a machine that ran throughout fails the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

TICK = 0.010
"""Seconds the watching thread sleeps between looks at the clock."""
STANDSTILL = 0.25
"""A wake this many seconds late means the machine stood still (a 10 ms sleep on an idle
thread wakes within a few milliseconds here)."""
STEAL_LIMIT = 0.25
"""The share of the machine's CPU time, over one second, taken by the hypervisor for others
above which that second ran on a machine slowed for the test (here: under 1 % at rest)."""
ATTEMPTS = 2
"""Measurements of one case at most: the second only when the first failed on a machine that
stood still."""
PROC_STAT = Path("/proc/stat")


def read_steal() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far, or None where /proc/stat says
    nothing of steal."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(f) for f in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


@dataclass
class MachineWatch:
    """Watches the machine while a measurement runs (a context manager)."""

    standstill: float = STANDSTILL
    steal_limit: float = STEAL_LIMIT
    latest_wake: float = 0.0
    """The most seconds the watching thread woke after it meant to."""
    most_steal: float = 0.0
    """The largest share of a second's CPU time the hypervisor took for others."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MachineWatch:
        self._thread = threading.Thread(target=self._run, name="machine-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        steal = read_steal()
        next_second = time.monotonic() + 1
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(TICK)
            now = time.monotonic()
            self.latest_wake = max(self.latest_wake, now - before - TICK)
            if now >= next_second:
                next_second = now + 1
                later = read_steal()
                if steal is not None and later is not None and later[1] > steal[1]:
                    share = (later[0] - steal[0]) / (later[1] - steal[1])
                    self.most_steal = max(self.most_steal, share)
                steal = later

    @property
    def stood_still(self) -> bool:
        return self.latest_wake >= self.standstill or self.most_steal >= self.steal_limit

    def __str__(self) -> str:
        return (
            f"latest wake {self.latest_wake * 1000:.0f} ms late (still at "
            f"{self.standstill * 1000:.0f}), most steal {self.most_steal:.0%} of a second "
            f"(still at {self.steal_limit:.0%})"
        )


def measure(
    run: Callable[[int], None],
    attempts: int = ATTEMPTS,
    watch: Callable[[], MachineWatch] = MachineWatch,
) -> None:
    """Call `run(attempt)` (it asserts what it measured) under a `MachineWatch`. A failure on a
    machine that ran throughout fails the test; one while it stood still is measured again, up
    to `attempts` times, and when every attempt stood still the test is skipped, saying so."""
    spoiled: list[str] = []
    for attempt in range(1, attempts + 1):
        with watch() as watching:
            try:
                run(attempt)
            except AssertionError as exc:
                failure: AssertionError | None = exc
            else:
                failure = None
        print(f"attempt {attempt}: machine {watching}")
        if failure is None:
            return
        if not watching.stood_still:
            raise failure
        spoiled.append(f"attempt {attempt} ({failure!s:.200}) while the machine stood still: "
                       f"{watching}")
        print(f"attempt {attempt} failed while the machine stood still: measuring again")
    pytest.skip("; ".join(spoiled))
