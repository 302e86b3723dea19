"""[overload]: refusing new requests early while Kamailio cannot keep up (pipelimit, NETWORK
algorithm); renders pipelimit's parameters. docs/reliability.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import HEALTH_SOCKET_NAME, OVERLOAD_PIPE
from kemi.schema import checked_address_port, pipelimit_lines, require, require_own_socket

if TYPE_CHECKING:
    from kemi.settings.model import Settings

# bytes waiting in the sockets' receive queues: a kernel counts each queued datagram's buffer
# (about 1-2 KB for a SIP message over UDP), and a socket holds at most its receive buffer
# (Kamailio asks for 256 KB; net.core.rmem_max caps it)
QUEUE_LIMIT_RANGE = (4096, 64 * 1024 * 1024)
RETRY_AFTER_RANGE = (1, 3600)
# the 503's reason phrase (pipelimit's reply_reason)
REASON = "Service Unavailable - overloaded"


@dataclass(frozen=True)
class OverloadSettings:
    # true: while the receive queues of Kamailio's own sockets hold more than queue_limit bytes
    # (looked at once per second), new requests (REGISTER, initial INVITE, ...; never ACK,
    # CANCEL or in-dialog requests, never the OPTIONS keepalive to the server) get a stateless
    # 503 with Retry-After before any database, rtpengine or transaction work
    enabled: bool = False
    # bytes waiting in the SIP sockets' receive queues above which new requests are refused:
    # 65536 is some 40-60 queued SIP messages, tens of milliseconds of work
    queue_limit: int = 65536
    # Retry-After of the 503, seconds: phones and proxies wait this long before trying again
    retry_after: int = 5
    # "ADDRESS:PORT" of a UDP socket with a SIP worker of its own that answers the OPTIONS
    # keepalive to the server and nothing else: a health check or load balancer that probes it
    # is answered at once while the SIP sockets' queues are full ("" = none). Independent of
    # `enabled`. Keep it on loopback or a management network
    health_listen: str = ""

    @property
    def health_socket(self) -> str:
        return f"udp:{self.health_listen}"


def validate(s: Settings, source: str) -> None:
    validate_health(s, source)
    o = s.overload
    low, high = QUEUE_LIMIT_RANGE
    require(low <= o.queue_limit <= high, "overload.queue_limit", f"{o.queue_limit} is out of range",
            f"use {low} to {high} bytes (65536: a few dozen queued SIP messages)", source)
    low, high = RETRY_AFTER_RANGE
    require(low <= o.retry_after <= high, "overload.retry_after", f"{o.retry_after} is out of range",
            f"use {low} to {high} seconds", source)


def validate_health(s: Settings, source: str) -> None:
    listen = s.overload.health_listen
    if not listen:
        return
    parsed = checked_address_port("overload.health_listen", listen, '"127.0.0.1:5099", or "" for none', source)
    if parsed is None:
        return
    addr, port = parsed
    require(not addr.is_unspecified, "overload.health_listen", f"{listen!r} listens on every address",
            "name one address (loopback, or a management network's)", source)
    require_own_socket("overload.health_listen", listen, addr, port, s.listens, HEALTH_SOCKET_NAME, "health socket",
                       "give the health socket a port of its own", source)
    if s.metrics.enabled:
        require(s.metrics.address != (str(addr), port), "overload.health_listen",
                f"{listen} is also the metrics endpoint", "give the health socket a port of its own", source)


def listen_lines(s: Settings) -> list[str]:
    """The health socket, with one worker of its own (socket_workers applies to the next listen=
    only); written after the SIP sockets."""
    if not s.overload.health_listen:
        return []
    return ["socket_workers=1", f'listen={s.overload.health_socket} name "{HEALTH_SOCKET_NAME}"']


def cfg_lines(s: Settings) -> list[str]:
    """pipelimit's parameters (kamailio-common.cfg loads it under WITH_OVERLOAD); native.cfg
    reads the pipe, the limit and Retry-After from here too."""
    o = s.overload
    if not o.enabled:
        return []
    return [
        *pipelimit_lines(),
        "#!define WITH_OVERLOAD",
        f'#!define OVERLOAD_PIPE "{OVERLOAD_PIPE}"',
        f"#!define OVERLOAD_QUEUE_LIMIT {o.queue_limit}",
        f"#!define OVERLOAD_RETRY_AFTER {o.retry_after}",
        f'#!define OVERLOAD_REASON "{REASON}"',
    ]
