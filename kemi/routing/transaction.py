"""What tm calls back while a relayed request is in flight: branch, reply, failure routes.

These are the methods named in t_on_branch/t_on_reply/t_on_failure by route_relay.
"""
from __future__ import annotations

from kemi.names import FLB_NATB, FLT_NATS
from kemi.routing.message import Message


class TransactionRoutes:

    # route[NATMANAGE]: keep NATed parties reachable inside the dialog
    def route_natmanage(self, msg: Message, is_reply: bool = False) -> None:
        ksr = self.ksr
        if not is_reply and msg.in_dialog and ksr.rr.check_route_param("nat=yes") > 0:
            ksr.setbflag(FLB_NATB)
        if not (ksr.isflagset(FLT_NATS) or ksr.isbflagset(FLB_NATB)):
            return
        if not is_reply and not msg.in_dialog and ksr.tmx.t_is_branch_route() > 0:
            ksr.rr.add_rr_param(";nat=yes")
        if is_reply and ksr.isbflagset(FLB_NATB):
            ksr.nathelper.set_contact_alias()

    # branch_route[MANAGE_BRANCH]
    def branch_manage(self, msg: Message) -> None:
        self.route_natmanage(msg)

    # onreply_route[MANAGE_REPLY]
    def onreply_manage(self, msg: Message) -> None:
        status = msg.status
        if isinstance(status, int) and 100 < status < 300:
            self.route_natmanage(msg, is_reply=True)
            self.media_reply(msg)

    # failure_route[MANAGE_FAILURE]
    def failure_manage(self, msg: Message) -> None:
        self.route_natmanage(msg)
        canceled = self.ksr.tm.t_is_canceled() > 0
        # SBC: the next gateway of the set gets the same (already anchored) offer, so the
        # media session is deleted only when the call has really failed
        if not canceled and self.route_sbc_failover(msg):
            return
        self.media_failure(msg, canceled)
