"""The machine watch of the playback-timing tests: it sees the machine stand still, and a
measurement is taken again only when it failed while the machine stood still."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import machine
from tests.e2e.machine import MachineWatch, measure, read_steal


def test_a_thread_that_cannot_run_is_seen_as_the_machine_standing_still() -> None:
    # Holding the interpreter keeps the watching thread from waking, as a stopped machine does.
    switch = sys.getswitchinterval()
    with MachineWatch() as watch:
        time.sleep(0.05)
        sys.setswitchinterval(5.0)
        try:
            end = time.monotonic() + 0.4
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(switch)
        time.sleep(0.05)
    assert watch.latest_wake >= 0.3
    assert watch.stood_still


def test_steal_is_read_from_the_first_line_of_proc_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  220946 3221 63274 8984288 2177 0 8337 1396 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    monkeypatch.setattr(machine, "PROC_STAT", stat)
    assert read_steal() == (1396, 220946 + 3221 + 63274 + 8984288 + 2177 + 0 + 8337 + 1396)
    stat.write_text("intr 1 2 3\n")
    assert read_steal() is None
    monkeypatch.setattr(machine, "PROC_STAT", tmp_path / "missing")
    assert read_steal() is None


def test_steal_over_a_quarter_of_a_second_counts_as_standing_still() -> None:
    assert MachineWatch(most_steal=0.25).stood_still
    assert not MachineWatch(most_steal=0.24, latest_wake=0.24).stood_still
    assert str(MachineWatch(latest_wake=0.3125, most_steal=0.5)) == (
        "latest wake 312 ms late (still at 250), most steal 50% of a second (still at 25%)"
    )


class _Fixed(MachineWatch):
    """A watch that reports what it was given instead of watching."""

    def __enter__(self) -> MachineWatch:
        return self


def watches(*late: float) -> Callable[[], MachineWatch]:
    """A watch factory whose n-th watch saw the machine wake `late[n]` s late."""
    made = iter(late)
    return lambda: _Fixed(latest_wake=next(made))


def test_a_failure_on_a_machine_that_ran_fails_at_once() -> None:
    runs: list[int] = []

    def run(attempt: int) -> None:
        runs.append(attempt)
        raise AssertionError("stalls ['waiting@41.94']")

    make = watches(0.01, 0.01)
    with pytest.raises(AssertionError, match=r"waiting@41\.94"):
        measure(run, watch=make)
    assert runs == [1]


def test_a_failure_while_the_machine_stood_still_is_measured_again() -> None:
    runs: list[int] = []

    def run(attempt: int) -> None:
        runs.append(attempt)
        if attempt == 1:
            raise AssertionError("stalls ['waiting@38.16']")

    make = watches(0.8, 0.01)
    measure(run, watch=make)
    assert runs == [1, 2]


def test_a_second_failure_on_a_machine_that_ran_fails() -> None:
    def run(attempt: int) -> None:
        raise AssertionError(f"stall in attempt {attempt}")

    make = watches(0.8, 0.01)
    with pytest.raises(AssertionError, match="stall in attempt 2"):
        measure(run, watch=make)


def test_every_attempt_on_a_machine_standing_still_skips_saying_why() -> None:
    def run(attempt: int) -> None:
        raise AssertionError(f"stall in attempt {attempt}")

    make = watches(0.8, 0.5)
    with pytest.raises(pytest.skip.Exception) as skipped:
        measure(run, watch=make)
    assert str(skipped.value) == (
        "attempt 1 (stall in attempt 1) while the machine stood still: latest wake 800 ms late "
        "(still at 250), most steal 0% of a second (still at 25%); attempt 2 (stall in attempt 2) "
        "while the machine stood still: latest wake 500 ms late (still at 250), most steal 0% of "
        "a second (still at 25%)"
    )


def test_a_success_is_measured_once() -> None:
    runs: list[int] = []
    make = watches(0.9, 0.9)
    measure(runs.append, watch=make)
    assert runs == [1]
