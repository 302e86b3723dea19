"""The dual-NIC SBC's routes (docs/sbc.md). Inactive (every hook returns at once) unless
settings `sbc.enabled`: the plain registrar runs from the same install.

route_sbc_ingress    request_route, first: which side (NIC) the request comes from; 403 if none
is_trusted_source    route[AUTH]: the side's listed gateways skip digest auth (by IP)
route_sbc            after auth: gateway set of the other side, DID -> extension, or location
route_sbc_gateways   ds_select_dst() on a side's set, relayed through that side's socket
route_sbc_egress     route[RELAY], before t_relay: the side the request leaves through
route_sbc_failover   failure_route: mark the gateway, try the next one, 503 when none is left
call_sides           (ingress, egress) of the transaction: what the media part needs
                     (kemi/routing/sbc_media.py turns it into rtpengine's direction=)

The decisions are plain functions in kemi/sbc/; here are only the KSR calls around them.
The call's sides live in transaction AVPs ($avp(sbc_ingress), $avp(sbc_egress)), set in
the request route of every request (initial or in-dialog), so its branch, reply and
failure routes read what the transaction remembers instead of guessing.
"""
from __future__ import annotations

from kemi import sip
from kemi.observe.metrics import CALL_GATEWAY, CALL_NO_GATEWAY, UNAVAILABLE_GATEWAYS_FAILED, UNAVAILABLE_NO_GATEWAY
from kemi.routing.message import Message
from kemi.routing.request import BRANCH_ROUTE, DONE, FAILURE_ROUTE, NEXT
from kemi.sbc.direction import CallSides, Side, Sides, sides_from_settings
from kemi.sbc.policy import choose_destination, no_gateway_reply, should_fail_over

# transaction state (AVPs live as long as the transaction: branch, reply and failure routes)
AVP_INGRESS = "$avp(sbc_ingress)"       # side name the request came from
AVP_EGRESS = "$avp(sbc_egress)"         # side name it was relayed through
AVP_GATEWAY_SET = "$avp(sbc_gwset)"     # dispatcher set it went to (failover), unset otherwise
DS_CURRENT_GATEWAY = "$xavp(_dsdst_=>uri)"
# ds_is_from_list mode bits: 1 ignore the port, 2 ignore the protocol (trust is by IP)
DS_MATCH_IP_ONLY = 1 | 2
# ds_mark_dst state: inactive, and probed with OPTIONS until it answers again
DS_INACTIVE_PROBING = "ip"
# sources whose side is remembered per process (detect_side)
SIDE_CACHE_SIZE = 4096


