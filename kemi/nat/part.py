"""The NAT part: keep phones behind NAT reachable (nathelper in C does the work).

detect              route[NATDETECT]: rport, nat_uac_test; a NATed REGISTER's contact is
                    fixed, a NATed caller gets a contact alias; FLT_NATS marks the request
mark_registration   route[REGISTRAR]: a NATed phone's contact is stored with the NAT and
                    keepalive branch flags (usrloc nat_bflag, nathelper sipping_bflag)
manage              route[NATMANAGE], from the branch, reply and failure routes
tm_work             route[RELAY]: does manage() have work in the branch route, in the reply
                    route? (kemi/nat/work.py decides)
sdp_sender_nated    is the sender of a message's SDP behind NAT? (media: SIP-source-address)
"""
from __future__ import annotations

from kemi import sip
from kemi.message import Message
from kemi.names import FLB_NATB, FLB_NATSIPPING, FLT_NATS
from kemi.nat.work import ROUTE_NAT_PARAM, ROUTE_NAT_VALUE, branch_route_needed, reply_route_needed

# extra branches (forking) lookup() appended to the destination set; branch 0 is the R-URI
BRANCH_COUNT_PV = "$branch(count)"


# nat_uac_test 64: the request came over a WebSocket (a browser: its Via/Contact name an
# invalid host, so it is handled as behind NAT, as in Kamailio's websocket module README)
NAT_TEST_WEBSOCKET = 64


class Nat:
    def __init__(self, ksr, websocket: bool = False):
        self.ksr = ksr
        self.tests = sip.NAT_TESTS | (NAT_TEST_WEBSOCKET if websocket else 0)

    # route[NATDETECT]
    def detect(self, msg: Message) -> None:
        ksr = self.ksr
        ksr.force_rport()
        if ksr.nathelper.nat_uac_test(self.tests) > 0:
            if msg.method == "REGISTER":
                ksr.nathelper.fix_nated_register()
            elif ksr.siputils.is_first_hop() > 0:
                ksr.nathelper.set_contact_alias()
            ksr.setflag(FLT_NATS)

    def mark_registration(self) -> None:
        ksr = self.ksr
        if ksr.isflagset(FLT_NATS):
            ksr.setbflag(FLB_NATB)
            ksr.setbflag(FLB_NATSIPPING)

    # route[NATMANAGE]
    def manage(self, msg: Message, is_reply: bool = False) -> None:
        ksr = self.ksr
        if not is_reply and msg.in_dialog and msg.route_param(ROUTE_NAT_PARAM) == ROUTE_NAT_VALUE:
            ksr.setbflag(FLB_NATB)
        if not (ksr.isflagset(FLT_NATS) or ksr.isbflagset(FLB_NATB)):
            return
        if not is_reply and not msg.in_dialog and ksr.tmx.t_is_branch_route() > 0:
            ksr.rr.add_rr_param(f";{ROUTE_NAT_PARAM}={ROUTE_NAT_VALUE}")
        if is_reply and ksr.isbflagset(FLB_NATB):
            ksr.nathelper.set_contact_alias()

    def tm_work(self, msg: Message) -> tuple[bool, bool]:
        """(branch route, reply route): branch_route_needed() and reply_route_needed() on this
        request's flags, each read once (manage()'s inputs)."""
        ksr = self.ksr
        caller_nated = bool(ksr.isflagset(FLT_NATS))
        if msg.in_dialog:       # after loose_route(): the Route we put there ourselves
            route_nat, extra, callee_nated = msg.route_param(ROUTE_NAT_PARAM) == ROUTE_NAT_VALUE, 0, False
        else:
            route_nat = False
            extra = int(ksr.pv.gete(BRANCH_COUNT_PV) or 0)      # an int; "" if Kamailio had none
            callee_nated = bool(ksr.isbflagset(FLB_NATB))
        return (branch_route_needed(caller_nated, msg.in_dialog, route_nat, extra, callee_nated),
                reply_route_needed(msg.in_dialog, route_nat, extra, callee_nated))

    def sdp_sender_nated(self, msg: Message, is_reply: bool = False) -> bool:
        """The sender of this message's SDP is behind NAT (rtpengine then uses the packet's
        source address, SIP-source-address, instead of the SDP's: trust-address).

        Request: route_natdetect's FLT_NATS, or a private address in the SDP. Reply: the
        callee registered from behind NAT (FLB_NATB), or nat_uac_test(9) on the reply.
        """
        ksr = self.ksr
        if is_reply:
            return ksr.isbflagset(FLB_NATB) or ksr.nathelper.nat_uac_test(sip.NAT_TESTS_REPLY) > 0
        return ksr.isflagset(FLT_NATS) or ksr.nathelper.nat_uac_test(sip.NAT_TEST_SDP) > 0
