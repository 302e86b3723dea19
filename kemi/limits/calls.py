"""Concurrent call limits: which counts a call takes, each count's limit, and the answer when
one is over. Plain decisions; the dialog module counts (kemi/limits/part.py).

A call is counted once per kind that applies to it, each under a name (its "key"):

    caller    the authenticated subscriber making it          486 Busy Here when full
    callee    the local subscriber it rings                   486 Busy Here
    side      SBC: the side it arrives on                     503 + Retry-After
    trunk     SBC: the side whose gateways sent it, and the side whose gateway set it goes to
    gateway   SBC: the gateway address that sent it, and the gateway it is sent to

A user (caller, callee) at the limit is busy: 486, the answer a phone gives when it has no line
left, which callers show as busy and do not retry elsewhere. A trunk, gateway or side at the
limit is a capacity problem of this hop: 503 with Retry-After, which a carrier or PBX takes as
"route this call elsewhere / try later" (RFC 3261 21.5.4). A gateway of the outgoing set at its
limit is skipped (the next gateway of the set is tried); only when every one is full is the call
refused.

Each count is made before it is checked (set_dlg_profile, then get_profile_size), so two calls
racing on two workers can both be refused at the limit, never both admitted past it.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import NamedTuple
from collections.abc import Callable

from kemi import sip
from kemi.names import LIMIT_PROFILES

CALLER, CALLEE, SIDE, TRUNK, GATEWAY = "caller", "callee", "side", "trunk", "gateway"
KINDS = tuple(LIMIT_PROFILES)                  # in the order a call's counts are taken
USER_KINDS = frozenset({CALLER, CALLEE})       # a user at the limit is busy (486)
NO_LIMIT = 0
# what a refused user gets, and a full trunk / gateway / side
BUSY = 486
UNAVAILABLE = 503
_URI_HOST_RE = re.compile(r"^sips?:(?:[^@]*@)?(\[[0-9A-Fa-f:.]+\]|[^:;>]+)")


class Count(NamedTuple):
    """One count a call takes: its kind (a dialog profile: kemi/names.py) and the name it is counted under."""
    kind: str
    key: str


@dataclass(frozen=True)
class CallEnds:
    """Who and what a new call involves, as far as the limits care (None: does not apply)."""
    caller: str | None = None           # the authenticated subscriber calling
    callee: str | None = None           # the local subscriber rung
    ingress: str | None = None          # SBC: the side it arrived on
    from_gateway: str | None = None     # SBC: the listed gateway (address) that sent it
    to_trunk: str | None = None         # SBC: the side whose gateway set it goes to


def counts(ends: CallEnds) -> tuple[Count, ...]:
    """Every count the call takes (the egress gateway aside: it is chosen, and may be skipped)."""
    out = []
    if ends.caller:
        out.append(Count(CALLER, ends.caller))
    if ends.callee:
        out.append(Count(CALLEE, ends.callee))
    if ends.ingress:
        out.append(Count(SIDE, ends.ingress))
        if ends.from_gateway:
            out.append(Count(TRUNK, ends.ingress))
            out.append(Count(GATEWAY, ends.from_gateway))
    if ends.to_trunk and ends.to_trunk != (ends.ingress if ends.from_gateway else None):
        out.append(Count(TRUNK, ends.to_trunk))
    return tuple(out)


class Defaults:
    """The settings' limits: one per kind, or one per side for trunk and side (0 = no limit)."""

    def __init__(self, caller: int = NO_LIMIT, callee: int = NO_LIMIT, gateway: int = NO_LIMIT,
                 trunk: dict[str, int] | None = None, side: dict[str, int] | None = None):
        self.per_kind = {CALLER: caller, CALLEE: callee, GATEWAY: gateway}
        self.per_side = {TRUNK: dict(trunk or {}), SIDE: dict(side or {})}

    def of(self, count: Count) -> int:
        sides = self.per_side.get(count.kind)
        if sides is not None:
            return sides.get(count.key, NO_LIMIT)
        return self.per_kind[count.kind]


def limit_of(count: Count, defaults: Defaults, override: Callable[[str, str], int | None] | None) -> int:
    """The limit for one count: a row of the call_limits table for its kind and name, else the
    settings' value. 0: no limit."""
    if override is not None:
        found = override(count.kind, count.key)
        if found is not None:
            return found
    return defaults.of(count)


def over(size: int, limit: int) -> bool:
    """`size` counts this call too (counted before checked): over when past the limit."""
    return limit != NO_LIMIT and size > limit


def is_emergency(number: str, emergency: frozenset[str]) -> bool:
    return number in emergency


class Refusal(NamedTuple):
    """What a call over a limit gets: the reply, the Retry-After (None: none), the log's words."""
    reply: sip.Reply
    retry_after: int | None
    counted: Count                 # the count that is full
    calls_up: int                  # the calls it already had (this one not included)
    limit: int

    @property
    def reason(self) -> str:
        """The label of the refusals metric and the decision log (the kind)."""
        return self.counted.kind

    def describe(self) -> str:
        return (f"{self.counted.kind} {self.counted.key} has {self.calls_up} calls (limit {self.limit}), "
                f"answered {self.reply.code}")


def refusal(count: Count, calls_up: int, limit: int, retry_after: int) -> Refusal:
    """The answer for a call over `count`'s limit, which already has `calls_up` calls."""
    if count.kind in USER_KINDS:
        return Refusal(sip.Reply(BUSY, f"Busy Here - {count.kind} call limit"), None, count, calls_up, limit)
    return Refusal(sip.Reply(UNAVAILABLE, f"Service Unavailable - {count.kind} call limit"), retry_after,
                   count, calls_up, limit)


def full(calls_up: int, limit: int) -> bool:
    """A gateway with `calls_up` calls (this one not counted yet) has no place left: skip it."""
    return limit != NO_LIMIT and calls_up >= limit


def uri_host(uri: str) -> str:
    """The address a gateway URI names ("sip:198.51.100.10:5060;transport=tcp" -> "198.51.100.10"),
    as Kamailio writes a source address ($si: IPv6 without brackets, compressed), so a gateway's
    calls from it and to it are counted under one name."""
    m = _URI_HOST_RE.match(uri or "")
    if not m:
        return ""
    host = m.group(1).strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host
