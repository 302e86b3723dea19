"""The routing Kamailio runs: the request path, top to bottom, and the parts it calls.

One method per route of Kamailio's default kamailio.cfg, in its order, each a few lines
that call into a part. The parts are chosen once, here, from the settings: an install
without the SBC has no SBC code on its path, one without media anchoring no rtpengine calls.
Each feature is a folder (its decisions, its KSR part.py, its settings.py):

    self.observe    kemi/observe/    the decision log, metrics (Observer / MeteredObserver), /metrics
    self.screen     kemi/security/   bans, floods, scanners, URI checks, stray replies (NoScreen: security off)
    self.dialogs    kemi/security/   the signed Record-Route
    self.sides      sides.py         where requests come from and go: OneSide (the registrar) or
                    kemi/sbc/        SbcSides (two NICs, gateway sets, failover, direction=)
    self.nat        kemi/nat/        NAT detection and keepalive flags (NoNat: NAT handling off)
    self.registrar  registrar.py     digest auth, save, lookup
    self.media      kemi/media/      rtpengine offer / answer / delete (NoMedia: media off), media security
    self.websocket  kemi/websocket/  the WebSocket handshake for browsers (NoWebSocket: websocket off)
    self.cluster    kemi/cluster/    KDMQ from peers, a starting node's location set (NoCluster: one node)
    self.topology   kemi/topology/   topology hiding: Call-ID, From/To of hidden calls; topos (NoTopology: off)
    self.limits     kemi/limits/     concurrent calls per subscriber, side, trunk, gateway (NoCallLimits: none)
    self.rate       kemi/limits/     INVITEs per second per source, gateway, trunk (NoCallRate: none)
    self.records    kemi/records/    what acc writes per call, the spool replay (NoRecords: records off)
    self.overload   kemi/overload/   new requests refused early while Kamailio is overloaded (NoOverload: off)
    self.health     kemi/overload/   the health socket: OPTIONS answered by its own worker (NoHealthSocket: none)
    self.guard      guard.py         every callback runs guarded: one log line and an answer, never a traceback

A site subclasses Router, overrides the route methods or hooks it needs (the list:
docs/routing.md, "Override points") and names its class in settings python.router.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kemi import sip
from kemi.cluster.part import Cluster, NoCluster
from kemi.compiled import mypyc_attr
from kemi.features import error_reply
from kemi.limits.part import calls_for, rate_for
from kemi.media.part import NoMedia, Rtpengine, build_families, build_security
from kemi.media.view import SdpView
from kemi.message import Message
from kemi.names import BRANCH_ROUTE, DONE, FAILURE_ROUTE, NEXT, ONREPLY_ROUTE
from kemi.nat.part import Nat, NoNat
from kemi.observe.metrics import (
    CALL_CONTACT,
    CALL_FOREIGN_DOMAIN,
    CALL_GATEWAY,
    CALL_REJECTED,
    DROP_METRICS_SOCKET,
    REG_REFUSED,
    SIDE_NONE,
)
from kemi.observe.memory import start_tracing
from kemi.observe.part import memory_probe_for, observer_for
from kemi.overload.part import HealthSocket, NoHealthSocket, NoOverload, Overload
from kemi.records.part import NoRecords, Records
from kemi.routing.guard import ROUTE_OK, Guard
from kemi.routing.registrar import Registrar
from kemi.routing.sides import OneSide, Sides
from kemi.sbc.part import SbcSides
from kemi.store.mysql import Database
from kemi.security.part import NoScreen, RecordRouteSigner, Screen
from kemi.topology.part import topology_for
from kemi.websocket.part import NoWebSocket, WebSocket

if TYPE_CHECKING:
    from kemi.settings import Settings

# the documented media hooks: a subclass overriding one gets rtpengine told what it says (HookedMediaViews)
MEDIA_HOOKS = ("media_directions", "media_profile_name", "media_behind_nat")
# methods that may create a dialog: Record-Route them so in-dialog requests come back here
DIALOG_FORMING = frozenset({"INVITE", "SUBSCRIBE"})
# methods whose transactions get the tm callbacks (as Kamailio's default cfg arms them)
BRANCH_ROUTE_METHODS = frozenset({"INVITE", "BYE", "SUBSCRIBE", "UPDATE"})
ONREPLY_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "UPDATE"})


# compiled (make compile), a site's Router subclass stays plain Python
@mypyc_attr(allow_interpreted_subclasses=True)
class Router:
    """Subclass this for a site's own routing and name it in settings `python.router`."""

    def __init__(self, ksr, settings: Settings, subscribers, dids=None, call_limits=None):
        self.ksr, self.settings, self.subscribers, self.dids = ksr, settings, subscribers, dids
        self.call_limits = call_limits          # the call_limits table (kemi/store/limits.py), or None
        # answers from Kamailio's internal error code: 5.8+ statefully when there is a
        # transaction (sl.send_reply_error), 5.6 statelessly (kemi/features.py); chosen once
        self.reply_error = error_reply(ksr)
        self.observe = observer_for(ksr, settings)
        if settings.sbc.enabled:
            self.sides: Sides = SbcSides(ksr, settings, subscribers, dids, self.observe, self.reply)
        else:
            self.sides = OneSide(settings.media.profile)
        # topology hiding (kemi/topology/): NoTopology when no side hides; its message class
        # carries a hidden call's Call-ID as the routing sees it
        self.topology = topology_for(ksr, settings, self.observe, self.reply)
        self.guard = Guard(ksr, self.reply, self.topology.message_class(self.sides.message_class))
        # overload: a new request is refused (503) before its first costly step while the
        # sockets' queues back up (kemi/overload/, docs/reliability.md)
        self.overload: Overload | NoOverload = Overload(ksr, settings.overload, self.observe) \
            if settings.overload.enabled else NoOverload()
        # the health socket: OPTIONS answered by a worker of its own (kemi/overload/part.py)
        self.health: HealthSocket | NoHealthSocket = HealthSocket(ksr, self.observe) \
            if settings.overload.health_listen else NoHealthSocket()
        screen = Screen if settings.security.enabled else NoScreen
        self.screen = screen(ksr, settings, self.observe, self.reply, self.sides.is_listed_gateway)
        # NAT handling (nat.enabled; NoNat: every party reached on the address it names)
        self.nat: Nat | NoNat = Nat(ksr, settings.nat, websocket=settings.websocket.enabled) \
            if settings.nat.enabled else NoNat()
        ws = settings.websocket
        self.websocket: WebSocket | NoWebSocket = WebSocket(ksr, ws.origins) if ws.enabled else NoWebSocket()
        self.cluster: Cluster | NoCluster = Cluster(ksr, settings, self.observe) if settings.cluster.enabled \
            else NoCluster()
        # a cluster signs with its one secret, so any node passes what another signed
        self.dialogs = RecordRouteSigner(ksr, self.cluster.secret or settings.security.route_secret, self.reply)
        self.registrar = Registrar(ksr, settings.sip.domain, subscribers, self.observe, self.screen, self.nat,
                                   self.reply, self.reply_error, location_complete=self.cluster.location_complete)
        if settings.media.enabled:
            # the media part asks the sides part about each SDP; a subclass overriding a media
            # hook is asked instead, as before the sides part answered (docs/routing.md)
            hooked = HookedMediaViews(self) if self.overrides(*MEDIA_HOOKS) else None
            self.media: Rtpengine | NoMedia = Rtpengine(
                ksr, settings.media, self.observe, self.reply, views=hooked or self.sides, nat=self.nat,
                security=build_security(ksr, settings), sender_nated=hooked.sender_nated if hooked else None,
                families=build_families(ksr, settings))     # IPv4 <-> IPv6 (kemi/media/families.py)
        else:
            self.media = NoMedia()
        # call limits (kemi/limits/): counted right before a new call is relayed; the SBC's failover
        # moves a call's gateway count along. Call rate: after route_auth
        self.limits = calls_for(ksr, settings, self.observe, self.reply, call_limits, self.is_trusted_source,
                                self.sides.is_listed_gateway)
        if isinstance(self.sides, SbcSides):
            self.sides.gateway_limits = self.limits
        self.rate = rate_for(ksr, settings, self.observe, self.reply, self.sides.is_listed_gateway)
        # records: acc's flags and columns where the routing knows them (docs/records.md)
        if settings.records.enabled:
            self.records: Records | NoRecords = Records(
                ksr, settings, is_trusted=self.is_trusted_source, to_gateway=self.sides.failover_possible,
                media_stats=self.media.query_stats if isinstance(self.media, Rtpengine) else None,
                database=Database(settings.database.all_connect_args(), log=ksr.err))
        else:
            self.records = NoRecords()
        # route_relay arms a tm callback only when it has work (each entry into Python costs):
        # a subclass's own branch, reply or failure route gets it on every relay, as it always did
        self.own_branch_route = self.overrides("ksr_branch_manage", "branch_manage", "route_natmanage")
        self.own_reply_route = self.overrides("ksr_onreply_manage", "onreply_manage", "route_natmanage")
        self.own_failure_route = self.overrides("ksr_failure_manage", "failure_manage", "route_natmanage")
        # debug hook (metrics.python_memory_interval, off by default): each process reports what
        # its Python holds every N s (kemi/observe/memory.py, make soak); off, nothing is wrapped
        self.memory_probe = memory_probe_for(settings)
        if self.memory_probe is not None:
            self.ksr_request_route = self.memory_probe.wrap(self.ksr_request_route)  # type: ignore[method-assign]

    def overrides(self, *names: str) -> bool:
        """A subclass replaces one of these Router methods."""
        return any(getattr(type(self), name) is not getattr(Router, name) for name in names)

    def child_init(self, rank: int) -> int:
        if self.memory_probe is not None:
            start_tracing()
        try:
            self.observe.create_series(rank)
        except Exception as exc:          # metrics must never stop Kamailio from starting
            self.ksr.err(f"kemi: metrics: initial series not created: {exc}\n")
        self.records.child_init(rank)
        return 0

    def take_over(self, previous: Router) -> None:
        """A live reload (kemi/reload.py): keep what this Kamailio run must not lose, the random
        Record-Route secret, so calls set up before the reload keep passing route_withindlg."""
        self.dialogs.run_secret = previous.run_secret

    def close(self) -> None:
        """A live reload replaced this router: its MySQL connection closes now. (The parts hold
        the Router's reply hook, so the router is freed by Python's cyclic GC, not at once.)"""
        for store in (self.subscribers, self.dids, self.topology, self.call_limits):
            close = getattr(store, "close", None)      # a site's or a test's directory may have none
            if close is not None:
                close()

    # --- what Kamailio calls: each runs guarded (guard.py) ---------------------------------------

    def ksr_request_route(self, _msg) -> int:
        return self.guard.run("request_route", self.route_request, answer=True)

    def ksr_reply_route(self, _msg) -> int:
        return self.guard.run("reply_route", self.reply_screen)

    def ksr_on_sl_reply(self, _msg, _event=None) -> int:
        """tm's on_sl_reply: only replies that match no transaction (kamailio.cfg), so the
        stray-reply drop costs no entry into Python for every other reply."""
        return self.guard.run("on_sl_reply", self.reply_screen)

    def ksr_onsend_route(self, _msg) -> int:
        return ROUTE_OK

    def ksr_branch_manage(self, _msg) -> int:
        return self.guard.run("branch_route", self.branch_manage)

    def ksr_onreply_manage(self, _msg) -> int:
        return self.guard.run("onreply_route", self.onreply_manage)

    def ksr_failure_manage(self, _msg) -> int:
        return self.guard.run("failure_route", self.failure_manage, answer=True)

    def ksr_topos_event(self, _msg=None, _event: str = "") -> int:
        """topos's event_callback (kamailio-common.cfg, when one SBC side hides): before topos
        strips an outgoing message. A failure here leaves topos to hide it: hiding more than
        needed is safe."""
        try:
            self.topology.topos_event()
        except Exception as exc:
            self.ksr.err(f"kemi: topos event callback raised {type(exc).__name__}: {exc}; "
                         f"the message is hidden\n")
        return ROUTE_OK

    def ksr_records_replay(self, _msg=None, _event: str = "") -> int:
        """rtimer's process (records on): records spooled while the database was down go in."""
        try:
            self.records.replay()
        except Exception as exc:
            self.ksr.err(f"kemi: records: spool replay failed: {type(exc).__name__}: {exc}\n")
        return ROUTE_OK

    def ksr_xhttp_event(self, _msg, _event: str = "") -> int:
        """xhttp's event_callback (kamailio.cfg, with metrics or WebSocket on): an HTTP request."""
        msg = Message(self.ksr)
        try:
            self.route_xhttp(msg)
        except Exception as exc:
            self.handler_failed("xhttp_request", msg, exc)
            self.ksr.xhttp.xhttp_reply(500, "Internal Server Error", "text/plain", "error\n")
        return ROUTE_OK

    # --- request_route: the request path ---------------------------------------------------------
    # Each route returns NEXT (go on) or DONE (answered, relayed or dropped).

    def route_request(self, msg: Message) -> None:
        ksr = self.ksr
        if self.health.answers(msg):                # the health socket: OPTIONS only, nothing routed
            return
        if self.observe.is_metrics_socket(msg):     # SIP on the HTTP metrics socket: never routed
            ksr.info(f"kemi: request on the metrics socket dropped: {msg.describe()}\n")
            self.observe.note_drop(DROP_METRICS_SOCKET)
            return
        if not self.route_cluster(msg):
            return
        if not self.route_sbc_ingress(msg):
            return
        if not self.route_reqinit(msg):
            return
        self.topology.arriving(msg)                 # a hidden call's far side: its masked Call-ID
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
            if not self.overload.admit(msg):        # overloaded: 503 + Retry-After, nothing else done
                return
        if not self.route_auth(msg):
            return
        if not self.route_call_rate(msg):           # limits: INVITEs per second (kemi/limits/)
            return
        ksr.hdr.remove("Route")                     # preloaded routes are not honoured
        if msg.method in DIALOG_FORMING:
            ksr.rr.record_route()
            self.dialogs.sign(msg)
        self.records.on_call(msg)                   # records: an INVITE is a call from here on
        if not self.route_sbc(msg):
            return
        if not self.route_sipout(msg):
            return
        if not self.route_registrar(msg):
            return
        if not msg.ruri_user:
            self.reply(sip.ADDRESS_INCOMPLETE)
            self.observe.note_call(msg, CALL_REJECTED, sip.ADDRESS_INCOMPLETE.code)
            return
        self.route_location(msg)

    # (cluster): KDMQ from a peer on the DMQ socket goes to dmq; a stranger there is dropped
    def route_cluster(self, msg: Message) -> bool:
        return self.cluster.takes(msg)

    # (SBC ingress): which NIC it came from; a source on neither side gets 403
    def route_sbc_ingress(self, msg: Message) -> bool:
        return self.sides.accept(msg)

    # route[REQINIT]
    def route_reqinit(self, msg: Message) -> bool:
        ksr = self.ksr
        if not self.screen.admit(msg):              # bans, floods, scanners: dropped silently
            return DONE
        if not self.screen.validate(msg):           # URI scheme (416), Proxy-Require (420)
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
        self.nat.detect(msg)

    # route[WITHINDLG]
    def route_withindlg(self, msg: Message) -> bool:
        ksr = self.ksr
        if not msg.in_dialog:
            return NEXT
        if ksr.rr.loose_route() > 0:
            if not self.dialogs.signed(msg):        # a forged Route: no relaying for strangers
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

    # route[AUTH]
    def route_auth(self, msg: Message) -> bool:
        if self.is_trusted_source(msg):
            return NEXT
        return self.registrar.authenticate(msg)

    # (call rate): a new call from a trusted or authenticated source, per second (kemi/limits/)
    def route_call_rate(self, msg: Message) -> bool:
        return self.rate.admit(msg)

    # route[SBC]: the other side's gateway set, or a DID mapped to an extension (SBC only)
    def route_sbc(self, msg: Message) -> bool:
        gateways = self.sides.gateways_for(msg, self.is_trusted_source)
        if gateways is None:
            return NEXT                             # on to SIPOUT / REGISTRAR / LOCATION
        # limits: counted (and maybe refused) with the gateway the dispatcher picked
        if self.sides.select_gateway(msg, gateways) and self.limits.admit(msg, trunk=gateways):
            self.route_relay(msg)
            self.observe.note_call(msg, CALL_GATEWAY, egress=gateways.name)
        return DONE

    # route[SIPOUT]: requests for foreign domains (authenticated local users only get here)
    def route_sipout(self, msg: Message) -> bool:
        if self.ksr.is_myself_ruri():
            return NEXT
        if msg.method == "REGISTER":
            self.reply(sip.NOT_RELAYING)
            self.observe.note_registration(msg, REG_REFUSED, sip.NOT_RELAYING.code)
            return DONE
        if not self.limits.admit(msg):              # limits: the caller's calls
            return DONE
        self.route_relay(msg)
        self.observe.note_call(msg, CALL_FOREIGN_DOMAIN, egress=msg.egress or SIDE_NONE)
        return DONE

    # route[REGISTRAR]
    def route_registrar(self, msg: Message) -> bool:
        if msg.method != "REGISTER":
            return NEXT
        self.registrar.save(msg)
        return DONE

    # route[LOCATION]
    def route_location(self, msg: Message) -> None:
        callee = msg.ruri_user                       # before lookup() rewrites the R-URI
        # else answered: 404 / 480 / 405 / 500; or refused by a call limit (kemi/limits/)
        if self.registrar.find_contacts(msg) and self.limits.admit(msg, callee=callee):
            self.route_relay(msg)
            self.observe.note_call(msg, CALL_CONTACT, egress=msg.egress or SIDE_NONE)

    # route[RELAY]
    def route_relay(self, msg: Message) -> None:
        ksr, method = self.ksr, msg.method
        self.sides.leaving(msg)                     # SBC: the side it leaves through (media needs it)
        if not self.topology.relaying(msg):         # topology hiding: 503 when its storage is down
            return
        self.records.on_relay(msg)                  # records: where it goes; a BYE's media figures
        if not self.media.on_request(msg):          # rtpengine offer / answer / delete
            return
        # each tm callback only when it has work there: NAT (nat.py), media, SBC failover
        nat_branch, nat_reply = self.nat.tm_work(msg) if method in BRANCH_ROUTE_METHODS else (False, False)
        if method in BRANCH_ROUTE_METHODS and (self.own_branch_route or nat_branch
                                               or self.topology.wants_branch(msg)) \
                and ksr.tm.t_is_set("branch_route") < 0:
            ksr.tm.t_on_branch(BRANCH_ROUTE)
        # a hidden call's every reply: its Call-ID is flipped (topology.on_reply)
        if (method in ONREPLY_ROUTE_METHODS and (self.own_reply_route or self.media.wants_replies or nat_reply)
                or self.topology.wants_replies(msg)) and ksr.tm.t_is_set("onreply_route") < 0:
            ksr.tm.t_on_reply(ONREPLY_ROUTE)
        if method == "INVITE" and (self.own_failure_route or self.media.wants_failures
                                   or self.records.wants_failures or self.sides.failover_possible(msg)
                                   or self.topology.wants_failures(msg)) \
                and ksr.tm.t_is_set("failure_route") < 0:
            ksr.tm.t_on_failure(FAILURE_ROUTE)
        if ksr.tm.t_relay() < 0:
            self.media.relay_failed(msg)
            self.reply_error()

    # --- what tm calls back while a relayed request is in flight ---------------------------------

    # route[NATMANAGE]: keep NATed parties reachable inside the dialog
    def route_natmanage(self, msg: Message, is_reply: bool = False) -> None:
        self.nat.manage(msg, is_reply)

    # branch_route[MANAGE_BRANCH]
    def branch_manage(self, msg: Message) -> None:
        self.topology.on_branch(msg)                # a hidden gateway call: the gateway as R-URI host
        self.route_natmanage(msg)

    # onreply_route[MANAGE_REPLY]
    def onreply_manage(self, msg: Message) -> None:
        self.topology.on_reply(msg)                 # a hidden call: the reply's Call-ID flipped
        status = msg.status
        if isinstance(status, int) and 100 < status < 300:
            self.route_natmanage(msg, is_reply=True)
            self.media.on_reply(msg)

    # failure_route[MANAGE_FAILURE]
    def failure_manage(self, msg: Message) -> None:
        self.route_natmanage(msg)
        canceled = self.ksr.tm.t_is_canceled() > 0
        self.records.on_failure(msg, canceled)      # records: the failed answer's Reason, who ended it
        # SBC: the next gateway of the set gets the same (already anchored) offer, so the
        # media session is deleted only when the call has really failed
        if not canceled and self.sides.failover(msg):
            self.records.on_failover(msg)
            return
        self.topology.failed(msg, canceled)         # a hidden call's 3xx: the SBC's own contacts
        self.media.on_failure(msg, canceled)

    # tm on_sl_reply: a reply that matches no transaction of ours is dropped
    def reply_screen(self, msg: Message) -> None:
        self.screen.drop_stray_reply(msg)

    # event_route[xhttp:request]: the WebSocket handshake on the ws/wss sockets, /metrics on
    # the metrics socket, 404 for anything else
    def route_xhttp(self, msg: Message) -> None:
        if not self.websocket.serve_http(msg):
            self.observe.serve_http(msg)

    # --- hooks a site may override -----------------------------------------------------------------

    def reply(self, reply: sip.Reply) -> None:
        """Answer the current request (statefully if a transaction exists)."""
        unaccounted = self.records.refusing(reply)  # records: a call refused here
        self.ksr.sl.send_reply(reply.code, reply.reason)
        if unaccounted:
            self.records.refused(reply)

    def is_trusted_source(self, msg: Message) -> bool:
        """Sources allowed without digest auth: nobody on the registrar, the side's listed
        gateways (by IP, never for REGISTER) on the SBC."""
        return self.sides.trusts(msg)

    def call_sides(self, msg: Message):
        """SBC: CallSides(ingress, egress) of the transaction `msg` belongs to (None: unknown,
        or no SBC)."""
        return self.sides.call_sides(msg)

    # What rtpengine is told about one SDP (docs/media.md). The media part asks the sides part
    # directly (SdpView); these three stay as override points: a subclass overriding one is
    # asked instead (HookedMediaViews), and these defaults answer what the sides part does.

    def media_directions(self, msg: Message, is_reply: bool = False) -> dict:
        """rtpengine interfaces for this message's SDP (offer or answer): {} (the default
        interface) or {"ingress": NAME, "egress": NAME}, ingress being the interface of the
        SDP's sender, and optionally "extra": more flags. is_reply: the SDP is in a reply
        (sent by the callee's side)."""
        directions = self.sides.media_view(msg, is_reply).directions
        return {} if directions is None else {"ingress": directions[0], "egress": directions[1]}

    def media_profile_name(self, msg: Message) -> str:
        """The [media.profiles] entry for this message's SDP (default: media.profile)."""
        return self.sides.media_view(msg, msg.is_reply).profile

    def media_behind_nat(self, msg: Message, is_reply: bool = False) -> bool:
        """The sender of this message's SDP is behind NAT (rtpengine: SIP-source-address
        instead of trust-address). A listed SBC gateway never is."""
        if self.sides.media_view(msg, is_reply).sender_is_gateway:
            return False
        return self.nat.sdp_sender_nated(msg, is_reply)

    def handler_failed(self, route: str, msg: Message, exc: BaseException, answer: bool = False) -> None:
        """One log line with the Call-ID and where it failed; a 500 unless it is an ACK."""
        self.guard.failed(route, msg, exc, answer)

    @property
    def route_secret(self) -> str:
        """The Record-Route signing secret in use (security.route_secret, else this run's)."""
        return self.dialogs.secret

    @property
    def run_secret(self) -> str:
        return self.dialogs.run_secret


class HookedMediaViews:
    """The media view when a Router subclass overrides a media hook (MEDIA_HOOKS): its
    directions, profile and NAT answer are the hooks', the rest (whether a gateway sent the SDP,
    the sides' media security) the sides part's."""

    def __init__(self, router: Router):
        self.router = router

    def media_view(self, msg: Message, is_reply: bool) -> SdpView:
        router = self.router
        base = router.sides.media_view(msg, is_reply)
        asked = dict(router.media_directions(msg, is_reply))
        extra = tuple(asked.pop("extra", ()))
        ingress, egress = asked.pop("ingress", None), asked.pop("egress", None)
        if asked:
            raise TypeError(f"media_directions() returned unknown keys {sorted(asked)}; "
                            f"use ingress, egress and extra")
        if (ingress is None) != (egress is None):
            raise ValueError("direction needs both interfaces: ingress and egress")
        return SdpView(directions=None if ingress is None else (ingress, egress),
                       profile=router.media_profile_name(msg), sender_is_gateway=base.sender_is_gateway,
                       securities=base.securities, extra=extra)

    def sender_nated(self, msg: Message, is_reply: bool, view: SdpView) -> bool:
        return self.router.media_behind_nat(msg, is_reply)
