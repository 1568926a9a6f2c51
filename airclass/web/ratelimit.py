"""One guessing limiter for every secret a person types or a publisher sends.

The teacher password, the class code and the RTMP stream key are all secrets an outsider can
try to guess online, so they share one policy (`GuessLimiter`, one instance per secret, so
students mistyping the class code never lock the teacher out). Pure: time is an argument.

Policy, and why:

* **Failures are counted, successes are free.** Only a wrong guess costs anything, so a
  classroom of students typing the right code is never slowed down.
* **Per client, with IPv6 grouped by /64.** A client key is an IPv4 address, or the /64 an
  IPv6 address belongs to: one subscriber or one LAN gets a whole /64, so counting single
  IPv6 addresses would give an attacker unlimited fresh identities. (The cost: every host of
  one IPv6 LAN shares one allowance; `burst` is configurable for that reason.)
* **A token bucket per client.** A client may fail `burst` times in a row; after that it
  regains one attempt every `refill` seconds and is told how long to wait (Retry-After).
  Once limited, even the right secret waits, so a guesser learns nothing from the answer.
* **A global ceiling.** Many addresses (a botnet, or an IPv4 block) each staying under their
  own allowance could still guess fast together. All failures also fill one global bucket
  that drains at `global_limit` failures per `global_window` seconds; while it is full the
  limiter is *under siege*: a client that failed within the last `siege_memory` seconds is
  refused outright, whatever its own bucket says, while a client with no recent failure
  still gets its attempt. Refusing everyone would let an attacker lock the real teacher and
  every student out just by guessing; refusing only recent failers keeps them in and limits
  the attacker to one guess per address (per /64) per `siege_memory`.
* **Bounded memory.** At most `max_clients` client keys are remembered, least recently
  failed dropped first. Forgetting a client only ever forgives it, so an attacker flooding
  the table gains at most its own `burst` again, and the global ceiling still holds.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from airclass.clients import client_group
from airclass.config import Config


@dataclass(frozen=True, slots=True)
class GuessPolicy:
    """How many wrong guesses are tolerated, per client and for everyone together."""

    burst: int = 5
    """Failures in a row a client may make before it waits (typos happen)."""
    refill: float = 12.0
    """Seconds after which a limited client regains one attempt."""
    global_limit: int = 60
    """Failures from all clients together per `global_window` before the siege mode."""
    global_window: float = 60.0
    """The period `global_limit` is counted over, seconds."""
    siege_memory: float = 600.0
    """Under siege, a client that failed this recently (seconds) is refused."""
    max_clients: int = 10_000
    """Client keys remembered at most."""

    def __post_init__(self) -> None:
        if self.burst < 1 or self.global_limit < 1 or self.max_clients < 1:
            raise ValueError("burst, global_limit and max_clients must be at least 1")
        for name in ("refill", "global_window", "siege_memory"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")


def guess_policy(config: Config) -> GuessPolicy:
    """The policy from the node's settings (GUESS_BURST, GUESS_REFILL, GUESS_GLOBAL_LIMIT)."""
    return GuessPolicy(
        burst=config.guess_burst,
        refill=config.guess_refill,
        global_limit=config.guess_global_limit,
        global_window=60.0,
    )


@dataclass(slots=True)
class _Client:
    level: float
    """Failures not yet drained from this client's bucket."""
    updated: float
    """When `level` was last computed."""
    last_failure: float


class GuessLimiter:
    """Counts wrong guesses of one secret (see the module docstring for the policy)."""

    def __init__(self, policy: GuessPolicy | None = None, name: str = "secret") -> None:
        self.policy = policy or GuessPolicy()
        self.name = name
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._global_level = 0.0
        self._global_updated = 0.0
        self.refused = 0
        """Attempts refused without looking at the secret (for metrics and tests)."""

    def __len__(self) -> int:
        return len(self._clients)

    def _level(self, entry: _Client, now: float) -> float:
        return max(0.0, entry.level - (now - entry.updated) / self.policy.refill)

    def _global(self, now: float) -> float:
        rate = self.policy.global_limit / self.policy.global_window
        return max(0.0, self._global_level - (now - self._global_updated) * rate)

    def under_siege(self, now: float) -> bool:
        """True while failures from all clients together exceed the global ceiling."""
        return self._global(now) >= self.policy.global_limit

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until the client at `address` may try again (0: it may try now)."""
        entry = self._clients.get(client_group(address))
        if entry is None:
            return 0.0
        policy = self.policy
        level = self._level(entry, now)
        # Allowed once the level is down to burst - 1, so that one more failure fits.
        own = max(0.0, (level - policy.burst + 1) * policy.refill)
        siege = 0.0
        if self.under_siege(now) and now - entry.last_failure < policy.siege_memory:
            rate = policy.global_limit / policy.global_window
            siege = min(
                entry.last_failure + policy.siege_memory - now,
                (self._global(now) - policy.global_limit + 1) / rate,
            )
        return max(own, siege)

    def check(self, address: str, now: float) -> float:
        """`retry_after`, counting a refusal when it is not 0."""
        wait = self.retry_after(address, now)
        if wait > 0:
            self.refused += 1
        return wait

    def failed(self, address: str, now: float) -> None:
        """Count a wrong guess from `address`."""
        key = client_group(address)
        entry = self._clients.get(key)
        if entry is None:
            entry = self._clients[key] = _Client(0.0, now, now)
        entry.level = self._level(entry, now) + 1
        entry.updated = entry.last_failure = now
        self._clients.move_to_end(key)
        while len(self._clients) > self.policy.max_clients:
            self._clients.popitem(last=False)
        # Capped, so a siege ends at most one window after the last failure.
        self._global_level = min(self._global(now) + 1, 2.0 * self.policy.global_limit)
        self._global_updated = now

    def succeeded(self, address: str) -> None:
        """The client knew the secret: forget its failures (not the global count)."""
        self._clients.pop(client_group(address), None)


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
