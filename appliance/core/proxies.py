"""Whose request it is behind a reverse proxy: `X-Forwarded-For` is honoured only when the direct peer
is a trusted proxy (the `--trusted-proxies` allow-list), and then read right to left up to the first
address that is not one. Anyone can send the header; only the hops the appliance trusts appended
their part of it, so the right-most untrusted address is the one a client cannot choose."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | None) -> tuple[Network, ...]:
    """'10.0.0.0/8, 192.168.1.5' as networks (a bare address is its own /32 or /128); ValueError names a bad entry."""
    networks = []
    for part in (value or "").split(","):
        text = part.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR network (such as 10.0.0.0/8)") from None
    return tuple(networks)


def networks_problem(value: str) -> str | None:
    """The settings table's check: None, or what is wrong with the list."""
    try:
        parse_networks(value)
    except ValueError as exc:
        return f"must be IP addresses or CIDR networks, comma-separated: {exc}"
    return None


def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or an X-Forwarded-For entry gives it: bare, `[v6]`, `[v6]:port` or
    `v4:port`; an IPv4-mapped IPv6 address as its IPv4 address; None when it is none of these."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port (an IPv6 address has at least two colons)
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    def __init__(self, networks: Sequence[Network] = ()) -> None:
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _trusted(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address: `peer` unless it is a trusted proxy; then, walking the X-Forwarded-For
        entries (each header value in order, comma-separated) from the right, the first one that is not a
        trusted proxy. An entry that is not an address ends the walk at the last hop that could be trusted."""
        ip = parse_address(peer)
        if ip is None or not self._trusted(ip):
            return peer
        entries = [e for value in forwarded_for for e in value.split(",") if e.strip()]
        address = str(ip)
        for entry in reversed(entries):
            hop = parse_address(entry)
            if hop is None:
                break
            address = str(hop)
            if not self._trusted(hop):
                break
        return address
