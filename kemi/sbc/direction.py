"""Which side of the SBC a request belongs to: by the socket it arrived on, then by source CIDR.

The SBC has two sides (NICs), public and private. A request's side is decided once, when it
arrives:

1. Its receiving socket is one of a side's named listen sockets: that side. The source
   address must then belong to that side too (most specific matching network over both
   sides); a source on no side, or on the other side (a spoofed or misrouted packet), is
   refused.
2. The socket is unnamed (e.g. a loopback socket in sip.listen): the side whose network
   contains the source address most specifically (longest prefix), IPv4 or IPv6.
3. Neither: the request is from an unknown source (403).

Everything here is plain data; `kemi.sbc.part` reads $Rn / $si and calls `Sides.detect`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Side:
    """One NIC of the SBC, as the routing needs it."""
    name: str
    networks: tuple[Network, ...]
    socket_names: tuple[str, ...]
    gateway_set: int
    algorithm: int

    def __str__(self) -> str:
        return self.name


class Detection(NamedTuple):
    """Where a request comes from: `side` (None = refuse it) and why, for the log line."""
    side: Side | None
    reason: str


class CallSides(NamedTuple):
    """The two sides of one call leg: where the request came in, where it went out.

    The media part turns this into rtpengine's `direction=<ingress> direction=<egress>`
    (for the offer in a request; a reply's SDP travels from egress back to ingress).
    """
    ingress: str
    egress: str


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as Kamailio prints it ($si: "203.0.113.5", "[2001:db8::5]" or "2001:db8::5")."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped            # ::ffff:203.0.113.5 is 203.0.113.5
    return addr


class Sides:
    """The SBC's sides with lookups by socket name and by source address."""

    def __init__(self, public: Side, private: Side):
        self.public, self.private = public, private
        self.all = (public, private)
        self._by_socket = {name: side for side in self.all for name in side.socket_names}
        self._by_name = {side.name: side for side in self.all}
        # every (network, side), most specific first: the first containing network wins
        self._prefixes = sorted(((net, side) for side in self.all for net in side.networks),
                                key=lambda item: (item[0].version, -item[0].prefixlen))

    def by_name(self, name: str) -> Side | None:
        return self._by_name.get(name)

    def by_socket(self, socket_name: str) -> Side | None:
        """The side a named listen socket belongs to (None: unnamed or not an SBC socket)."""
        return self._by_socket.get(socket_name) if socket_name else None

    def by_address(self, address: str) -> tuple[Side, Network] | None:
        """The side whose network contains `address` most specifically, with that network."""
        addr = parse_ip(address)
        if addr is None:
            return None
        for net, side in self._prefixes:
            if addr.version == net.version and addr in net:
                return side, net
        return None

    def other(self, side: Side) -> Side:
        return self.private if side is self.public else self.public

    def detect(self, socket_name: str, source_ip: str) -> Detection:
        """The side a request arriving on `socket_name` from `source_ip` belongs to."""
        by_socket = self.by_socket(socket_name)
        found = self.by_address(source_ip)
        if found is None:
            where = f"on socket {socket_name}" if by_socket else "on an unnamed socket"
            return Detection(None, f"source {source_ip} is on no side ({where})")
        side, net = found
        if by_socket is None:
            return Detection(side, f"source {source_ip} in {net} ({side})")
        if side is not by_socket:
            return Detection(None, f"source {source_ip} belongs to {side} ({net}) "
                                   f"but arrived on {by_socket} socket {socket_name}")
        return Detection(side, f"socket {socket_name}, source {source_ip} in {net}")


def sides_from_settings(sbc) -> Sides:
    """Sides from settings.sbc (kemi.settings.SbcSettings), networks parsed once."""
    def side(s) -> Side:
        return Side(name=s.name, networks=tuple(ipaddress.ip_network(n) for n in s.networks),
                    socket_names=s.socket_names(), gateway_set=s.gateway_set, algorithm=s.algorithm)
    return Sides(side(sbc.public), side(sbc.private))
