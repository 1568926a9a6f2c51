"""One percentile for every figure the project reports."""

from __future__ import annotations

import math

from airclass.measure import percentile


def test_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, q) for q in (1, 20, 21, 50, 80, 99, 100)] == [
        1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0
    ]
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))
