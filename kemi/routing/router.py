"""The object Kamailio calls: one method per cfg route, each guarded against exceptions.

Kamailio 5.6's app_python3 looks these methods up by name: ksr_request_route,
ksr_reply_route, ksr_onsend_route (mandatory on 5.6 while their core callbacks are on;
kamailio.cfg turns both off, see kemi.reply_route_callback there), child_init, and the tm
callbacks named in t_on_branch/t_on_reply/t_on_failure. Each builds a Message, runs the route, and turns
any exception into one log line with the Call-ID plus, for a request, a 500 reply: an
exception escaping to Kamailio would leave the caller waiting for a timeout.
"""
from __future__ import annotations

import traceback

from kemi import sip
from kemi.routing.media import MediaRoutes
from kemi.routing.message import Message, UndecodableValue, loggable
from kemi.routing.observe import ObserveRoutes
from kemi.routing.registrar import RegistrarRoutes
from kemi.routing.request import RequestRoutes
from kemi.routing.sbc import SbcRoutes
from kemi.routing.sbc_media import SbcMediaRoutes
from kemi.routing.security import SecurityRoutes
from kemi.routing.transaction import TransactionRoutes
from kemi.settings import Settings

ROUTE_OK = 1     # what a ksr_* entry point returns to Kamailio


class Router(SbcMediaRoutes, SbcRoutes, RequestRoutes, RegistrarRoutes, MediaRoutes, TransactionRoutes,
             SecurityRoutes, ObserveRoutes):
    """Subclass this for a site's own routing and name it in settings `python.router`.

    SbcRoutes comes first: its is_trusted_source (gateways) replaces the registrar's;
    SbcMediaRoutes answers MediaRoutes' hooks (direction=, profile, NAT) for SBC calls.
    """

    def __init__(self, ksr, settings: Settings, subscribers, dids=None):
        self.ksr = ksr
        self.settings = settings
        self.subscribers = subscribers
        self.init_sbc(dids)
        self.init_observe()
        # a subclass's own branch route runs on every branch, as it always did (route_relay
        # otherwise arms it only when the NAT handling in it has work: branch_route_needed)
        cls = type(self)
        self.own_branch_route = (cls.ksr_branch_manage is not Router.ksr_branch_manage
                                 or cls.branch_manage is not TransactionRoutes.branch_manage
                                 or cls.route_natmanage is not TransactionRoutes.route_natmanage)

    def child_init(self, rank: int) -> int:
        try:
            self.init_metric_series(rank)
        except Exception as exc:          # metrics must never stop Kamailio from starting
            self.ksr.err(f"kemi: metrics: initial series not created: {exc}\n")
        return 0

    # --- entry points --------------------------------------------------------------------

    def ksr_request_route(self, _msg) -> int:
        return self._guarded("request_route", self.route_request, answer=True)

    def ksr_reply_route(self, _msg) -> int:
        return self._guarded("reply_route", self.reply_screen)

    def ksr_on_sl_reply(self, _msg, _event=None) -> int:
        """tm's on_sl_reply: only replies that match no transaction (kamailio.cfg), so the
        stray-reply drop costs no entry into Python for every other reply."""
        return self._guarded("on_sl_reply", self.reply_screen)

    def ksr_onsend_route(self, _msg) -> int:
        return ROUTE_OK

    def ksr_branch_manage(self, _msg) -> int:
        return self._guarded("branch_route", self.branch_manage)

    def ksr_onreply_manage(self, _msg) -> int:
        return self._guarded("onreply_route", self.onreply_manage)

    def ksr_failure_manage(self, _msg) -> int:
        return self._guarded("failure_route", self.failure_manage, answer=True)

    def ksr_xhttp_event(self, _msg, _event: str = "") -> int:
        """xhttp's event_callback (kamailio.cfg, with metrics on): an HTTP request."""
        msg = Message(self.ksr)
        try:
            self.route_xhttp(msg)
        except Exception as exc:
            self.handler_failed("xhttp_request", msg, exc)
            self.ksr.xhttp.xhttp_reply(500, "Internal Server Error", "text/plain", "error\n")
        return ROUTE_OK

    def _guarded(self, route: str, handler, answer: bool = False) -> int:
        """Run one route on a fresh Message; no exception ever reaches Kamailio.

        With `answer` (routes that own a request), a failure is answered: 400 for bytes
        that are not UTF-8, 500 for anything else.
        """
        msg = Message(self.ksr)
        try:
            handler(msg)
        except UndecodableValue as exc:
            if answer:
                self.refuse_undecodable(msg, exc)
            else:
                self.handler_failed(route, msg, exc)
        except Exception as exc:
            self.handler_failed(route, msg, exc, answer=answer)
        return ROUTE_OK

    # --- shared helpers ------------------------------------------------------------------

    def reply(self, reply: sip.Reply) -> None:
        """Answer the current request (statefully if a transaction exists)."""
        self.ksr.sl.send_reply(reply.code, reply.reason)

    def refuse_undecodable(self, msg: Message, exc: UndecodableValue) -> None:
        """Bytes that are not UTF-8 where SIP wants UTF-8: 400 (no answer to an ACK), one line."""
        self.ksr.info(f"kemi: bad request, {exc.spec} is not UTF-8, answered 400: {msg.describe()}\n")
        if msg.printable("$rm") != "ACK":
            self.reply(sip.BAD_REQUEST)

    def handler_failed(self, route: str, msg: Message, exc: BaseException, answer: bool = False) -> None:
        """One log line with the Call-ID and where it failed; a 500 unless it is an ACK."""
        ksr = self.ksr
        try:
            call_id, method = msg.printable("$ci"), msg.printable("$rm")
        except Exception:  # the message itself may be what broke
            call_id, method = "?", "?"
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
        ksr.err(loggable(f"kemi: {route} raised {type(exc).__name__}: {exc} [call-id={call_id} "
                         f"method={method}] at {where}") + "\n")
        if answer and method != "ACK":
            try:
                self.reply(sip.SERVER_ERROR)
            except Exception as reply_exc:
                ksr.err(f"kemi: could not send 500 for call-id={call_id}: {reply_exc}\n")
