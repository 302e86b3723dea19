"""The observer part: the decision log and metrics at the routes' decision points, and /metrics.

note_*           one call per decision point: writes its decision log line when the log is
                 on (kemi/observe/decisions.py) and, in MeteredObserver, moves its counter
                 (kemi/observe/metrics.py)
serve_http       event_route[xhttp:request] (Router.route_xhttp): /metrics on the metrics
                 socket only (xhttp_prom renders it), 404 for anything else. HTTP never
                 reaches request_route: xhttp takes it before the SIP routing.

Chosen once (observer_for): Observer when metrics are off (nothing counted, no test per
event), MeteredObserver when they are on (one KSR.xhttp_prom call with constant arguments
per event; request_route reads $Rn once to refuse SIP on the metrics socket). The decision
log is switched at runtime (kamcmd), so it costs one KSR.pv read per decision while off;
the line is built only when it is on.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable

from kemi.message import Message
from kemi.names import DECISION_LOG_PV, DS_CURRENT_GATEWAY, METRICS_SOCKET_NAME
from kemi.observe import decisions as dlog
from kemi.observe.memory import MEMORY_DIR, MemoryProbe
from kemi.observe.metrics import (
    BAN_FLOOD,
    BAN_PASSWORD_GUESSING,
    BAN_SCANNER,
    BANS,
    CALL_AUTH_FAILED,
    CALL_LIMITED,
    CALL_REJECTED,
    CALLS,
    DROPPED,
    GATEWAY_ATTEMPTS,
    GATEWAY_FAILOVERS,
    INITIAL_SERIES,
    LIMIT_REFUSALS,
    REG_AUTH_FAILED,
    REG_REFUSED,
    REGISTRATIONS,
    REPLIES_503,
    RTPENGINE_ERRORS,
    SIDE_NONE,
    TOPOLOGY_CALLS,
    Gauge,
)
from kemi.security.ban import Reason, is_failed_guess

if TYPE_CHECKING:
    from kemi.settings import Settings

HTTP_NOT_FOUND = (404, "Not Found", "text/plain", "Not Found\n")
RURI_PV = "$ru"
DESTINATION_PV = "$du"
BAN_LABELS = {Reason.FLOOD: BAN_FLOOD, Reason.SCANNER: BAN_SCANNER,
              Reason.PASSWORD_GUESSING: BAN_PASSWORD_GUESSING}
# auth_challenge's reply: 401 for REGISTER, 407 for anything else
REGISTER_CHALLENGE_CODE = 401
PROXY_CHALLENGE_CODE = 407
# app_python3's child_init rank of the first SIP worker: it creates the initial series once
PROC_SIPINIT = 1


def memory_probe_for(settings: Settings) -> MemoryProbe | None:
    """The soak's debug hook (metrics.python_memory_interval > 0), else None: chosen once."""
    interval = settings.metrics.python_memory_interval
    return MemoryProbe(Path(settings.runtime.dir) / MEMORY_DIR, interval) if interval > 0 else None


def observer_for(ksr, settings: Settings) -> Observer:
    """MeteredObserver with metrics on, else Observer: chosen once, like every part."""
    return (MeteredObserver if settings.metrics.enabled else Observer)(ksr, settings)


