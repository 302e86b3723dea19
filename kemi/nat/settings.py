"""[nat]: keeping phones behind NAT routers reachable: whether the NAT handling runs, which
nat_uac_test checks find a NATed sender, and nathelper's keepalive interval."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import require
from kemi.sip import NAT_TESTS

if TYPE_CHECKING:
    from kemi.settings.model import Settings

# seconds between two keepalives; 0 = none
KEEPALIVE_RANGE = (0, 3600)
# nathelper's nat_uac_test() checks, by bit (README.nathelper); 64 (WebSocket) is websocket.enabled's
NAT_TEST_BITS = {
    1: "the Contact has a private address (RFC 1918 / RFC 6598)",
    2: "the request's source address differs from its Via's",
    4: "the top Via has a private address",
    8: "the SDP has a private address",
    16: "the request's source port differs from its Via's",
    32: "the source address itself is private (a phone inside the proxy's own private network)",
    128: "the Contact's address or port differs from the request's source",
}
# nat_uac_test 64: the request came over a WebSocket (a browser: its Via/Contact name an
# invalid host, so it is handled as behind NAT, as in Kamailio's websocket module README)
NAT_TEST_WEBSOCKET = 64
# Kamailio's default cfg: 1 + 2 + 16
DEFAULT_NAT_TESTS = NAT_TESTS


@dataclass(frozen=True)
class NatSettings:
    # false: no NAT handling (every phone reaches the proxy on the address it names: a LAN,
    # a VPN); contacts are stored and called as they are, nothing is pinged
    enabled: bool = True
    # nat_uac_test() checks that mark a request's sender as behind NAT, added up (bits: 1 private
    # Contact, 2 source address differs from the Via's, 4 private Via, 8 private SDP address,
    # 16 source port differs from the Via's, 32 private source address, 128 Contact differs
    # from the source). 19 = 1 + 2 + 16, Kamailio's default cfg: docs/settings.md
    tests: int = DEFAULT_NAT_TESTS
    # seconds between the OPTIONS keepalives nathelper sends to each contact registered from
    # behind NAT (natping_interval); shorter than the NAT routers' UDP binding timeout, or a
    # silent phone becomes unreachable (many routers forget a binding after 20 to 30 s:
    # 15 is safe for those). 0 = no keepalives
    keepalive_interval: int = 30


def validate(s: Settings, source: str) -> None:
    nat = s.nat
    low, high = KEEPALIVE_RANGE
    value = nat.keepalive_interval
    require(low <= value <= high, "nat.keepalive_interval", f"{value} is out of range",
            f"use {low} (no keepalives) to {high} seconds, shorter than the NAT routers' UDP timeout "
            "(e.g. 15 for routers that forget a binding after 20 s)", source)
    known = sum(NAT_TEST_BITS)
    require(nat.tests > 0 and nat.tests & ~known == 0, "nat.tests", f"{nat.tests} is not a sum of nat_uac_test checks",
            f"add up some of {', '.join(map(str, NAT_TEST_BITS))} (e.g. {DEFAULT_NAT_TESTS} = 1 + 2 + 16; "
            f"{NAT_TEST_WEBSOCKET} is added for websocket.enabled): docs/settings.md, [nat]", source)
    require(nat.enabled or not s.websocket.enabled, "nat.enabled", "is false, but websocket.enabled is true",
            "keep the NAT handling on: a browser is reached through its WebSocket connection's contact alias", source)


def cfg_lines(s: Settings) -> list[str]:
    # NAT handling off: nothing is flagged for keepalives, and nathelper's timer does not run
    interval = s.nat.keepalive_interval if s.nat.enabled else 0
    return [f"#!define NAT_KEEPALIVE_INTERVAL {interval}"]
