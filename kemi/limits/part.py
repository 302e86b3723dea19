"""The limits' KSR parts: concurrent calls counted by the dialog module, INVITEs per second by
pipelimit. The Router builds each only when a limit of its kind is configured (calls_for /
rate_for); otherwise it has NoCallLimits / NoCallRate, whose methods return at once.

CallLimits.admit       route[SBC] / route[SIPOUT] / route[LOCATION], right before route_relay:
                       dlg_manage(), then each count of the call (kemi/limits/calls.py) is
                       taken (set_dlg_profile) and checked (get_profile_size); over a limit:
                       486 or 503 + Retry-After, one log line, the metric, the decision log
CallLimits.next_gateway  failure_route, after the SBC's failover picked the next gateway: the
                       call's count moves to it (a full one is skipped)
CallRate.admit         after route[AUTH], for initial INVITEs: pl_check on each pipe
                       (kemi/limits/rate.py); over the rate: 503 + Retry-After: 1, nothing banned

Both fail closed: a dialog or pipelimit function that fails refuses the call (503, one log line
at error level), never relays it uncounted. The dialog module releases a call's counts itself
(BYE, CANCEL, a failure reply, its timeout, a failed keepalive): no Python runs then.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from kemi import sip
from kemi.limits.calls import (GATEWAY, NO_LIMIT, SIDE, TRUNK, CallEnds, Count, Defaults, Refusal, counts, full,
                               limit_of, over, refusal, uri_host)
from kemi.limits.rate import ALGORITHM, PL_OVER, RETRY_AFTER, over_rate_reply, pipes, should_log
from kemi.message import Message
from kemi.names import DS_CURRENT_GATEWAY, LIMIT_PROFILES, LIMIT_SIZE_PV
from kemi.observe.metrics import (LIMIT_CALLS, LIMIT_FAILED, LIMIT_KEY_ALL, UNAVAILABLE_CALL_LIMIT,
                                  UNAVAILABLE_CALL_RATE, UNAVAILABLE_LIMITS_FAILED)
from kemi.observe.part import Observer

if TYPE_CHECKING:
    from kemi.sbc.direction import Side
    from kemi.settings import Settings

COUNTERS_FAILED = sip.Reply(sip.SERVICE_UNAVAILABLE.code, "Service Unavailable - call limits unavailable")
# dialog keepalives: in-dialog OPTIONS to the caller (src) and the callee (dst)
KEEPALIVE_PROPERTIES = ("ka-src", "ka-dst")
SBC_KINDS = (SIDE, TRUNK, GATEWAY)
GATEWAY_CACHE_SIZE = 1024


def side_names(settings: Settings) -> dict[str, str]:
    """role (the settings' table) -> the side's name (what the routing calls it)."""
    return {"public": settings.sbc.public.name, "private": settings.sbc.private.name}


def calls_for(ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None], overrides,
              trusted: Callable[[Any], bool], listed_gateway: Callable[[Any], bool]):
    """CallLimits when a concurrent limit is configured (or read from the database), else NoCallLimits."""
    if not settings.limits.calls_on:
        return NoCallLimits()
    return CallLimits(ksr, settings, observe, reply, overrides, trusted, listed_gateway)


def rate_for(ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None],
             listed_gateway: Callable[[Any], bool]):
    if not settings.limits.rate_on:
        return NoCallRate()
    return CallRate(ksr, settings, observe, reply, listed_gateway)


class NoCallLimits:
    """No concurrent limit configured: nothing counted (the dialog module is not even loaded)."""

    def admit(self, msg: Message, trunk: Side | None = None, callee: str | None = None) -> bool:
        return True

    def next_gateway(self, msg: Message, previous: str) -> bool:
        return True


class CallLimits:
    def __init__(self, ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None], overrides,
                 trusted: Callable[[Any], bool], listed_gateway: Callable[[Any], bool]):
        lim = settings.limits
        self.ksr, self.observe, self.reply = ksr, observe, reply
        self.trusted, self.listed_gateway = trusted, listed_gateway
        # the call_limits table's rows win over the settings (kemi/store/limits.py)
        self.override = overrides.limit if lim.from_database and overrides is not None else None
        names = side_names(settings)
        self.defaults = Defaults(
            caller=lim.caller_calls, callee=lim.callee_calls, gateway=lim.gateway_calls,
            trunk={names[role]: getattr(lim.trunk_calls, role) for role in names},
            side={names[role]: getattr(lim.side_calls, role) for role in names})
        self.emergency = frozenset(lim.emergency)
        self.retry_after = lim.retry_after
        self.keepalive = lim.keepalive_interval > 0
        self.sbc = settings.sbc.enabled
        self.sides = tuple(names.values()) if self.sbc else ()
        self.profiles = dict(LIMIT_PROFILES)        # kind -> the dialog profile counting it
        self.gateway_addresses: dict[str, str] = {}  # dispatcher URI -> the gateway's address
        observe.before_scrape.append(self.refresh_gauges)

    # route[SBC] (after ds_select_dst), route[SIPOUT], route[LOCATION] (after lookup)
    def admit(self, msg: Message, trunk: Side | None = None, callee: str | None = None) -> bool:
        """Count a new call (INVITE) in every limit that applies; True: under every limit (or an
        emergency number), relay it. False: refused and answered. `trunk`: the side whose gateway
        set it goes to (the dispatcher has picked a gateway); `callee`: the local subscriber rung."""
        if msg.method != "INVITE" or msg.in_dialog:
            return True
        ksr = self.ksr
        emergency = msg.ruri_user in self.emergency
        from_gateway = self.sbc and self.listed_gateway(msg)
        ends = CallEnds(
            caller=None if self.trusted(msg) else msg.from_user,
            callee=callee,
            ingress=msg.ingress.name if msg.ingress is not None else None,
            from_gateway=msg.source_ip if from_gateway else None,     # $si: as uri_host() writes it
            to_trunk=trunk.name if trunk is not None else None)
        # dlg_manage() fails when this request has its dialog already (another feature made it):
        # then that one is counted
        if ksr.dialog.dlg_manage() < 0 and ksr.dialog.is_known_dlg() < 0:
            return self.failed(msg, "dlg_manage")
        for count in counts(ends):
            if not self.take(msg, count, emergency):
                return False
        if trunk is not None and not self.take_gateway(msg, emergency, answer=True):
            return False
        if self.keepalive:
            for prop in KEEPALIVE_PROPERTIES:
                if ksr.dialog.dlg_set_property(prop) < 0:
                    return self.failed(msg, f"dlg_set_property {prop}")
        return True

    # failure_route, after ds_next_dst() (kemi/sbc/part.py SbcSides.failover)
    def next_gateway(self, msg: Message, previous: str) -> bool:
        """The dispatcher moved the call from gateway `previous` (URI) to the next one: its count
        moves along (a full gateway is skipped). False: none left under its limit (the SBC
        answers 503, no gateway left)."""
        old = self.gateway_address(previous)
        if old and self.ksr.dialog.unset_dlg_profile(self.profiles[GATEWAY], old) < 0:
            self.ksr.err(f"kemi: limits: gateway {old} count not released on failover: {msg.describe()}\n")
        return self.take_gateway(msg, msg.ruri_user in self.emergency, answer=False)

    def take(self, msg: Message, count: Count, emergency: bool) -> bool:
        """Count the call under `count`, then check it (counted first: a race refuses, never admits)."""
        size = self.counted(count)
        if size is None:
            return self.failed(msg, f"{count.kind} {count.key}")
        limit = limit_of(count, self.defaults, self.override)
        if not over(size, limit) or emergency:
            return True
        self.refuse(msg, refusal(count, size - 1, limit, self.retry_after))
        return False

    def take_gateway(self, msg: Message, emergency: bool, answer: bool) -> bool:
        """The gateway the dispatcher picked, or the next one with a place left (an emergency call
        keeps the first). A gateway is looked at before it is counted: the dialog module cannot
        take a count back in the request route. False: every gateway left is full, or another
        call took the last place in between (answered 503 when `answer`)."""
        ksr = self.ksr
        while True:
            count = Count(GATEWAY, self.gateway_address(ksr.pv.gete(DS_CURRENT_GATEWAY)))
            limit = limit_of(count, self.defaults, self.override)
            if not emergency and limit != NO_LIMIT:
                calls_up = self.size(count)
                if calls_up is None:
                    return self.failed(msg, f"gateway {count.key}", answer)
                if full(calls_up, limit):
                    if ksr.dispatcher.ds_next_dst() > 0:
                        ksr.info(f"kemi: limits: gateway {count.key} has {calls_up} calls (limit {limit}), "
                                 f"trying {ksr.pv.gete(DS_CURRENT_GATEWAY)}: {msg.describe()}\n")
                        continue
                    self.refuse_gateway(msg, refusal(count, calls_up, limit, self.retry_after), answer)
                    return False
            size = self.counted(count)
            if size is None:
                return self.failed(msg, f"gateway {count.key}", answer)
            if not over(size, limit) or emergency:
                return True
            self.refuse_gateway(msg, refusal(count, size - 1, limit, self.retry_after), answer)
            return False

    def refuse_gateway(self, msg: Message, why: Refusal, answer: bool) -> None:
        if answer:
            self.refuse(msg, why)
        else:                           # failure route: the SBC answers 503, no gateway left
            self.note(msg, why, "no gateway left")

    def gateway_address(self, uri: str) -> str:
        """uri_host, remembered: a site has a handful of gateways (a dispatcher reload may add some)."""
        found = self.gateway_addresses.get(uri)
        if found is None:
            if len(self.gateway_addresses) >= GATEWAY_CACHE_SIZE:
                self.gateway_addresses.clear()
            found = self.gateway_addresses[uri] = uri_host(uri)
        return found

    def size(self, count: Count) -> int | None:
        """The calls counted under `count` now (None: the dialog module failed)."""
        if self.ksr.dialog.get_profile_size(self.profiles[count.kind], count.key, LIMIT_SIZE_PV) < 0:
            return None
        size = self.ksr.pv.get(LIMIT_SIZE_PV)
        return size if isinstance(size, int) else None

    def counted(self, count: Count) -> int | None:
        """set_dlg_profile, then the profile's size for this key (None: the dialog module failed)."""
        if self.ksr.dialog.set_dlg_profile(self.profiles[count.kind], count.key) < 0:
            return None
        return self.size(count)

    def refuse(self, msg: Message, why: Refusal) -> None:
        # the log line first: it is there once the caller has the answer
        self.note(msg, why, "refused")
        self.ksr.tm.t_newtran()         # stateful: a retransmission of the INVITE gets the same answer
        if why.retry_after is not None:
            self.ksr.hdr.append_to_reply(f"Retry-After: {why.retry_after}\r\n")
        self.reply(why.reply)

    def note(self, msg: Message, why: Refusal, what: str) -> None:
        self.ksr.notice(f"kemi: limits: {why.describe()}, {what}: {msg.describe()}\n")
        self.observe.note_limited(msg, why.reason, why.reply.code, why.counted.key,
                                  UNAVAILABLE_CALL_LIMIT if why.reply.code == sip.SERVICE_UNAVAILABLE.code else "")

    def failed(self, msg: Message, what: str, answer: bool = True) -> bool:
        """The counters cannot be used: the call is refused (503), never relayed uncounted."""
        self.ksr.err(f"kemi: limits: call counting failed ({what}), call refused: {msg.describe()}\n")
        self.observe.note_limited(msg, LIMIT_FAILED, COUNTERS_FAILED.code, what, UNAVAILABLE_LIMITS_FAILED)
        if answer:
            self.ksr.tm.t_newtran()
            self.reply(COUNTERS_FAILED)
        return False

    # /metrics (MeteredObserver.serve_http, before it renders)
    def refresh_gauges(self) -> None:
        ksr, observe = self.ksr, self.observe
        for kind, profile in self.profiles.items():
            if kind in SBC_KINDS and not self.sbc:
                continue
            if ksr.dialog.get_profile_size_static(profile, LIMIT_SIZE_PV) > 0:
                observe.set_gauge(LIMIT_CALLS, ksr.pv.get(LIMIT_SIZE_PV), kind, LIMIT_KEY_ALL)
            if kind in (TRUNK, SIDE):
                for side in self.sides:
                    if ksr.dialog.get_profile_size(profile, side, LIMIT_SIZE_PV) > 0:
                        observe.set_gauge(LIMIT_CALLS, ksr.pv.get(LIMIT_SIZE_PV), kind, side)


class NoCallRate:
    """No call-rate limit configured (pipelimit is not loaded)."""

    def admit(self, msg: Message) -> bool:
        return True


class CallRate:
    def __init__(self, ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None],
                 listed_gateway: Callable[[Any], bool]):
        lim = settings.limits
        self.ksr, self.observe, self.reply, self.listed_gateway = ksr, observe, reply, listed_gateway
        self.source_cps, self.gateway_cps = lim.source_cps, lim.gateway_cps
        names = side_names(settings)
        self.trunk_cps = {names[role]: getattr(lim.trunk_cps, role) for role in names}
        self.emergency = frozenset(lim.emergency)
        self.sbc = settings.sbc.enabled
        self.logged: dict[str, int] = {}        # pipe -> the window its last refusal was logged in

    # after route[AUTH]: initial requests from a trusted or authenticated source
    def admit(self, msg: Message) -> bool:
        """True: under every rate (or not a new call, or an emergency number). False: refused 503."""
        if msg.method != "INVITE" or msg.ruri_user in self.emergency:
            return True
        ksr = self.ksr
        gateway_side = msg.ingress.name if self.sbc and msg.ingress is not None and self.listed_gateway(msg) \
            else None
        for pipe in pipes(msg.source_ip, gateway_side, source_cps=self.source_cps,
                          gateway_cps=self.gateway_cps, trunk_cps=self.trunk_cps):
            rc = ksr.pipelimit.pl_check_limit(pipe.name, ALGORITHM, pipe.limit)
            if rc > 0:
                continue
            if rc == PL_OVER:
                reply, reason, label = over_rate_reply(pipe), UNAVAILABLE_CALL_RATE, pipe.reason
                if should_log(self.logged, pipe.name, int(time.monotonic())):
                    ksr.notice(f"kemi: limits: {pipe.name} is over {pipe.limit} INVITEs per second, refused 503 "
                               f"(one line per second): {msg.describe()}\n")
            else:
                reply, reason, label = COUNTERS_FAILED, UNAVAILABLE_LIMITS_FAILED, LIMIT_FAILED
                ksr.err(f"kemi: limits: pl_check {pipe.name} failed ({rc}), call refused: {msg.describe()}\n")
            self.observe.note_limited(msg, label, reply.code, pipe.name, reason)
            ksr.hdr.append_to_reply(f"Retry-After: {RETRY_AFTER}\r\n")
            self.reply(reply)
            return False
        return True
