"""[sip]: the proxy's SIP domain, sockets and workers; renders listen=, alias= and the socket defines."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import Listen, is_host, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings


@dataclass(frozen=True)
class SipSettings:
    # the SIP domain of the subscribers (kamctl's SIP_DOMAIN); also the digest realm
    domain: str = "127.0.0.1"
    # sockets Kamailio listens on, "proto:address:port"
    listen: tuple[Listen, ...] = (Listen("udp", "127.0.0.1", 5060),)
    # SIP worker processes per UDP socket
    children: int = 4
    # extra names the proxy answers to, besides listen addresses and the domain
    aliases: tuple[str, ...] = ()


def validate(s: Settings, source: str) -> None:
    sip = s.sip
    require(is_host(sip.domain), "sip.domain", f"{sip.domain!r} is not a hostname or IP address",
            'write the domain your subscribers use, e.g. "pbx.example.com" or "127.0.0.1"', source)
    for alias in sip.aliases:
        require(is_host(alias), "sip.aliases", f"{alias!r} is not a hostname or IP address",
                "list hostnames or IP addresses", source)
    require(1 <= sip.children <= 64, "sip.children", f"{sip.children} is out of range", "use 1 to 64", source)


def validate_quoting(s: Settings, source: str) -> None:
    require('"' not in s.sip.domain and "\n" not in s.sip.domain, "sip.domain", "contains a double quote or newline",
            "remove it (the value is written into kamailio.cfg defines)", source)


def domain_lines(s: Settings) -> list[str]:
    return [f'#!define SIP_DOMAIN "{s.sip.domain}"']


def children_lines(s: Settings) -> list[str]:
    return [f"#!define SIP_CHILDREN {s.sip.children}"]


def tcp_lines(s: Settings) -> list[str]:
    """tcp (and tls) transport when a socket needs it; the metrics endpoint is a TCP socket too."""
    if s.metrics.enabled or any(listen.proto in ("tcp", "tls") for listen, _ in s.listens):
        return ["#!define WITH_TCP"]
    return []


def listen_lines(s: Settings) -> list[str]:
    """Every socket (sip.listen, the SBC sides', the cluster's, WebSocket's), named where it has a name."""
    return [f'listen={listen.socket} name "{name}"' if name else f"listen={listen.socket}"
            for listen, name in s.listens]


def alias_lines(s: Settings) -> list[str]:
    """alias=NAME:PORT, never a bare NAME: a bare alias makes every port of that host "us",
    and a phone registered at 127.0.0.1:5071 would look like the proxy to loose_route."""
    listens = s.listens
    listening = {(listen.host, listen.port) for listen, _ in listens}
    lines = []
    for name in dict.fromkeys([s.sip.domain, *s.sip.aliases]):
        for port in dict.fromkeys(listen.port for listen, _ in listens):
            if (name.strip("[]"), port) not in listening:
                lines.append(f"alias={name}:{port}")
    return lines
