"""When a source address is banned, from numbers Kamailio's modules give us.

A ban is an htable entry (settings BAN_TABLE) keyed by source IP that expires after
`security.ban_time`; failed digest attempts are counted per source IP in AUTH_FAILURE_TABLE,
forgotten `security.auth_failure_window` seconds after the last one. Requests from the
server's own listen addresses are never counted or banned.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum

from kemi import sip

# auth_check() results that mean "somebody tried credentials that do not work": a wrong
# password or an unknown user. Missing credentials (-5) are the normal first step of every
# phone; a stale (-4) or replayed (-6) nonce happens to honest phones on lossy links.
FAILED_GUESS_RESULTS = frozenset({sip.AUTH_INVALID_PASSWORD, sip.AUTH_INVALID_USER})

# pike_check_req(): -2 flood detected just now, -1 source already known as flooding
PIKE_NEW_FLOOD = -2
PIKE_FLOODING = -1


class Reason(StrEnum):
    FLOOD = "request flood"
    SCANNER = "scanner user agent"
    PASSWORD_GUESSING = "failed digest attempts"


def own_addresses(listen_hosts: Iterable[str]) -> frozenset:
    """The server's own addresses (its listen sockets): never counted, never banned."""
    return frozenset(ipaddress.ip_address(h.strip("[]")) for h in listen_hosts)


def is_own_address(source_ip: str, own: frozenset) -> bool:
    """Only the listen addresses count, not the SIP domain or aliases: a domain that is an
    IP address (the loopback demo) must not exempt every client on that address."""
    try:
        return ipaddress.ip_address(source_ip.strip("[]")) in own
    except ValueError:
        return False


def is_failed_guess(auth_result: int) -> bool:
    return auth_result in FAILED_GUESS_RESULTS


def should_ban_after_failures(failures: int, limit: int) -> bool:
    """`failures` failed attempts counted so far (this one included); limit 0 = never."""
    return limit > 0 and failures >= limit


def is_flooding(pike_result: int) -> bool:
    return pike_result in (PIKE_NEW_FLOOD, PIKE_FLOODING)


def is_banned(ban_entry) -> bool:
    """What htable.sht_get() returned for the source: None (no entry) or the ban marker."""
    return ban_entry is not None and ban_entry != 0


def ban_log_line(source_ip: str, reason: Reason, ban_time: int, what: str) -> str:
    return f"kemi: banned {source_ip} for {ban_time}s: {reason.value} ({what})\n"
