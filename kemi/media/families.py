"""IPv4 <-> IPv6: which address family the receiver of an SDP offer speaks (plain functions).

rtpengine writes its relay address into the SDP it passes on in the family of the SDP it
received, unless the offer says otherwise (`address-family=IP4|IP6`): an IPv6 phone's offer
would reach an IPv4 phone with an IPv6 address it cannot use ("SDP offer AF not available").
It remembers each party's family once it has seen an SDP from it, so only offers need the
flag (Kamailio's rtpengine module README, "address-family"). The receiver of a request's
offer is its next hop ($du, else the R-URI); of a reply's (late) offer, the request's sender.
"""
from __future__ import annotations

import ipaddress

IP4, IP6 = "IP4", "IP6"
ADDRESS_FAMILY_FLAG = "address-family="


def address_family(address: str) -> str | None:
    """IP4 / IP6 for a literal address (IPv6 with or without brackets); None for a name."""
    try:
        return IP6 if ipaddress.ip_address(address.strip("[]")).version == 6 else IP4
    except ValueError:
        return None


def uri_family(uri: str) -> str | None:
    """The family of a SIP URI's host ("sip:2001@[2001:db8::1]:5060;transport=udp" -> IP6);
    None when the host is a name (DNS decides: rtpengine keeps the SDP's family)."""
    scheme, _, rest = uri.strip().strip("<").partition(":")
    if scheme.lower() not in ("sip", "sips"):
        return None
    rest = rest.split("@", 1)[-1]
    if rest.startswith("["):
        return address_family(rest[:rest.find("]") + 1]) if "]" in rest else None
    host = rest.split(";", 1)[0].split(":", 1)[0].split(">", 1)[0]
    return address_family(host)


def family_flag(family: str | None) -> tuple[str, ...]:
    """The rtpengine flag for an offer to a receiver of `family` (none when unknown)."""
    return (f"{ADDRESS_FAMILY_FLAG}{family}",) if family else ()
