"""When is Kamailio overloaded, and what is refused then.

Kamailio's own measure (pipelimit's NETWORK algorithm, in C): once per second pipelimit's
timer adds up the bytes waiting in the receive queues of Kamailio's own listening sockets
(/proc/net/udp and /proc/net/tcp, matched by address and port). Above the pipe's limit, every
check until the next second answers "over the limit". A queue that keeps growing means the
SIP workers take messages more slowly than they arrive, whatever holds them back (CPU, the
database, rtpengine), so this catches a database-bound registrar as well as a CPU-bound one.
The machine's CPU load (pipelimit's FEEDBACK algorithm) would not: it is the whole machine's,
neighbours included, and says nothing about workers waiting for MySQL.

Only a request that would start new work is refused: the router asks after the in-dialog,
CANCEL and retransmission steps and never for an ACK, so calls already up keep their BYEs,
re-INVITEs and ACKs, and a transaction in progress is never answered twice. The refusal is
pipelimit's own stateless 503 with Retry-After (no transaction, no call record, no database).

A request that carries credentials passes: it is the second half of a registration or a call
whose first half was already challenged (every REGISTER and INVITE from a phone is two
requests). Refusing it would throw away work already done and leave the phone to start over,
so Kamailio finishes what it started and refuses what it has not begun. (A source forging
credentials to get past costs what it costs without overload: one auth_db query, then a
challenge and its failed-password count; flood bans are pike's job, before this check.)
"""
from __future__ import annotations

from kemi.names import PIPELIMIT_INTERVAL_S

# the pipe's algorithm (pipelimit: TAILDROP, RED, NETWORK, FEEDBACK)
ALGORITHM = "NETWORK"
# pl_check_limit's answers: -1 over the limit; -2 the pipe could not be made (shared memory
# full): the check then fails open, refusing every request would be worse than none
OVER_LIMIT = -1
# pipelimit's timer period, seconds (its timer_interval: shared with the call-rate limits)
INTERVAL_S = PIPELIMIT_INTERVAL_S
# seconds between two log lines about refusals, per process: a second of overload may refuse
# thousands of requests, one line says it is happening
LOG_EVERY_S = 10.0


def over_limit(check_result: int) -> bool:
    """pl_check_limit's answer says: refuse (anything else, an error included, admits)."""
    return check_result == OVER_LIMIT


# headers whose presence makes a request the second half of a challenged one
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization")


def log_due(now: float, last_logged: float | None) -> bool:
    """A line about refusals is due (the first one, then at most one per LOG_EVERY_S)."""
    return last_logged is None or now - last_logged >= LOG_EVERY_S
