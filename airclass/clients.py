"""Who a client is, for the limits that count per client (RTMP connections, guesses)."""

from __future__ import annotations

import ipaddress


def client_group(address: str) -> str:
    """The key a client is counted under: the IPv4 address (also when a dual-stack socket
    reports it IPv4-mapped, `::ffff:10.0.0.5`), the /64 network of an IPv6 address (one
    machine or one home has a whole /64 to choose from), the text itself otherwise."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