class Observer:
    """metrics.enabled = false: the decision log only."""

    def __init__(self, ksr, settings: Settings):
        self.ksr = ksr
        # KSR.info or KSR.notice, looked up once
        self.write_decision = getattr(ksr, settings.logging.decision_level)
        # what a part sets just before /metrics is rendered (gauges: the call limits' calls up)
        self.before_scrape: list[Callable[[], None]] = []

    def create_series(self, rank: int) -> None:
        """child_init: the counters' initial series (MeteredObserver)."""

    # event_route[xhttp:request]
    def serve_http(self, msg: Message) -> None:
        # any path, on any socket: xhttp answers HTTP on every TCP socket
        self.ksr.xhttp.xhttp_reply(*HTTP_NOT_FOUND)

    def is_metrics_socket(self, msg: Message) -> bool:
        """request_route: a SIP request on the metrics socket (dropped, never routed)."""
        return False

    # --- one helper per event ---------------------------------------------------------------

    def note_registration(self, msg: Message, result: str, code: int) -> None:
        if self.decision_log_on():
            self.log_decision(msg, dlog.EVENT_REGISTER, result, code)

    def note_call(self, msg: Message, decision: str, code: int = 0, egress: str = SIDE_NONE) -> None:
        """An initial request's routing decision (counted for INVITEs: the calls)."""
        if self.decision_log_on():
            self.log_decision(msg, dlog.EVENT_CALL, decision, code, egress=egress)

    def note_wrong_credentials(self, msg: Message, auth_result: int) -> None:
        """route_auth: auth_check failed. Only a wrong password or an unknown user counts; a
        request without credentials (every phone's first try) or with a stale nonce does not."""
        if not is_failed_guess(auth_result):
            return
        if msg.method == "REGISTER":
            self.note_registration(msg, REG_AUTH_FAILED, REGISTER_CHALLENGE_CODE)
        else:
            self.note_call(msg, CALL_AUTH_FAILED, PROXY_CHALLENGE_CODE)

    def note_rejected(self, msg: Message, code: int) -> None:
        """An initial request refused here (403 ...): a registration or a call rejected."""
        if msg.method == "REGISTER":
            self.note_registration(msg, REG_REFUSED, code)
        else:
            self.note_call(msg, CALL_REJECTED, code)

    def note_gateway_attempt(self) -> None:
        """After ds_select_dst / ds_next_dst: the gateway the INVITE goes to now."""

    def note_failover(self, msg: Message, gateway: str, code: int) -> None:
        if self.decision_log_on():
            self.log_decision(msg, dlog.EVENT_FAILOVER, "next_gateway", code, gateway=gateway)

    def note_503(self, msg: Message, reason: str) -> None:
        if self.decision_log_on():
            self.log_decision(msg, dlog.EVENT_UNAVAILABLE, reason, 503)

    def note_limited(self, msg: Message, limit: str, code: int, key: str = "", unavailable: str = "") -> None:
        """A call refused by a call limit or the call rate (kemi/limits/): `limit` says which
        (caller, trunk, rate_source, failed, ...), `key` the name it counted (a username, side,
        address); `unavailable`: the kemi_replies_503_total reason of a 503."""
        if self.decision_log_on():
            self.log_decision(msg, dlog.EVENT_CALL, CALL_LIMITED, code, limit=limit, key=key)

    def set_gauge(self, gauge: Gauge, value: int, *labels: str) -> None:
        """A gauge's value now (MeteredObserver; called from a before_scrape hook)."""

    def note_rtpengine_error(self, operation: str, error: str) -> None:
        """An rtpengine command failed (logged by the media part)."""

    def note_ban(self, reason: Reason) -> None:
        """A source was banned (logged by the screen)."""

    def note_drop(self, reason: str) -> None:
        """A request dropped without a reply."""

    def note_topology(self, result: str) -> None:
        """A new call met topology hiding (kemi/topology/): hidden, or refused and why (the
        refusals are in the decision log through note_503 / note_call)."""

    # --- the decision log -----------------------------------------------------------------

    def decision_log_on(self) -> bool:
        """The runtime switch (kamcmd cfg.seti kemi_log decisions 1|0): one KSR call."""
        return dlog.is_on(self.ksr.pv.gete(DECISION_LOG_PV))

    def log_decision(self, msg: Message, event: str, decision: str, code: int,
                     egress: str = SIDE_NONE, gateway: str = "", **extra: str) -> None:
        fields = {
            "decision": decision,
            "code": code,
            "method": msg.printable("$rm"),
            "call_id": msg.printable("$ci"),
            "source": f"{msg.source_ip}:{msg.source_port}",
            "ingress": msg.ingress.name if msg.ingress is not None else SIDE_NONE,
            "egress": egress,
            # after lookup / ds_select_dst: where it went; else what was asked for
            "target": gateway or self.current_target(),
            **extra,
        }
        self.write_decision(dlog.decision_line(event, fields))

    def current_target(self) -> str:
        """$du, else $ru, read now (lookup / ds_select_dst changed them after Message cached $ru)."""
        pv = self.ksr.pv
        try:
            return pv.gete(DESTINATION_PV) or pv.gete(RURI_PV)
        except UnicodeDecodeError:
            return "?"


