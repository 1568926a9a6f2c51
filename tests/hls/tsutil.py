"""A small independent MPEG-TS reader for tests: packet headers and PES timestamps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TsPacket:
    pid: int
    counter: int
    has_payload: bool
    unit_start: bool
    payload: bytes


def packets(data: bytes) -> list[TsPacket]:
    assert len(data) % 188 == 0
    out = []
    for i in range(0, len(data), 188):
        p = data[i : i + 188]
        assert p[0] == 0x47
        afc = (p[3] >> 4) & 3
        start = 4 + (1 + p[4] if afc & 2 else 0)
        out.append(
            TsPacket(
                pid=((p[1] & 0x1F) << 8) | p[2],
                counter=p[3] & 0x0F,
                has_payload=bool(afc & 1),
                unit_start=bool(p[1] & 0x40),
                payload=p[start:] if afc & 1 else b"",
            )
        )
    return out


def continuity_errors(data: bytes) -> int:
    """Packets whose counter does not follow their PID's previous one."""
    last: dict[int, int] = {}
    errors = 0
    for p in packets(data):
        if p.pid == 0x1FFF:
            continue
        if p.pid in last:
            expected = (last[p.pid] + 1) % 16 if p.has_payload else last[p.pid]
            errors += p.counter != expected
        last[p.pid] = p.counter
    return errors


def _timestamp(b: bytes) -> int:
    return (
        ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
    )


def pes_timestamps(data: bytes, pid: int) -> list[tuple[int, int]]:
    """(dts, pts) in 90 kHz ticks of every PES that starts on `pid`."""
    out = []
    for p in packets(data):
        if p.pid != pid or not p.unit_start or p.payload[:3] != b"\x00\x00\x01":
            continue
        flags = p.payload[7] >> 6
        pts = _timestamp(p.payload[9:14])
        dts = _timestamp(p.payload[14:19]) if flags == 3 else pts
        out.append((dts, pts))
    return out
