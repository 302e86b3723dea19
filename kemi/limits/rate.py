"""Call-rate limits: which pipes (pipelimit) an initial INVITE passes through, and the answer when
one is full. Plain decisions; pipelimit counts (kemi/limits/part.py).

    a listed gateway     its own address (gateway_cps), and its side's gateways together (trunk_cps)
    anybody else         its source address (source_cps), counted after digest auth: a challenged
                         INVITE is not a call

Each pipe is TAILDROP over a 1 s window: the first `limit` INVITEs of a window pass, the rest get
503 + Retry-After: 1 (the window) and nothing else happens: no ban (floods of any request are the
security screen's, pike). A request refused here is answered, never dropped.
"""
from __future__ import annotations

from typing import NamedTuple

from kemi import sip
from kemi.limits.settings import RATE_WINDOW

ALGORITHM = "TAILDROP"
# pl_check results (pipelimit README): 1 under the limit, -1 over it, -2 no such pipe, 2 NOP pipe
PL_PASS, PL_OVER = 1, -1
RATE_SOURCE, RATE_GATEWAY, RATE_TRUNK = "rate_source", "rate_gateway", "rate_trunk"
# log at most one refusal line per pipe and window in each process (a flood must not flood the log)
LOG_KEYS_MAX = 4096


class Pipe(NamedTuple):
    """One rate a request counts against: pipelimit's pipe name, its limit per window, its reason."""
    name: str
    limit: int
    reason: str


def pipes(source: str, gateway_side: str | None, *, source_cps: int, gateway_cps: int,
          trunk_cps: dict[str, int]) -> tuple[Pipe, ...]:
    """The pipes of an INVITE from `source`; `gateway_side` is the side of the listed gateway that
    sent it (None: not a gateway). Limits of 0 make no pipe."""
    out = []
    if gateway_side is None:
        if source_cps:
            out.append(Pipe(f"src:{source}", source_cps * RATE_WINDOW, RATE_SOURCE))
        return tuple(out)
    if gateway_cps:
        out.append(Pipe(f"gw:{source}", gateway_cps * RATE_WINDOW, RATE_GATEWAY))
    trunk = trunk_cps.get(gateway_side, 0)
    if trunk:
        out.append(Pipe(f"trunk:{gateway_side}", trunk * RATE_WINDOW, RATE_TRUNK))
    return tuple(out)


def over_rate_reply(pipe: Pipe) -> sip.Reply:
    return sip.Reply(sip.SERVICE_UNAVAILABLE.code, f"Service Unavailable - call rate limit ({pipe.reason[5:]})")


RETRY_AFTER = RATE_WINDOW            # a refused INVITE may come back when the window is over


def should_log(last_logged: dict[str, int], pipe: str, window: int) -> bool:
    """True the first time `pipe` refuses in `window` (an int, e.g. whole seconds) in this process."""
    if last_logged.get(pipe) == window:
        return False
    if len(last_logged) >= LOG_KEYS_MAX:
        last_logged.clear()
    last_logged[pipe] = window
    return True
