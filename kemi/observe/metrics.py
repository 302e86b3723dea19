"""The package's Prometheus counters: declared once here, rendered into kamailio-settings.cfg.

Each Counter becomes one `modparam("xhttp_prom", "prom_counter", "name=...; label=...;")`
line (render.py, METRICS_DECLARATIONS) and is incremented by kemi/observe/part.py with
KSR.xhttp_prom.counter_inc_lN(name, 1, label values...). xhttp_prom puts its prefix
(`kamailio_`) in front of every name on /metrics.

Label values are the constants below (or side and gateway names from the settings and the
dispatcher list): never a value a SIP client chooses, so no request can create new series.
"""
from __future__ import annotations

from typing import NamedTuple

from kemi.media.flags import ANSWER, DELETE, OFFER
from kemi.names import METRICS_SOCKET_NAME  # noqa: F401 (the socket serving /metrics: the settings check it)

PROM_PREFIX = "kamailio_"            # xhttp_prom's default xhttp_prom_beginning
METRICS_PATH = "/metrics"


class Counter(NamedTuple):
    name: str
    labels: tuple[str, ...]
    help: str

    @property
    def kind(self) -> str:
        """The xhttp_prom modparam that declares it."""
        return "prom_counter"

    @property
    def declaration(self) -> str:
        """The prom_counter modparam value."""
        label = f" label={':'.join(self.labels)};" if self.labels else ""
        return f"name={self.name};{label}"


class Gauge(Counter):
    """A value set when /metrics is asked (prom_gauge), e.g. calls up now."""

    @property
    def kind(self) -> str:
        return "prom_gauge"


# --- label values ---------------------------------------------------------------------

# kemi_registrations_total{result}
REG_OK = "ok"                        # save() stored the contacts
REG_AUTH_FAILED = "auth_failed"      # wrong password or unknown user
REG_REFUSED = "refused"              # 403: credentials of somebody else, or a foreign domain
REG_ERROR = "error"                  # save() failed (bad Contact/Expires, DB error)
REG_RESULTS = (REG_OK, REG_AUTH_FAILED, REG_REFUSED, REG_ERROR)

# kemi_calls_total{decision, ingress, egress}: initial INVITEs
CALL_CONTACT = "contact"             # relayed to the callee's registered contact(s)
CALL_NOT_FOUND = "not_found"         # 404: no such user
CALL_UNAVAILABLE = "unavailable"     # 480: a subscriber who is not registered
CALL_GATEWAY = "gateway"             # SBC: sent to a gateway set
CALL_NO_GATEWAY = "no_gateway"       # SBC: 503, no active gateway in the set
CALL_FOREIGN_DOMAIN = "foreign_domain"   # an authenticated user's call to another domain
CALL_AUTH_FAILED = "auth_failed"     # wrong password or unknown user (challenged again)
CALL_REJECTED = "rejected"           # 403 / 405 / 484 / an unroutable user (answered here)
CALL_ERROR = "error"                 # 500: the location lookup failed
CALL_LIMITED = "limited"             # refused by a call limit or the call rate (kemi/limits/)
SIDE_NONE = "none"                   # ingress/egress without the SBC, or not left at all

# kemi_replies_503_total{reason}
UNAVAILABLE_NO_GATEWAY = "no_gateway"         # no active gateway in the set at the start
UNAVAILABLE_GATEWAYS_FAILED = "gateways_failed"   # every gateway tried failed (failover)
UNAVAILABLE_RTPENGINE = "rtpengine"           # rtpengine did not answer the offer
UNAVAILABLE_SYNCING = "syncing"               # cluster: the location set is still arriving
UNAVAILABLE_TOPOLOGY = "topology_storage"     # topology hiding: its storage (the database) cannot be used

# kemi_topology_calls_total{result}: new calls that met topology hiding (kemi/topology/)
TOPOLOGY_HIDDEN = "hidden"                    # hidden end to end
TOPOLOGY_STORAGE_DOWN = "storage_down"        # refused (503): topos could not have stored it
TOPOLOGY_CALL_ID_TOO_LONG = "call_id_too_long"  # refused (400): its Call-ID cannot be masked
TOPOLOGY_REDIRECT = "redirect_rewritten"      # a 3xx answered with the SBC's own contacts
TOPOLOGY_RESULTS = (TOPOLOGY_HIDDEN, TOPOLOGY_STORAGE_DOWN, TOPOLOGY_CALL_ID_TOO_LONG, TOPOLOGY_REDIRECT)
UNAVAILABLE_CALL_LIMIT = "call_limit"         # a trunk, gateway or side has its limit of calls up
UNAVAILABLE_CALL_RATE = "call_rate"           # more INVITEs per second than a source / gateway / trunk may send
UNAVAILABLE_LIMITS_FAILED = "limits_failed"   # the call counters could not be used (fails closed)
UNAVAILABLE_OVERLOAD = "overload"             # overload: refused early, the socket queues backed up

