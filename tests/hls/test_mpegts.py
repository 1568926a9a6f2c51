from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.hls.mpegts import PID_SDT, FreshCounters, TsContinuity, TsError, strip_pids
from tests.hls.tsutil import continuity_errors, packets


def ts(pid: int, counter: int, *, payload: bool = True, fill: int = 0) -> bytes:
    afc = 0x10 if payload else 0x20
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, afc | counter])
    if payload:
        return header + bytes([fill]) * 184
    return header + bytes([183, 0]) + b"\xff" * 182


def counters(data: bytes) -> list[tuple[int, int]]:
    return [(p.pid, p.counter) for p in packets(data)]


def test_counters_continue_per_pid_across_segments() -> None:
    state = TsContinuity()
    first = ts(0, 0) + ts(0x100, 0) + ts(0x100, 1) + ts(0x101, 0)
    second = ts(0, 0) + ts(0x100, 0) + ts(0x101, 0) + ts(0x101, 1) + ts(0x100, 1)
    assert counters(state.rewrite(first)) == [(0, 0), (0x100, 0), (0x100, 1), (0x101, 0)]
    assert counters(state.rewrite(second)) == [
        (0, 1), (0x100, 2), (0x101, 1), (0x101, 2), (0x100, 3)
    ]
    assert state.last_counter(0x100) == 3 and state.last_counter(0x200) is None


def test_counters_wrap_and_adaptation_only_packets_repeat() -> None:
    state = TsContinuity()
    state.rewrite(b"".join(ts(0x100, i) for i in range(15)))
    out = state.rewrite(ts(0x100, 0) + ts(0x100, 0, payload=False) + ts(0x100, 1))
    assert counters(out) == [(0x100, 15), (0x100, 15), (0x100, 0)]


def test_rewrite_changes_only_the_counter_bits() -> None:
    state = TsContinuity()
    state.rewrite(ts(0x100, 0))
    original = ts(0x100, 0, fill=0xAB)
    out = state.rewrite(original)
    assert out[:3] == original[:3] and out[4:] == original[4:]
    assert out[3] == (original[3] & 0xF0) | 1


def test_rewrite_rejects_non_ts() -> None:
    with pytest.raises(TsError):
        TsContinuity().rewrite(bytes(187))
    with pytest.raises(TsError, match="sync"):
        TsContinuity().rewrite(bytes(188))
    assert TsContinuity().rewrite(b"") == b""


def test_strip_pids() -> None:
    data = ts(0x11, 0) + ts(0, 0) + ts(0x1000, 0) + ts(0x100, 0)
    assert [p.pid for p in packets(strip_pids(data))] == [0, 0x1000, 0x100]
    assert strip_pids(ts(0, 0)) == ts(0, 0)
    assert [p.pid for p in packets(strip_pids(data, frozenset({0, 0x100})))] == [0x11, 0x1000]


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from([0, 0x100, 0x101, 0x1000]), st.integers(0, 15),
                      st.booleans()),
            max_size=40,
        ),
        max_size=6,
    )
)
def test_any_segments_concatenate_without_continuity_errors(
    segments: list[list[tuple[int, int, bool]]],
) -> None:
    state = TsContinuity()
    out = b"".join(
        state.rewrite(b"".join(ts(pid, cc, payload=pay) for pid, cc, pay in seg))
        for seg in segments
    )
    # a PID's very first packet may lack a payload; everything after it must follow
    assert continuity_errors(out) == 0


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 0x100, 0x101]), st.integers(0, 15), st.booleans()),
        max_size=60,
    ),
    st.lists(st.integers(0, 60), max_size=5),
)
def test_a_stream_rewritten_in_pieces_is_the_stream_rewritten_whole(
    stream: list[tuple[int, int, bool]], cuts: list[int]
) -> None:
    data = b"".join(ts(pid, cc, payload=pay) for pid, cc, pay in stream)
    bounds = [0, *sorted(min(c, len(stream)) * 188 for c in cuts), len(data)]
    state = TsContinuity()
    pieces = b"".join(state.rewrite(data[a:b]) for a, b in itertools.pairwise(bounds))
    whole = TsContinuity()
    assert pieces == whole.rewrite(data)
    assert state == whole


def test_copies_continue_independently() -> None:
    state = TsContinuity()
    state.rewrite(ts(0x100, 0) + ts(0x100, 0))
    twin = state.copy()
    assert twin == state and twin is not state
    assert counters(twin.rewrite(ts(0x100, 0))) == [(0x100, 2)]
    assert twin != state and state.last_counter(0x100) == 1
    state.take(twin)
    assert state == twin and counters(state.rewrite(ts(0x100, 0))) == [(0x100, 3)]
    assert twin.last_counter(0x100) == 2
    assert state != object()


def fresh_output(stream: list[tuple[int, bool]]) -> bytes:
    """Packets numbered as a new FFmpeg muxer numbers them: from 15, stepping before each
    payload."""
    counter: dict[int, int] = {}
    out = []
    for pid, payload in stream:
        now = counter.get(pid, 15)
        if payload:
            now = (now + 1) & 0x0F
        counter[pid] = now
        out.append(ts(pid, now, payload=payload, fill=pid & 0xFF))
    return b"".join(out)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from([0, 0x100, 0x101, 0x1000]), st.booleans()), max_size=30),
    st.lists(
        st.tuples(st.sampled_from([0, 0x100, 0x101, 0x1000, PID_SDT]), st.booleans()),
        max_size=80,
    ),
    st.lists(st.integers(0, 80), max_size=5),
)
def test_fresh_output_renumbered_in_pieces_is_the_stream_stripped_and_rewritten(
    before: list[tuple[int, bool]], stream: list[tuple[int, bool]], cuts: list[int]
) -> None:
    """`FreshCounters` (a constant per PID) agrees with `rewrite` (counting payloads) on what
    a new muxer writes, whatever the counters carried on from and however it is cut."""
    start = TsContinuity()
    start.rewrite(b"".join(ts(pid, 0, payload=pay) for pid, pay in before))
    data = fresh_output(stream)
    snapshot = start.copy()
    expected_state = start.copy()
    expected = expected_state.rewrite(strip_pids(data))

    counters_ = FreshCounters(start)
    buffer = bytearray(data)
    bounds = [0, *sorted(min(c, len(stream)) * 188 for c in cuts), len(data)]
    pieces = []
    for a, b in itertools.pairwise(bounds):
        pieces.append(counters_.take(buffer, b - a))
        del buffer[: b - a]
    assert b"".join(pieces) == expected
    assert counters_.state == expected_state
    assert start == snapshot
    assert continuity_errors(b"".join(pieces)) == 0


def test_fresh_counters_renumber_in_place_and_check_sync() -> None:
    start = TsContinuity()
    start.rewrite(ts(0x100, 0) + ts(0x100, 0))  # video's last counter: 1
    buffer = bytearray(fresh_output([(PID_SDT, True), (0x100, True), (0x100, False)]))
    out = FreshCounters(start).take(buffer, len(buffer))
    assert counters(out) == [(0x100, 2), (0x100, 2)]
    assert counters(bytes(buffer)) == [(PID_SDT, 0), (0x100, 2), (0x100, 2)]
    with pytest.raises(TsError, match="sync"):
        FreshCounters(start).take(bytearray(188), 188)
