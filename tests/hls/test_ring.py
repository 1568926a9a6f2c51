from __future__ import annotations

import pytest

from airclass.hls.ring import RingError, Segment, SegmentRing


def seg(sequence: int, *, size: int = 100, disc: bool = False, dseq: int = 0) -> Segment:
    return Segment(sequence, 2.0, bytes(size), 1_800_000_000.0 + 2 * sequence, disc, dseq)


def test_evicts_by_count_and_serves_by_sequence() -> None:
    ring = SegmentRing(max_segments=3)
    evicted = [s.sequence for i in range(5) for s in ring.append(seg(i))]
    assert evicted == [0, 1]
    assert [s.sequence for s in ring] == [2, 3, 4]
    assert ring.get(1) is None and ring.get(3) == seg(3) and ring.get(5) is None
    assert ring.next_sequence == 5 and len(ring) == 3
    assert ring.total_bytes == 300
    assert [s.sequence for s in ring.newest_segments(2)] == [3, 4]
    assert [s.sequence for s in ring.newest_segments(10)] == [2, 3, 4]


def test_evicts_by_bytes_but_keeps_the_newest() -> None:
    ring = SegmentRing(max_segments=8, max_bytes=1000)
    for i in range(3):
        ring.append(seg(i, size=400))
    assert [s.sequence for s in ring] == [1, 2] and ring.total_bytes == 800
    ring.append(seg(3, size=5000))
    assert [s.sequence for s in ring] == [3] and ring.total_bytes == 5000


def test_starts_at_any_sequence_for_relays() -> None:
    ring = SegmentRing()
    assert ring.next_sequence == 0 and ring.next_discontinuity_sequence == 0
    ring.append(seg(1234, dseq=3))
    ring.append(seg(1235, dseq=3))
    ring.append(seg(1236, disc=True, dseq=4))
    assert ring.next_sequence == 1237 and ring.next_discontinuity_sequence == 4


def test_rejects_old_and_duplicate_sequences() -> None:
    ring = SegmentRing()
    ring.append(seg(5))
    with pytest.raises(RingError):
        ring.append(seg(5))
    with pytest.raises(RingError):
        ring.append(seg(4))
    assert [s.sequence for s in ring] == [5]


def test_validates_discontinuity_sequence() -> None:
    ring = SegmentRing()
    ring.append(seg(0, dseq=0))
    with pytest.raises(RingError, match="expected 1"):
        ring.append(seg(1, disc=True, dseq=0))
    with pytest.raises(RingError, match="expected 0"):
        ring.append(seg(1, dseq=1))
    ring.append(seg(1, disc=True, dseq=1))


def test_a_gap_restarts_the_window() -> None:
    ring = SegmentRing()
    ring.append(seg(0))
    ring.append(seg(1))
    evicted = ring.append(seg(7, disc=True, dseq=1))
    assert [s.sequence for s in evicted] == [0, 1]
    assert [s.sequence for s in ring] == [7] and ring.get(1) is None
    assert ring.total_bytes == 100
    with pytest.raises(RingError, match="back in discontinuities"):
        ring.append(seg(9, dseq=0))


def test_max_segments_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SegmentRing(max_segments=0)
