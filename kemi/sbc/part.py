"""The SBC's sides part: two NICs, a gateway set per side, rtpengine interfaces per side.

The Router builds this instead of the registrar's OneSide when settings `sbc.enabled`
(docs/sbc.md). Same questions, the SBC's answers:

accept                request_route, first: which side (NIC) the request comes from; 403 if none
trusts                route[AUTH]: the side's listed gateways skip digest auth (by IP)
gateways_for          route[SBC]: the other side's gateway set, or a DID's extension (the
                      R-URI is rewritten and the call goes on to LOCATION)
select_gateway        ds_select_dst() on that set; 503 naming the set when none is active
leaving               route[RELAY], before t_relay: the side the request leaves through
failover              failure_route: mark the gateway, try the next one, 503 when none is left
call_sides            (ingress, egress) of the transaction
media_view            what the media part needs of an SDP, once per message (kemi/media/view.py):
                      direction=<sender's side> direction=<receiver's side>, the receiving
                      side's profile, whether a listed gateway sent it (never behind NAT),
                      each side's media security

The decisions are plain functions beside this file (direction.py, policy.py, media.py); here
are only the KSR calls around them. What the steps of one request share (its side, whether a
gateway sent it, the gateway set it goes to) are the slots of SbcMessage, the message class
the Router uses when the SBC is on.
The call's sides live in transaction AVPs (kemi/names.py: AVP_INGRESS, AVP_EGRESS,
AVP_GATEWAY_SET), set in the request route of every request (initial or in-dialog), so its
branch, reply and failure routes read what the transaction remembers instead of guessing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kemi import sip
from kemi.media.view import SdpView
from kemi.message import Message, SbcMessage      # SbcMessage lives in kemi/message.py (see there)
from kemi.names import (
    AVP_EGRESS,
    AVP_GATEWAY_SET,
    AVP_INGRESS,
    BRANCH_ROUTE,
    DONE,
    DS_CURRENT_GATEWAY,
    FAILURE_ROUTE,
    NEXT,
)
from kemi.observe.metrics import CALL_NO_GATEWAY, UNAVAILABLE_GATEWAYS_FAILED, UNAVAILABLE_NO_GATEWAY
from kemi.observe.part import Observer
from kemi.sbc import media as sbc_media
from kemi.sbc.direction import CallSides, Detection, Side, sides_from_settings
from kemi.sbc.policy import choose_destination, no_gateway_reply, should_fail_over

if TYPE_CHECKING:
    from kemi.settings import Settings

# ds_is_from_list mode bits: 1 ignore the port, 2 ignore the protocol (trust is by IP)
DS_MATCH_IP_ONLY = 1 | 2
# ds_mark_dst state: inactive, and probed with OPTIONS until it answers again
DS_INACTIVE_PROBING = "ip"
# sources whose side is remembered per process (detect_side)
SIDE_CACHE_SIZE = 4096


class GatewayLimits(Protocol):
    def next_gateway(self, msg: Message, previous: str) -> bool: ...


class _NoGatewayLimits:
    def next_gateway(self, msg: Message, previous: str) -> bool:
        return True


NO_GATEWAY_LIMITS = _NoGatewayLimits()


class SbcSides:
    message_class = SbcMessage

    def __init__(self, ksr, settings: Settings, subscribers, dids, observe: Observer,
                 reply: Callable[[sip.Reply], None]):
        self.ksr, self.subscribers, self.dids, self.observe, self.reply = ksr, subscribers, dids, observe, reply
        self.domain = settings.sip.domain
        self.sides = sides_from_settings(settings.sbc)
        self.default_profile = settings.media.profile
        # side name -> its rtpengine interface and profile (built once)
        self.side_media = sbc_media.side_media(settings.sbc, settings.media.profile)
        self.side_cache: dict[tuple[str, str], Detection] = {}     # see detect_side
        # (call sides, SDP in a reply, sent by a gateway) -> the media view: a handful, built once each
        self.views: dict[tuple[CallSides | None, bool, bool], SdpView] = {}
        # call limits (kemi/limits/part.py): a failover moves the call's gateway count to the next
        # gateway, skipping full ones; the Router sets it when a call limit is configured
        self.gateway_limits: GatewayLimits = NO_GATEWAY_LIMITS

    # route[SBC_INGRESS]
    def accept(self, msg: SbcMessage) -> bool:
        """Which side the request comes from; a source on neither side is refused (403)."""
        detection = self.detect_side(msg)
        if detection.side is None:
            self.ksr.notice(f"kemi: sbc: refused, {detection.reason}: {msg.describe()}\n")
            if msg.method != "ACK":            # an ACK is never answered
                self.reply(sip.FORBIDDEN)
                self.observe.note_rejected(msg, sip.FORBIDDEN.code)
            return DONE
        msg.ingress = detection.side
        self.ksr.pv.sets(AVP_INGRESS, detection.side.name)
        return NEXT

    def detect_side(self, msg: Message) -> Detection:
        """Sides.detect, remembered per (socket, source): parsing the address and matching the
        networks on every request cost the most of the SBC's Python (bench.python_cost). A
        trunk's few addresses repeat; a scan of many cannot grow it past SIDE_CACHE_SIZE."""
        key = (msg.received_socket_name, msg.source_ip)
        found = self.side_cache.get(key)
        if found is None:
            if len(self.side_cache) >= SIDE_CACHE_SIZE:
                self.side_cache.clear()
            found = self.side_cache[key] = self.sides.detect(*key)
        return found

    # route[AUTH]: which sources need no digest auth
    def trusts(self, msg: SbcMessage) -> bool:
        """A gateway listed in the gateway set of the side the request came from (by IP).

        Never for REGISTER: a gateway's address must not let it register as somebody.
        """
        return msg.method != "REGISTER" and self.is_listed_gateway(msg)

    def is_listed_gateway(self, msg: SbcMessage) -> bool:
        """Sent from the address of a gateway listed for the side it came from (asked once)."""
        if msg.ingress is None:
            return False
        if msg.from_gateway is None:
            found = self.ksr.dispatcher.ds_is_from_list_mode(msg.ingress.gateway_set, DS_MATCH_IP_ONLY)
            msg.from_gateway = found > 0
        return msg.from_gateway

    # route[SBC]: after auth and record_route, before SIPOUT / REGISTRAR / LOCATION
    def gateways_for(self, msg: SbcMessage, is_trusted: Callable[[Message], bool]) -> Side | None:
        """The side whose gateway set the call goes to; None: on to SIPOUT / LOCATION (a DID
        mapped to an extension, or a call to a local extension, rewrites the R-URI first)."""
        ingress = msg.ingress                    # set by accept(), which refused a request on no side
        if msg.method == "REGISTER" or not msg.ruri_user or ingress is None:
            return None
        ksr = self.ksr
        from_gateway = is_trusted(msg)
        if not from_gateway and not ksr.is_myself_ruri():
            return None                          # a subscriber's call to a foreign domain: SIPOUT
        user = msg.ruri_user
        did_target = None
        if from_gateway and ingress is self.sides.public and self.dids is not None:
            did_target = self.dids.extension(user)
        is_subscriber = None if from_gateway else self.subscribers.exists(user)
        dest = choose_destination(self.sides, ingress, from_gateway=from_gateway, ruri_user=user,
                                  did_target=did_target, is_subscriber=is_subscriber)
        ksr.info(f"kemi: sbc: {dest.reason}: {msg.describe()}\n")
        if dest.is_gateway_set:
            return dest.gateways
        if dest.extension != user or not ksr.is_myself_ruri():
            msg.set_ruri(f"sip:{dest.extension}@{self.domain}")
        return None                               # on to LOCATION

    # route[SBC_GATEWAYS]
    def select_gateway(self, msg: SbcMessage, side: Side) -> bool:
        """ds_select_dst() on the side's set: True when a gateway is the destination now."""
        ksr = self.ksr
        if ksr.dispatcher.ds_select_dst(side.gateway_set, side.algorithm) < 0:
            ksr.notice(f"kemi: sbc: no active gateway in set {side.gateway_set} ({side.name}): "
                       f"{msg.describe()}\n")
            self.reply(no_gateway_reply(side))
            self.observe.note_call(msg, CALL_NO_GATEWAY, sip.SERVICE_UNAVAILABLE.code, egress=side.name)
            self.observe.note_503(msg, UNAVAILABLE_NO_GATEWAY)
            return False
        ksr.pv.seti(AVP_GATEWAY_SET, side.gateway_set)
        msg.gateway_side = side
        self.observe.note_gateway_attempt()
        return True

    # route[RELAY], right before t_relay
    def leaving(self, msg: SbcMessage) -> None:
        """Record the side the request leaves through (the forced send socket's side).

        Dispatcher (sockname=), registrar lookup (the contact's socket) and rr (the other
        Record-Route of a double RR, or the only one with force_send_socket) force the
        socket. A gateway set whose destination names no socket gets its side's first one.
        """
        if msg.ingress is None:
            return
        ksr = self.ksr
        side = self.sides.by_socket(ksr.kx.get_send_sock_name())
        if side is None:
            side = self.gateway_set_side()
            if side is not None:
                ksr.corex.set_send_socket_name(side.socket_names[0])
        if side is not None:
            ksr.pv.sets(AVP_EGRESS, side.name)
            msg.egress = side.name

    def gateway_set_side(self) -> Side | None:
        """The side whose gateway set this transaction went to (None: not to a gateway set)."""
        gwset = self.ksr.pv.gete(AVP_GATEWAY_SET)
        return next((s for s in self.sides.all if s.gateway_set == gwset), None)

    def failover_possible(self, msg: SbcMessage) -> bool:
        """route[RELAY]: a call to a gateway set (select_gateway ran): the failure route may
        try the next gateway."""
        return msg.gateway_side is not None

    # failure_route
    def failover(self, msg: SbcMessage) -> bool:
        """True when the call went on to the next gateway of its set (the transaction lives on).

        False otherwise: not a call to a gateway set, the callee's own answer (486, 404, ...),
        or no gateway left (answered 503 here). The failure route then ends the call (media).
        """
        ksr = self.ksr
        side = self.gateway_set_side()
        if side is None:
            return False                          # not a call to a gateway set
        code = ksr.pv.gete("$T_reply_code")
        if not (isinstance(code, int) and should_fail_over(code)):
            return False                          # the callee's answer (486, 404, ...): passed on
        failed = ksr.pv.gete(DS_CURRENT_GATEWAY)
        ksr.dispatcher.ds_mark_dst_state(DS_INACTIVE_PROBING)
        self.observe.note_failover(msg, failed, code)
        if ksr.dispatcher.ds_next_dst() < 0 or not self.gateway_limits.next_gateway(msg, failed):
            ksr.notice(f"kemi: sbc: gateway {failed} answered {code}, none left in set "
                       f"{side.gateway_set} ({side.name}): {msg.describe()}\n")
            self.reply(no_gateway_reply(side))
            self.observe.note_503(msg, UNAVAILABLE_GATEWAYS_FAILED)
            return False
        ksr.notice(f"kemi: sbc: gateway {failed} answered {code}, trying "
                   f"{ksr.pv.gete(DS_CURRENT_GATEWAY)}: {msg.describe()}\n")
        ksr.tm.t_on_failure(FAILURE_ROUTE)
        ksr.tm.t_on_branch(BRANCH_ROUTE)
        self.leaving(msg)
        self.observe.note_gateway_attempt()
        if ksr.tm.t_relay() < 0:
            self.reply(no_gateway_reply(side))
            self.observe.note_503(msg, UNAVAILABLE_GATEWAYS_FAILED)
            return False
        return True

    # --- the call's sides, and what rtpengine is told about its SDP ---------------------------

    def call_sides(self, msg: Message) -> CallSides | None:
        """(ingress, egress) side names of the transaction `msg` belongs to; None if unknown.

        Request / branch route: ingress as detected, egress = the side of the socket the
        request (branch) leaves through, else what leaving() recorded. Reply / failure
        route: ingress from the transaction, egress = the side of the socket the reply
        arrived on, else the recorded one. A reply's SDP goes egress -> ingress.
        """
        ksr = self.ksr
        ingress = ksr.pv.gete(AVP_INGRESS)
        if not ingress:
            return None
        socket = msg.received_socket_name if msg.is_reply else ksr.kx.get_send_sock_name()
        side = self.sides.by_socket(socket)
        egress = side.name if side is not None else ksr.pv.gete(AVP_EGRESS)
        return CallSides(ingress, egress) if egress else None

    def media_view(self, msg: SbcMessage, is_reply: bool) -> SdpView:
        """What rtpengine is told about this message's SDP: direction=<sender's interface>
        direction=<receiver's interface> (none when the sides are unknown, e.g. a subscriber's
        call to a foreign domain: rtpengine's default interface), the receiving side's
        profile, whether a listed gateway sent it, each side's media security."""
        call = self.call_sides(msg)
        gateway = self.sdp_sender_is_gateway(msg, is_reply, call)
        key = (call, is_reply, gateway)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = self.build_view(call, is_reply, gateway)
        return view

    def build_view(self, call: CallSides | None, is_reply: bool, gateway: bool) -> SdpView:
        if call is None:
            return SdpView(profile=self.default_profile, sender_is_gateway=gateway)
        directions = sbc_media.directions(call, is_reply, self.side_media)
        return SdpView(directions=(directions["ingress"], directions["egress"]),
                       profile=sbc_media.profile_name(call, is_reply, self.side_media),
                       sender_is_gateway=gateway, securities=sbc_media.securities(call, self.side_media))

    def sdp_sender_is_gateway(self, msg: SbcMessage, is_reply: bool, call: CallSides | None) -> bool:
        """The SDP's sender is a listed gateway of its side (by IP, as route[AUTH] trusts it)."""
        if not is_reply:
            return self.is_listed_gateway(msg)
        side = self.sides.by_name(call.egress) if call is not None else None
        if side is None:
            return False
        return self.ksr.dispatcher.ds_is_from_list_mode(side.gateway_set, DS_MATCH_IP_ONLY) > 0
