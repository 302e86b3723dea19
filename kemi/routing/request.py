"""request_route and the routes it calls, in the order a request meets them.

Each method mirrors a route of Kamailio's default kamailio.cfg (route[REQINIT],
route[WITHINDLG], ...). A route returns NEXT when the request should go on to the next
route, or DONE when it has been answered, relayed or dropped.
"""
from __future__ import annotations

from kemi import sip
from kemi.names import FLB_NATB, FLT_NATS
from kemi.observe.metrics import CALL_FOREIGN_DOMAIN, CALL_REJECTED, DROP_METRICS_SOCKET, REG_REFUSED, SIDE_NONE
from kemi.routing.message import Message

NEXT = True
DONE = False

# methods that may create a dialog: Record-Route them so in-dialog requests come back here
DIALOG_FORMING = frozenset({"INVITE", "SUBSCRIBE"})
# tm callbacks (names of Router methods) armed before relaying
BRANCH_ROUTE_METHODS = frozenset({"INVITE", "BYE", "SUBSCRIBE", "UPDATE"})
ONREPLY_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "UPDATE"})
# the Router methods tm calls back (kemi/routing/router.py)
BRANCH_ROUTE = "ksr_branch_manage"
ONREPLY_ROUTE = "ksr_onreply_manage"
FAILURE_ROUTE = "ksr_failure_manage"
# extra branches (forking) lookup() appended to the destination set; branch 0 is the R-URI
BRANCH_COUNT_PV = "$branch(count)"
ROUTE_NAT_PARAM = "nat=yes"


def branch_route_needed(caller_nated: bool, in_dialog: bool, route_nat: bool,
                        extra_branches: int, callee_nated: bool) -> bool:
    """Whether route_natmanage has work in the branch route (each entry into Python costs
    ~10 µs, so tm calls it only then).

    It acts when the caller is NATed (FLT_NATS), or the branch is (FLB_NATB): for an
    in-dialog request that flag comes from our Route's nat=yes, for an initial one from the
    contact lookup() found. Other branches' flags are not visible here, so a forked request
    always gets the branch route.
    """
    if caller_nated:
        return True
    if in_dialog:
        return route_nat
    return extra_branches > 0 or callee_nated


