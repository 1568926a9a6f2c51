"""Peer-supplied text made safe for a log line, and a per-client cap on how often one is written.

Anything a client sends (an RTMP app or stream name, a tcUrl, a flashVer, a command name) may
hold line breaks, terminal escape sequences or NULs. Written raw, one such string forges log
lines or rewrites an operator's terminal; written whole, a 60,000-character command name makes
one line of that size. `printable` escapes every character that is not printable (and the
backslash, so an escape can always be told from the text) and caps the length.

`LogThrottle` lets a flood of refused peers cost a bounded number of log lines: at most one line
per `interval` seconds per client key, the next kept line saying how many were skipped. Pure:
time is an argument; memory is bounded by `max_keys`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

MAX_LOGGED_CHARS = 200
"""Characters of one peer-supplied value kept in a log line: longer than any name, key or URL
a real encoder sends, short enough that a hostile value cannot bloat the log."""


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as text with control and other unprintable characters escaped (``\\xNN``,
    ``\\uNNNN``), cut to `limit` characters of output with a note of the original length."""
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        piece = ch if ch.isprintable() and ch != "\\" else _escape(ch)
        if size + len(piece) > limit:
            return "".join(out) + f"...({len(text) - i} more chars)"
        out.append(piece)
        size += len(piece)
    return "".join(out)


class LogThrottle:
    """At most one log line per `interval` seconds per key (a client address).

    `allow(key, now)` returns None when the line should be skipped, else the number of lines
    skipped for that key since the last one written (to be said in the line). Keys are
    forgotten oldest first beyond `max_keys`, so a flood of addresses cannot grow memory; a
    forgotten key simply gets its next line written.
    """

    def __init__(self, interval: float = 10.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._keys: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, key: str, now: float) -> int | None:
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            self._keys[key] = (entry[0], entry[1] + 1)
            return None
        skipped = entry[1] if entry is not None else 0
        self._keys[key] = (now, 0)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return skipped


class ThrottledWarnings:
    """WARNING lines about refused requests, at most one per `interval` seconds per kind
    (whatever the client: a flood from many addresses stays a few lines), each saying how many
    like it were not written, with peer-supplied values escaped by the caller."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self._throttle = LogThrottle(interval)

    def warning(self, kind: str, msg: str, *args: object, now: float | None = None) -> None:
        skipped = self._throttle.allow(kind, time.monotonic() if now is None else now)
        if skipped is not None:
            self.logger.warning(msg + "%s", *args, skipped_note(skipped))


def skipped_note(skipped: int) -> str:
    """The tail of a throttled line: how many like it were not written."""
    return f" ({skipped} more like this not logged)" if skipped else ""
