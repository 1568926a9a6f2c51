"""Peer-supplied text in log lines, and the per-client log throttle."""

from __future__ import annotations

import logging

import pytest

from airclass.logtext import LogThrottle, ThrottledWarnings, printable, skipped_note


def test_control_characters_are_escaped() -> None:
    assert printable("live/a\r\nFAKE LINE\x00\x1b[31mred\x7f") == (
        "live/a\\x0d\\x0aFAKE LINE\\x00\\x1b[31mred\\x7f"
    )


def test_backslash_and_invisible_unicode_are_escaped() -> None:
    # A backslash is doubled, so an escape in the output always came from us.
    assert printable("a\\x0ab") == "a\\\\x0ab"
    # Bidi override, zero-width space, line separator; printable non-ASCII stays as it is.
    assert printable("\u202eé\u200b\u2028✓") == "\\u202eé\\u200b\\u2028✓"
    assert printable("\U000e0001") == "\\U000e0001"


def test_length_is_capped() -> None:
    assert printable("x" * 200) == "x" * 200
    assert printable("x" * 201) == "x" * 200 + "...(1 more chars)"
    assert printable("ab\x00cd", limit=5) == "ab...(3 more chars)"
    assert printable("y" * 60_000, limit=10) == "y" * 10 + "...(59990 more chars)"


def test_non_strings() -> None:
    assert printable(None) == "None"
    assert printable(1280.0) == "1280.0"
    assert printable(["a\n"]) == "['a\\\\n']"


def test_throttle_one_line_per_interval_per_key() -> None:
    throttle = LogThrottle(interval=10.0, max_keys=2)
    assert throttle.allow("10.0.0.1", 100.0) == 0
    assert throttle.allow("10.0.0.1", 101.0) is None
    assert throttle.allow("10.0.0.1", 109.9) is None
    assert throttle.allow("10.0.0.2", 109.9) == 0  # another client is not held back
    assert throttle.allow("10.0.0.1", 110.0) == 2  # the line says two were skipped
    assert throttle.allow("10.0.0.1", 110.5) is None
    assert throttle.allow("10.0.0.1", 121.0) == 1
    assert throttle.allow("10.0.0.1", 140.0) == 0


def test_throttle_memory_is_bounded() -> None:
    throttle = LogThrottle(interval=10.0, max_keys=2)
    for i in range(100):
        assert throttle.allow(f"10.0.0.{i}", 100.0) == 0
    assert len(throttle._keys) == 2
    # The oldest were forgotten: their next line is written, the newest are still held.
    assert throttle.allow("10.0.0.0", 101.0) == 0
    assert throttle.allow("10.0.0.99", 101.0) is None


def test_skipped_note() -> None:
    assert skipped_note(0) == ""
    assert skipped_note(3) == " (3 more like this not logged)"


def test_throttled_warnings_say_how_many_were_not_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = ThrottledWarnings(logging.getLogger("test.throttled"), interval=10.0)
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for i in range(5):
            warnings.warning("password", "wrong password from %s", f"10.0.0.{i}", now=100.0 + i)
        warnings.warning("signature", "bad signature from %s", "10.0.0.9", now=101.0)
        warnings.warning("password", "wrong password from %s", "10.0.0.7", now=110.0)
    assert [r.getMessage() for r in caplog.records] == [
        "wrong password from 10.0.0.0",
        "bad signature from 10.0.0.9",
        "wrong password from 10.0.0.7 (4 more like this not logged)",
    ]
