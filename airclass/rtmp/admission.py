"""Who may hold an RTMP connection and who may go live: the server's caps, without I/O.

A peer that connects but never publishes costs memory and a slot, so the server counts open
connections in all and per client. A client is its IPv4 address, or its IPv6 /64: one host is
routinely given a whole /64, so counting single IPv6 addresses would let one machine open as
many connections as it likes.
"""

from __future__ import annotations

from collections import Counter


class ConnectionSlots:
    """Open connections counted in all and per client group.

    `take(group)` reserves a slot and returns None, or returns why it cannot (nothing is then
    reserved); `give_back(group)` frees a slot taken before.
    """

    def __init__(self, max_total: int, max_per_group: int) -> None:
        self.max_total = max_total
        self.max_per_group = max_per_group
        self._groups: Counter[str] = Counter()
        self.total = 0

    def take(self, group: str) -> str | None:
        if self.total >= self.max_total:
            return f"{self.total} RTMP connections open, the most this node accepts"
        if self._groups[group] >= self.max_per_group:
            return f"{self._groups[group]} RTMP connections open from {group}, the most per client"
        self._groups[group] += 1
        self.total += 1
        return None

    def give_back(self, group: str) -> None:
        count = self._groups[group]
        if count <= 0:
            raise RuntimeError(f"no RTMP connection slot held by {group}")
        if count == 1:
            del self._groups[group]
        else:
            self._groups[group] = count - 1
        self.total -= 1

    def held(self, group: str) -> int:
        """Slots `group` holds now."""
        return self._groups.get(group, 0)


def may_go_live(path: str, live_paths: set[str] | list[str], max_live: int) -> bool:
    """Whether a publish of `path` fits under `max_live` live paths. A path already live is
    being taken over by its owner (an encoder reconnecting) and adds nothing."""
    return path in live_paths or len(live_paths) < max_live
