"""The side-by-side benchmarks' arithmetic: per-segment latency and the paired comparison."""

from __future__ import annotations

import pytest

from benchmarks._common import (
    MSG_AUDIO,
    MSG_VIDEO,
    Listed,
    SentMessage,
    latencies,
    median_interval,
    paired,
)


def test_median_interval_is_the_sign_tests_order_statistics() -> None:
    # n = 29: ranks 9 and 21 (P(Binomial(29, ½) ≤ 8) = 0.012, ≤ 9 = 0.031).
    assert median_interval(range(1, 30)) == (9, 21)
    # n = 9: ranks 2 and 8; shuffled input, the same answer.
    assert median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5]) == (2, 8)
    # n = 8: P(≤ 1) = 0.035 > 0.025, so only the whole range has 95 %.
    assert median_interval(range(8)) == (0, 7)
    assert median_interval([3.5]) == (3.5, 3.5)
    with pytest.raises(ValueError):
        median_interval([])


def test_paired_matches_segments_by_their_closing_keyframe() -> None:
    # b misses the segment closed at 4000 and has one (8000) that a lacks.
    a = paired([0.0105, 0.0110, 0.0121], [2000, 4000, 6000],
               [0.0100, 0.0120, 0.0090], [2000, 6000, 8000])
    assert a is not None
    assert a.differences == pytest.approx([0.0005, 0.0001])
    assert (a.earlier, a.later) == (0, 2)
    assert a.median == pytest.approx(0.0003)
    assert a.verdict() == "too few segments to tell"  # even 2 of 2 later proves nothing
    assert paired([0.01], [2000], [0.01], [4000]) is None


def test_paired_verdicts() -> None:
    keys = list(range(2000, 2000 * 31, 2000))
    slower = paired([0.0112] * 30, keys, [0.0110] * 30, keys)
    assert slower is not None and slower.verdict() == "higher" and slower.later == 30
    faster = paired([0.0108] * 30, keys, [0.0110] * 30, keys)
    assert faster is not None and faster.verdict() == "lower" and faster.earlier == 30
    mixed = paired([0.0110 + (0.0001 if i % 2 else -0.0001) for i in range(30)], keys,
                   [0.0110] * 30, keys)
    assert mixed is not None and mixed.verdict() == "level (no difference at 95 %)"
    six = paired([0.0112] * 6, keys[:6], [0.0110] * 6, keys[:6])
    assert six is not None and six.verdict() == "higher"  # 6 of 6: p = 1/32 two-sided
    five = paired([0.0112] * 5, keys[:5], [0.0110] * 5, keys[:5])
    assert five is not None and five.verdict() == "too few segments to tell"
    assert mixed.describe("x", "y").startswith("x − y per segment: median +0.000 ms, ")
    assert "x sooner in 15, later in 15 of 30" in mixed.describe("x", "y")


def test_latencies_per_segment_from_last_frame_and_from_the_closing_keyframe() -> None:
    # Keyframes every 2 s; an audio frame 10 ms before each keyframe is the segment's last.
    sent: list[SentMessage] = []
    for gop in range(4):
        base = gop * 2.0
        sent.append(SentMessage(100 + base, MSG_VIDEO, gop * 2000, True))
        sent.append(SentMessage(100 + base + 1.0, MSG_VIDEO, gop * 2000 + 1000, False))
        sent.append(SentMessage(100 + base + 1.99, MSG_AUDIO, gop * 2000 + 1990, False))
    listed = [
        Listed("s0.ts", 2.0, 100 + 2.0004),   # closed by the keyframe at 2000
        Listed("s1.ts", 2.0, 100 + 4.0006),   # at 4000
        Listed("s2.ts", 2.0, 100 + 6.0005),   # at 6000
        Listed("s3.ts", 1.99, 100 + 8.5),     # the final one, closed when the publisher left
    ]
    out = latencies(listed, sent)
    assert out.closing_dts == [2000, 4000, 6000]
    assert out.durations == [2.0, 2.0, 2.0]
    assert out.from_cut == pytest.approx([0.0004, 0.0006, 0.0005], abs=1e-9)
    assert out.from_last_frame == pytest.approx([0.0104, 0.0106, 0.0105], abs=1e-9)


def test_not_later_is_a_non_inferiority_test_with_half_a_millisecond() -> None:
    keys = list(range(2000, 2000 * 31, 2000))
    base = [0.0110] * 30
    # Level: ±0.1 ms around nginx, so the interval's upper end is +0.1 ms.
    level = paired([0.0110 + (0.0001 if i % 2 else -0.0001) for i in range(30)], keys,
                   base, keys)
    assert level is not None
    assert level.not_later() == "met (paired: upper end +0.10 ms ≤ +0.50 ms)"
    # Shown later, but by less than the margin: still not later than nginx for any viewer.
    slightly = paired([0.0113] * 30, keys, base, keys)
    assert slightly is not None and slightly.verdict() == "higher"
    assert slightly.not_later() == "met (paired: upper end +0.30 ms ≤ +0.50 ms)"
    # An interval reaching past the margin misses, even when its median is below it.
    spread = paired([0.0110 + 0.0001 * (i - 10) for i in range(30)], keys, base, keys)
    assert spread is not None and spread.median == pytest.approx(0.00045)
    assert spread.not_later() == "MISSED (paired: upper end +1.00 ms > +0.50 ms)"
    assert spread.not_later(margin=0.0015) == "met (paired: upper end +1.00 ms ≤ +1.50 ms)"
    five = paired([0.0110] * 5, keys[:5], base[:5], keys[:5])
    assert five is not None and five.not_later() == "too few segments to tell"
