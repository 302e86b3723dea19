"""[overload]: refusing new requests early while Kamailio cannot keep up (pipelimit, NETWORK
algorithm); renders pipelimit's parameters. docs/reliability.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import OVERLOAD_PIPE
from kemi.schema import pipelimit_lines, require

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


def validate(s: Settings, source: str) -> None:
    o = s.overload
    low, high = QUEUE_LIMIT_RANGE
    require(low <= o.queue_limit <= high, "overload.queue_limit", f"{o.queue_limit} is out of range",
            f"use {low} to {high} bytes (65536: a few dozen queued SIP messages)", source)
    low, high = RETRY_AFTER_RANGE
    require(low <= o.retry_after <= high, "overload.retry_after", f"{o.retry_after} is out of range",
            f"use {low} to {high} seconds", source)


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