class RequestRoutes:
    """request_route{}: initial checks, in-dialog handling, then on to auth and registrar."""

    own_branch_route = False        # Router.__init__: a subclass overrides the branch route

    def route_request(self, msg: Message) -> None:
        ksr = self.ksr
        if self.is_metrics_socket(msg):             # SIP on the HTTP metrics socket: never routed
            ksr.info(f"kemi: request on the metrics socket dropped: {msg.describe()}\n")
            self.note_drop(DROP_METRICS_SOCKET)
            return
        if not self.route_sbc_ingress(msg):         # SBC: which NIC, 403 for unknown sources
            return
        if not self.route_reqinit(msg):
            return
        self.route_natdetect(msg)
        if msg.method == "CANCEL":
            if ksr.tm.t_check_trans() > 0:
                self.route_relay(msg)
            return
        if not self.route_withindlg(msg):
            return
        # --- only initial requests (no To tag) from here on ---
        if msg.method != "ACK":
            if ksr.tmx.t_precheck_trans() > 0:       # a retransmission being processed
                ksr.tm.t_check_trans()
                return
            if ksr.tm.t_check_trans() == sip.TRANS_HANDLED:
                return
        if not self.route_auth(msg):
            return
        ksr.hdr.remove("Route")                     # preloaded routes are not honoured
        if msg.method in DIALOG_FORMING:
            ksr.rr.record_route()
            self.sign_record_route(msg)             # kemi/routing/security.py
        if not self.route_sbc(msg):                 # SBC: gateway sets, DIDs
            return
        if not self.route_sipout(msg):
            return
        if not self.route_registrar(msg):
            return
        if not msg.ruri_user:
            self.reply(sip.ADDRESS_INCOMPLETE)
            self.note_call(msg, CALL_REJECTED, sip.ADDRESS_INCOMPLETE.code)
            return
        self.route_location(msg)

    # route[REQINIT]
    def route_reqinit(self, msg: Message) -> bool:
        ksr = self.ksr
        if not self.route_screen(msg):               # bans, floods, scanners: kemi/routing/security.py
            return DONE
        if not self.route_validate(msg):             # URI scheme, Proxy-Require: same file
            return DONE
        if ksr.maxfwd.process_maxfwd(sip.MAX_FORWARDS) < 0:
            self.reply(sip.TOO_MANY_HOPS)
            return DONE
        if msg.method == "OPTIONS" and not msg.ruri_user and ksr.is_myself_ruri():
            self.reply(sip.OK_KEEPALIVE)
            return DONE
        if ksr.sanity.sanity_check(sip.SANITY_MSG_CHECKS, sip.SANITY_URI_CHECKS) < 0:
            # sanity has answered (400 and friends) where an answer makes sense
            ksr.info(f"kemi: malformed request dropped: {msg.describe()}\n")
            return DONE
        return NEXT

    # route[NATDETECT]
    def route_natdetect(self, msg: Message) -> None:
        ksr = self.ksr
        ksr.force_rport()
        if ksr.nathelper.nat_uac_test(sip.NAT_TESTS) > 0:
            if msg.method == "REGISTER":
                ksr.nathelper.fix_nated_register()
            elif ksr.siputils.is_first_hop() > 0:
                ksr.nathelper.set_contact_alias()
            ksr.setflag(FLT_NATS)

    # route[WITHINDLG]
    def route_withindlg(self, msg: Message) -> bool:
        ksr = self.ksr
        if not msg.in_dialog:
            return NEXT
        if ksr.rr.loose_route() > 0:
            if not self.route_signed(msg):          # a forged Route: no relaying for strangers
                return DONE
            self.route_dlguri(msg)
            if msg.method == "ACK":
                self.route_natmanage(msg)
            self.route_relay(msg)
            return DONE
        if msg.method == "ACK":
            # an ACK we did not record-route: relay it only if it ends one of our
            # transactions (ACK for a negative reply), otherwise it is absorbed
            if ksr.tm.t_check_trans() > 0:
                self.route_relay(msg)
            return DONE
        self.reply(sip.NOT_FOUND)
        return DONE

    # route[DLGURI]
    def route_dlguri(self, msg: Message) -> None:
        if not self.ksr.isdsturiset():
            self.ksr.nathelper.handle_ruri_alias()

    # route[SIPOUT]: requests for foreign domains (authenticated local users only get here)
    def route_sipout(self, msg: Message) -> bool:
        if self.ksr.is_myself_ruri():
            return NEXT
        if msg.method == "REGISTER":
            self.reply(sip.NOT_RELAYING)
            self.note_registration(msg, REG_REFUSED, sip.NOT_RELAYING.code)
            return DONE
        self.route_relay(msg)
        self.note_call(msg, CALL_FOREIGN_DOMAIN, egress=msg.egress or SIDE_NONE)
        return DONE

    # route[RELAY]
    def route_relay(self, msg: Message) -> None:
        ksr, method = self.ksr, msg.method
        self.route_sbc_egress(msg)                  # SBC: the side it leaves through (media needs it)
        if not self.route_media(msg):       # rtpengine offer/answer/delete (routing/media.py)
            return
        if method in BRANCH_ROUTE_METHODS and ksr.tm.t_is_set("branch_route") < 0 \
                and self.branch_route_wanted(msg):
            ksr.tm.t_on_branch(BRANCH_ROUTE)
        if method in ONREPLY_ROUTE_METHODS and ksr.tm.t_is_set("onreply_route") < 0:
            ksr.tm.t_on_reply(ONREPLY_ROUTE)
        if method == "INVITE" and ksr.tm.t_is_set("failure_route") < 0:
            ksr.tm.t_on_failure(FAILURE_ROUTE)
        if ksr.tm.t_relay() < 0:
            self.media_relay_failed(msg)
            ksr.sl.sl_reply_error()

    def branch_route_wanted(self, msg: Message) -> bool:
        """branch_route_needed() on this request's flags (route_natmanage's inputs)."""
        ksr, in_dialog = self.ksr, msg.in_dialog
        if self.own_branch_route or ksr.isflagset(FLT_NATS):
            return True
        if in_dialog:       # after loose_route(): the Route we put there ourselves
            return branch_route_needed(False, True, ksr.rr.check_route_param(ROUTE_NAT_PARAM) > 0, 0, False)
        extra = int(ksr.pv.gete(BRANCH_COUNT_PV) or 0)      # an int; "" if Kamailio had none
        return branch_route_needed(False, False, False, extra, bool(ksr.isbflagset(FLB_NATB)))