class SbcRoutes:
    sides: Sides | None = None
    dids = None

    def init_sbc(self, dids=None) -> None:
        """Called by Router.__init__: the sides from the settings (None = SBC off)."""
        sbc = self.settings.sbc
        self.sides = sides_from_settings(sbc) if sbc.enabled else None
        self.dids = dids
        self.side_cache: dict = {}      # (socket name, source) -> Detection, see detect_side

    # route[SBC_INGRESS]
    def route_sbc_ingress(self, msg: Message) -> bool:
        """Which side the request comes from; a source on neither side is refused (403)."""
        if self.sides is None:
            return NEXT
        detection = self.detect_side(msg)
        if detection.side is None:
            self.ksr.notice(f"kemi: sbc: refused, {detection.reason}: {msg.describe()}\n")
            if msg.method != "ACK":            # an ACK is never answered
                self.reply(sip.FORBIDDEN)
                self.note_rejected(msg, sip.FORBIDDEN.code)
            return DONE
        msg.ingress = detection.side
        self.ksr.pv.sets(AVP_INGRESS, detection.side.name)
        return NEXT

    def detect_side(self, msg: Message):
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

    # route[AUTH] hook: which sources need no digest auth
    def is_trusted_source(self, msg: Message) -> bool:
        """A gateway listed in the gateway set of the side the request came from (by IP).

        Never for REGISTER: a gateway's address must not let it register as somebody.
        """
        if self.sides is None:
            return super().is_trusted_source(msg)
        return msg.method != "REGISTER" and self.is_listed_gateway(msg)

    def is_listed_gateway(self, msg: Message) -> bool:
        """Sent from the address of a gateway listed for the side it came from (asked once)."""
        if self.sides is None or msg.ingress is None:
            return False
        if msg.from_gateway is None:
            found = self.ksr.dispatcher.ds_is_from_list_mode(msg.ingress.gateway_set, DS_MATCH_IP_ONLY)
            msg.from_gateway = found > 0
        return msg.from_gateway

    # route[SBC]: after auth and record_route, before SIPOUT / REGISTRAR / LOCATION
    def route_sbc(self, msg: Message) -> bool:
        if self.sides is None or msg.method == "REGISTER" or not msg.ruri_user:
            return NEXT
        ksr = self.ksr
        from_gateway = self.is_trusted_source(msg)
        if not from_gateway and not ksr.is_myself_ruri():
            return NEXT                          # a subscriber's call to a foreign domain: SIPOUT
        user = msg.ruri_user
        did_target = None
        if from_gateway and msg.ingress is self.sides.public and self.dids is not None:
            did_target = self.dids.extension(user)
        is_subscriber = None if from_gateway else self.subscribers.exists(user)
        dest = choose_destination(self.sides, msg.ingress, from_gateway=from_gateway, ruri_user=user,
                                  did_target=did_target, is_subscriber=is_subscriber)
        ksr.info(f"kemi: sbc: {dest.reason}: {msg.describe()}\n")
        if dest.is_gateway_set:
            self.route_sbc_gateways(msg, dest.gateways)
            return DONE
        if dest.extension != user or not ksr.is_myself_ruri():
            msg.set_ruri(f"sip:{dest.extension}@{self.settings.sip.domain}")
        return NEXT                               # on to LOCATION

    # route[SBC_GATEWAYS]
    def route_sbc_gateways(self, msg: Message, side: Side) -> None:
        ksr = self.ksr
        if ksr.dispatcher.ds_select_dst(side.gateway_set, side.algorithm) < 0:
            ksr.notice(f"kemi: sbc: no active gateway in set {side.gateway_set} ({side.name}): "
                       f"{msg.describe()}\n")
            self.reply(no_gateway_reply(side))
            self.note_call(msg, CALL_NO_GATEWAY, sip.SERVICE_UNAVAILABLE.code, egress=side.name)
            self.note_503(msg, UNAVAILABLE_NO_GATEWAY)
            return
        ksr.pv.seti(AVP_GATEWAY_SET, side.gateway_set)
        self.note_gateway_attempt()
        self.route_relay(msg)
        self.note_call(msg, CALL_GATEWAY, egress=side.name)

    # route[RELAY] hook, right before t_relay
    def route_sbc_egress(self, msg: Message) -> None:
        """Record the side the request leaves through (the forced send socket's side).

        Dispatcher (sockname=), registrar lookup (the contact's socket) and rr (the other
        Record-Route of a double RR, or the only one with force_send_socket) force the
        socket. A gateway set whose destination names no socket gets its side's first one.
        """
        if self.sides is None or msg.ingress is None:
            return
        ksr = self.ksr
        side = self.sides.by_socket(ksr.kx.get_send_sock_name())
        if side is None:
            gwset = ksr.pv.gete(AVP_GATEWAY_SET)
            side = next((s for s in self.sides.all if s.gateway_set == gwset), None)
            if side is not None:
                ksr.corex.set_send_socket_name(side.socket_names[0])
        if side is not None:
            ksr.pv.sets(AVP_EGRESS, side.name)
            msg.egress = side.name

    # failure_route hook
    def route_sbc_failover(self, msg: Message) -> bool:
        """True when the call went on to the next gateway of its set (the transaction lives on).

        False otherwise: not a call to a gateway set, the callee's own answer (486, 404, ...),
        or no gateway left (answered 503 here). The failure route then ends the call (media).
        """
        if self.sides is None:
            return False
        ksr = self.ksr
        gwset = ksr.pv.gete(AVP_GATEWAY_SET)
        side = next((s for s in self.sides.all if s.gateway_set == gwset), None)
        if side is None:
            return False                          # not a call to a gateway set
        code = ksr.pv.gete("$T_reply_code")
        if not (isinstance(code, int) and should_fail_over(code)):
            return False                          # the callee's answer (486, 404, ...): passed on
        failed = ksr.pv.gete(DS_CURRENT_GATEWAY)
        ksr.dispatcher.ds_mark_dst_state(DS_INACTIVE_PROBING)
        self.note_failover(msg, failed, code)
        if ksr.dispatcher.ds_next_dst() < 0:
            ksr.notice(f"kemi: sbc: gateway {failed} answered {code}, none left in set "
                       f"{side.gateway_set} ({side.name}): {msg.describe()}\n")
            self.reply(no_gateway_reply(side))
            self.note_503(msg, UNAVAILABLE_GATEWAYS_FAILED)
            return False
        ksr.notice(f"kemi: sbc: gateway {failed} answered {code}, trying "
                   f"{ksr.pv.gete(DS_CURRENT_GATEWAY)}: {msg.describe()}\n")
        ksr.tm.t_on_failure(FAILURE_ROUTE)
        ksr.tm.t_on_branch(BRANCH_ROUTE)
        self.route_sbc_egress(msg)
        self.note_gateway_attempt()
        if ksr.tm.t_relay() < 0:
            self.reply(no_gateway_reply(side))
            self.note_503(msg, UNAVAILABLE_GATEWAYS_FAILED)
            return False
        return True

    # --- for the media part ----------------------------------------------------------------

    def call_sides(self, msg: Message) -> CallSides | None:
        """(ingress, egress) side names of the transaction `msg` belongs to; None if unknown.

        Request / branch route: ingress as detected, egress = the side of the socket the
        request (branch) leaves through, else what route_sbc_egress recorded. Reply /
        failure route: ingress from the transaction, egress = the side of the socket the
        reply arrived on, else the recorded one. A reply's SDP goes egress -> ingress.
        """
        if self.sides is None:
            return None
        ksr = self.ksr
        ingress = ksr.pv.gete(AVP_INGRESS)
        if not ingress:
            return None
        socket = msg.received_socket_name if msg.is_reply else ksr.kx.get_send_sock_name()
        side = self.sides.by_socket(socket)
        egress = side.name if side is not None else ksr.pv.gete(AVP_EGRESS)
        return CallSides(ingress, egress) if egress else None