class MeteredObserver(Observer):
    """metrics.enabled = true: each event also moves its Prometheus counter (xhttp_prom)."""

    def create_series(self, rank: int) -> None:
        """child_init: the known label sets at 0 (inc by 0 never loses a count, so a race is harmless)."""
        if rank != PROC_SIPINIT:
            return
        prom = self.ksr.xhttp_prom
        for counter, labels in INITIAL_SERIES:
            getattr(prom, f"counter_inc_l{len(labels)}")(counter.name, 0, *labels)

    def serve_http(self, msg: Message) -> None:
        ksr = self.ksr
        if msg.received_socket_name == METRICS_SOCKET_NAME and ksr.xhttp_prom.check_uri() > 0:
            for refresh in self.before_scrape:
                refresh()
            ksr.xhttp_prom.dispatch()
            return
        # any other path, or /metrics asked on a SIP socket
        super().serve_http(msg)

    def is_metrics_socket(self, msg: Message) -> bool:
        return msg.received_socket_name == METRICS_SOCKET_NAME

    def note_registration(self, msg: Message, result: str, code: int) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(REGISTRATIONS.name, 1, result)
        super().note_registration(msg, result, code)

    def note_call(self, msg: Message, decision: str, code: int = 0, egress: str = SIDE_NONE) -> None:
        if msg.method == "INVITE":
            ingress = msg.ingress.name if msg.ingress is not None else SIDE_NONE
            self.ksr.xhttp_prom.counter_inc_l3(CALLS.name, 1, decision, ingress, egress)
        super().note_call(msg, decision, code, egress)

    def note_gateway_attempt(self) -> None:
        gateway = self.ksr.pv.gete(DS_CURRENT_GATEWAY)
        self.ksr.xhttp_prom.counter_inc_l1(GATEWAY_ATTEMPTS.name, 1, gateway)

    def note_failover(self, msg: Message, gateway: str, code: int) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(GATEWAY_FAILOVERS.name, 1, gateway)
        super().note_failover(msg, gateway, code)

    def note_503(self, msg: Message, reason: str) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(REPLIES_503.name, 1, reason)
        super().note_503(msg, reason)

    def note_rtpengine_error(self, operation: str, error: str) -> None:
        self.ksr.xhttp_prom.counter_inc_l2(RTPENGINE_ERRORS.name, 1, operation, error)

    def note_limited(self, msg: Message, limit: str, code: int, key: str = "", unavailable: str = "") -> None:
        prom = self.ksr.xhttp_prom
        prom.counter_inc_l1(LIMIT_REFUSALS.name, 1, limit)
        if msg.method == "INVITE":
            ingress = msg.ingress.name if msg.ingress is not None else SIDE_NONE
            prom.counter_inc_l3(CALLS.name, 1, CALL_LIMITED, ingress, SIDE_NONE)
        if unavailable:
            prom.counter_inc_l1(REPLIES_503.name, 1, unavailable)
        super().note_limited(msg, limit, code, key, unavailable)

    def set_gauge(self, gauge: Gauge, value: int, *labels: str) -> None:
        getattr(self.ksr.xhttp_prom, f"gauge_set_l{len(labels)}")(gauge.name, str(value), *labels)

    def note_ban(self, reason: Reason) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(BANS.name, 1, BAN_LABELS[reason])

    def note_drop(self, reason: str) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(DROPPED.name, 1, reason)

    def note_topology(self, result: str) -> None:
        self.ksr.xhttp_prom.counter_inc_l1(TOPOLOGY_CALLS.name, 1, result)
