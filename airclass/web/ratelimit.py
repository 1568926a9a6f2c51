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


class TokenBucket:
    """Request rate limiting per key (a viewer token's entry requests): a key may make `burst`
    requests at once, then one more every `interval` seconds.

    Pure: time is an argument, and may stand still or (clock adjustments) step back, which
    refills nothing. Bounded memory: at most `max_keys` keys are remembered, the least
    recently seen dropped first (its allowance starts full again, as for a new key).
    """

    def __init__(self, burst: int = 10, interval: float = 2.0, max_keys: int = 100_000) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if not interval > 0:
            raise ValueError("interval must be positive")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.burst = burst
        self.interval = interval
        self.max_keys = max_keys
        self.refused = 0
        """Requests refused since start (a statistic)."""
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: bytes, now: float) -> float:
        """Spend one request of `key`: 0.0 if allowed, else the seconds until it would be
        (nothing is spent then)."""
        entry = self._buckets.get(key)
        if entry is None:
            level, stamp = float(self.burst), now
        else:
            left, since = entry
            stamp = max(since, now)
            level = min(float(self.burst), left + (stamp - since) / self.interval)
        if level >= 1.0:
            self._buckets[key] = (level - 1.0, stamp)
            wait = 0.0
        else:
            self._buckets[key] = (level, stamp)
            wait = (1.0 - level) * self.interval
            self.refused += 1
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
