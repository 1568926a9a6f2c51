"""Failure-based rate limiting per client address (teacher password guessing).

Pure: time is an argument. Each address may fail `burst` times; the allowance refills at
`per_second`. Bounded memory: at most `max_clients` addresses are remembered, oldest dropped.
"""

from __future__ import annotations

from collections import OrderedDict


class FailureLimiter:
    def __init__(
        self, burst: int = 5, per_second: float = 1 / 12, max_clients: int = 10_000
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str, now: float) -> float:
        entry = self._buckets.get(client)
        if entry is None:
            return 0.0
        level, since = entry
        return max(0.0, level - (now - since) * self.per_second)

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until `client` may try again (0 when allowed now)."""
        level = self._level(client, now)
        if level < self.burst:
            return 0.0
        return (level - self.burst + 1) / self.per_second

    def failed(self, client: str, now: float) -> None:
        level = self._level(client, now) + 1
        self._buckets[client] = (level, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._buckets.pop(client, None)
