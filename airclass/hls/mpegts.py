"""Continuity counters across independently muxed MPEG-TS segments.

Each segment is muxed by a fresh FFmpeg container, so every PID's 4-bit continuity_counter
restarts at 0. A player that reads the segments as one byte stream (FFmpeg's HLS demuxer, many
hardware players) takes the restart as packet loss. `TsContinuity` rewrites the counters so
they carry on from the previous segment. `strip_pids` removes tables HLS does not need.
`FreshCounters` does both, cheaper, on what a new muxer writes. Pure.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PID_PAT = 0x0000
PID_SDT = 0x0011
PID_NULL = 0x1FFF


class TsError(ValueError):
    """Bytes that are not a whole number of 188-byte TS packets."""


def _packets(data: bytes | memoryview) -> npt.NDArray[np.uint8]:
    """The packets as rows of a (n, 188) view of `data` (writable if `data` is)."""
    if len(data) % TS_PACKET_SIZE:
        raise TsError(f"{len(data)} bytes is not a multiple of {TS_PACKET_SIZE}")
    packets = np.frombuffer(data, dtype=np.uint8).reshape(-1, TS_PACKET_SIZE)
    if not np.all(packets[:, 0] == SYNC_BYTE):
        raise TsError("TS packet without sync byte")
    return packets


def _pids(packets: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    high = packets[:, 1].astype(np.int64) & 0x1F
    return (high << 8) | packets[:, 2].astype(np.int64)


def strip_pids(data: bytes, pids: frozenset[int] = frozenset({PID_SDT})) -> bytes:
    """`data` without the packets of `pids` (by default FFmpeg's DVB SDT, which it writes
    before the PAT and which HLS players ignore)."""
    packets = _packets(data)
    found = _pids(packets)
    if len(pids) == 1:
        keep = found != next(iter(pids))  # one comparison, no set lookup as in isin
    else:
        keep = ~np.isin(found, np.fromiter(pids, dtype=np.int64, count=len(pids)))
    return data if keep.all() else packets[keep].tobytes()


class TsContinuity:
    """Per-PID continuity state carried from one segment to the next.

    Only packets with a payload advance the counter (ISO 13818-1 §2.4.3.3); a packet with only
    an adaptation field repeats the counter of the PID's previous packet.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[int, int] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TsContinuity) and self._last == other._last

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> TsContinuity:
        """An independent state that continues from this one."""
        twin = TsContinuity()
        twin._last = dict(self._last)
        return twin

    def take(self, other: TsContinuity) -> None:
        """Continue from where `other` is."""
        self._last = dict(other._last)

    def last_counter(self, pid: int) -> int | None:
        return self._last.get(pid)

    def rewrite(self, data: bytes) -> bytes:
        """Return `data` with counters continuing from the previous call's, per PID.

        A stream can be rewritten in pieces of whole packets: the result is the same."""
        if not data:
            return data
        packets = _packets(data).copy()
        pids = _pids(packets)
        has_payload = ((packets[:, 3] >> 4) & 1).astype(np.int64)
        for pid in np.unique(pids).tolist():
            if pid == PID_NULL:
                continue
            rows = np.flatnonzero(pids == pid)
            # Counter after each packet = previous counter + payload packets so far.
            base = self._last.get(pid, -1)
            counters = base + np.cumsum(has_payload[rows])
            packets[rows, 3] = (packets[rows, 3] & 0xF0) | (counters & 0x0F).astype(np.uint8)
            self._last[pid] = int(counters[-1]) & 0x0F
        return packets.tobytes()


class FreshCounters:
    """`strip_pids` and `TsContinuity.rewrite` in one, for the output of a new FFmpeg MPEG-TS
    muxer: cheaper on the small pieces a growing segment is finished in (fewer numpy calls).

    A new muxer numbers each PID's packets from 0: its counter starts at 15 and steps before
    each packet with a payload, and a packet without one repeats it. Carrying on from a state
    is then one constant per PID, added modulo 16, where `rewrite` must count payloads. Bytes
    are renumbered where they lie, and the packets of `drop` (FFmpeg's SDT) left out.
    `state` is the continuity after what was taken (a copy of `start` to begin with).
    """

    __slots__ = ("_add", "drop", "state")

    def __init__(self, start: TsContinuity, drop: int = PID_SDT) -> None:
        self.state = start.copy()
        self.drop = drop
        self._add = np.zeros(PID_NULL + 1, dtype=np.uint8)
        for pid, last in start._last.items():
            self._add[pid] = (last + 1) & 0x0F

    def take(self, data: bytearray, size: int) -> bytes:
        """The first `size` bytes of `data` (the muxer's output since the previous call, whole
        packets), renumbered in `data` itself, without the packets of `drop`."""
        packets = _packets(memoryview(data)[:size])
        pids = _pids(packets)
        counters = packets[:, 3]
        counters[:] = (counters & 0xF0) | ((counters + self._add[pids]) & 0x0F)
        # The state: each PID's counter on its last packet here (read backwards, the first).
        backwards = pids[::-1]
        found, first = np.unique(backwards, return_index=True)
        last = counters[len(pids) - 1 - first] & 0x0F
        known = self.state._last
        for pid, counter in zip(found.tolist(), last.tolist(), strict=True):
            if pid != self.drop and pid != PID_NULL:
                known[pid] = counter
        keep = pids != self.drop
        return (packets if keep.all() else packets[keep]).tobytes()
