"""The overload part: refuse a new request early, in C, while Kamailio's socket queues back up.

admit   route_request, after the in-dialog, CANCEL and retransmission steps, before AUTH:
        pipelimit's pipe (NETWORK algorithm, kemi/overload/admission.py) says whether the
        sockets' queues were over the limit at its last look; if so a request without
        credentials gets pipelimit's stateless 503 with Retry-After and the request path ends,
        before any database query, rtpengine call or transaction (one with credentials, the
        second half of a challenged registration or call, is finished).

health    first step of route_request, with overload.health_listen: on the health socket
          (its own worker: Kamailio gives every UDP socket its own receivers, and the rendered
          socket_workers=1 gives this one a single one) an OPTIONS gets 200 and anything else is
          dropped without a reply (counted, logged once per 10 s per process). When the SIP
          sockets' queues are full, an OPTIONS there waits behind everything or is dropped by
          the kernel; on the health socket it is all that is queued, so a load balancer's or
          monitor's probe is answered at once, and "not answered" means stuck, not busy.

Chosen once (Router.__init__): Overload with overload.enabled, NoOverload without (pipelimit is
then not even loaded); HealthSocket with overload.health_listen, NoHealthSocket without.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kemi import sip
from kemi.message import Message
from kemi.names import HEALTH_SOCKET_NAME, OVERLOAD_PIPE
from kemi.observe.metrics import DROP_HEALTH_SOCKET, UNAVAILABLE_OVERLOAD
from kemi.overload.admission import ALGORITHM, CREDENTIAL_HEADERS, LOG_EVERY_S, log_due, over_limit

if TYPE_CHECKING:
    from kemi.observe.part import Observer
    from kemi.overload.settings import OverloadSettings


class Overload:
    def __init__(self, ksr, settings: OverloadSettings, observe: Observer):
        self.ksr, self.observe = ksr, observe
        self.queue_limit, self.retry_after = settings.queue_limit, settings.retry_after
        self.last_logged: float | None = None

    def admit(self, msg: Message) -> bool:
        ksr = self.ksr
        if not over_limit(ksr.pipelimit.pl_check_limit(OVERLOAD_PIPE, ALGORITHM, self.queue_limit)):
            return True
        if any(ksr.hdr.is_present(name) > 0 for name in CREDENTIAL_HEADERS):
            return True                 # the challenged half is done: finish it
        ksr.pipelimit.pl_drop_retry(self.retry_after)
        self.observe.note_503(msg, UNAVAILABLE_OVERLOAD)
        now = time.monotonic()
        if log_due(now, self.last_logged):
            self.last_logged = now
            ksr.warn(f"kemi: overload: Kamailio's socket queues held more than {self.queue_limit} bytes: "
                     f"new requests refused with 503 (Retry-After {self.retry_after}) until they drain "
                     f"(one line per {LOG_EVERY_S:g} s per process): {msg.describe()}\n")
        return False


class NoOverload:
    """overload.enabled = false: every request is admitted (pipelimit is not loaded)."""

    def admit(self, msg: Message) -> bool:
        return True


class HealthSocket:
    def __init__(self, ksr, observe: Observer):
        self.ksr, self.observe = ksr, observe
        self.last_logged: float | None = None

    def answers(self, msg: Message) -> bool:
        if msg.received_socket_name != HEALTH_SOCKET_NAME:
            return False
        if msg.method == "OPTIONS":
            self.ksr.sl.send_reply(sip.OK_KEEPALIVE.code, sip.OK_KEEPALIVE.reason)
            return True
        self.observe.note_drop(DROP_HEALTH_SOCKET)
        now = time.monotonic()
        if log_due(now, self.last_logged):
            self.last_logged = now
            self.ksr.info(f"kemi: only OPTIONS are answered on the health socket, dropped "
                          f"(one line per {LOG_EVERY_S:g} s per process): {msg.describe()}\n")
        return True


class NoHealthSocket:
    """overload.health_listen = "": no health socket, nothing to look at."""

    def answers(self, msg: Message) -> bool:
        return False