# kemi_limit_refusals_total{limit}: the kinds of kemi/limits/calls.py and rate.py, and
LIMIT_FAILED = "failed"              # the counters could not be used: refused all the same
# kemi_limit_calls{limit, key}: calls up per kind, in total (key "all") or per SBC side
LIMIT_KEY_ALL = "all"

# kemi_rtpengine_errors_total{operation, error}
RTP_OFFER, RTP_ANSWER, RTP_DELETE = OFFER, ANSWER, DELETE     # the rtpengine operations' names
RTP_NO_ANSWER = "no_answer"          # no rtpengine answered (503)
RTP_REFUSED = "refused"              # rtpengine refused the SDP (488)
RTP_FAILED = "failed"                # answer / late offer / delete failed (logged, call goes on)
RTP_INSECURE = "insecure"            # media security refused the SDP (488 for an offer), rtpengine not asked

# kemi_bans_total{reason} and kemi_dropped_requests_total{reason}
BAN_FLOOD = "flood"
BAN_SCANNER = "scanner"
BAN_PASSWORD_GUESSING = "password_guessing"
DROP_BANNED = "banned"               # from a banned source (no log line: one per packet)
DROP_FLOOD = "flood"
DROP_SCANNER = "scanner"
DROP_METRICS_SOCKET = "metrics_socket"   # SIP sent to the HTTP metrics socket
DROP_NOT_A_PEER = "not_a_peer"       # cluster: a request on the DMQ socket from no peer
DROP_HEALTH_SOCKET = "health_socket"  # overload: anything but OPTIONS on the health socket

# --- the counters -----------------------------------------------------------------------

REGISTRATIONS = Counter("kemi_registrations_total", ("result",),
                        "REGISTER requests by result (challenges without credentials not counted)")
CALLS = Counter("kemi_calls_total", ("decision", "ingress", "egress"),
                "initial INVITEs by routing decision and SBC side (none: no SBC / answered here)")
GATEWAY_ATTEMPTS = Counter("kemi_gateway_attempts_total", ("gateway",),
                           "INVITEs sent to each gateway (first try and failovers)")
GATEWAY_FAILOVERS = Counter("kemi_gateway_failovers_total", ("gateway",),
                            "gateways given up (408/5xx/no answer) and marked inactive")
REPLIES_503 = Counter("kemi_replies_503_total", ("reason",), "503 replies sent by the routing")
RTPENGINE_ERRORS = Counter("kemi_rtpengine_errors_total", ("operation", "error"),
                           "rtpengine commands that failed")
BANS = Counter("kemi_bans_total", ("reason",), "source addresses banned")
DROPPED = Counter("kemi_dropped_requests_total", ("reason",), "requests dropped without a reply")
TOPOLOGY_CALLS = Counter("kemi_topology_calls_total", ("result",),
                         "new calls that met topology hiding: hidden, or refused and why")

LIMIT_REFUSALS = Counter("kemi_limit_refusals_total", ("limit",),
                         "calls refused by a call limit or call-rate limit (kemi/limits/), by limit")
LIMIT_CALLS = Gauge("kemi_limit_calls", ("limit", "key"),
                    "calls up now per call-limit kind, in total (key=all) or per SBC side")

COUNTERS = (REGISTRATIONS, CALLS, GATEWAY_ATTEMPTS, GATEWAY_FAILOVERS, REPLIES_503,
            RTPENGINE_ERRORS, BANS, DROPPED, TOPOLOGY_CALLS)
# declared only where a limit is configured (kemi/observe/settings.py)
LIMIT_METRICS = (LIMIT_REFUSALS, LIMIT_CALLS)

# series created at 0 when Kamailio starts, so rate() and alerts see them before the first event
INITIAL_SERIES = (
    *((REGISTRATIONS, (r,)) for r in REG_RESULTS),
    *((REPLIES_503, (r,)) for r in (UNAVAILABLE_NO_GATEWAY, UNAVAILABLE_GATEWAYS_FAILED,
                                     UNAVAILABLE_RTPENGINE)),
    *((RTPENGINE_ERRORS, pair) for pair in ((RTP_OFFER, RTP_NO_ANSWER), (RTP_OFFER, RTP_REFUSED),
                                            (RTP_OFFER, RTP_FAILED), (RTP_ANSWER, RTP_FAILED),
                                            (RTP_OFFER, RTP_INSECURE), (RTP_ANSWER, RTP_INSECURE),
                                            (RTP_DELETE, RTP_FAILED))),
    *((BANS, (r,)) for r in (BAN_FLOOD, BAN_SCANNER, BAN_PASSWORD_GUESSING)),
    *((DROPPED, (r,)) for r in (DROP_BANNED, DROP_FLOOD, DROP_SCANNER, DROP_METRICS_SOCKET)),
)
# (the cluster's reasons, DROP_NOT_A_PEER and UNAVAILABLE_SYNCING, DROP_HEALTH_SOCKET and UNAVAILABLE_OVERLOAD appear
# when they first happen)


def full_name(counter: Counter) -> str:
    """The name Prometheus sees."""
    return PROM_PREFIX + counter.name
