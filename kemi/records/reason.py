"""Why a call ended: the Q.850 cause of a Reason header, and who ended an unanswered call.

RFC 3326: `Reason: Q.850;cause=16;text="Normal call clearing"`; several values may be given,
comma-separated or in several headers (Kamailio's $hdr gives the first header), e.g.
`SIP;cause=487, Q.850;cause=16`. Gateways put it in BYE, CANCEL and error replies.
"""
from __future__ import annotations

from kemi.records.schema import CALLEE, CALLER, PROXY

Q850 = "q.850"
Q850_MAX_CAUSE = 127           # Q.850 cause values are 7 bits
MAX_REASON_TEXT = 255          # the reason_header column


def q850_cause(reason: str | None) -> int | None:
    """The first Q.850 cause in a Reason header value, or None (no header, none given, junk)."""
    if not reason:
        return None
    for value in _split_values(reason):
        protocol, _, params = value.partition(";")
        if protocol.strip().lower() != Q850:
            continue
        for param in _split_params(params):
            name, _, text = param.partition("=")
            if name.strip().lower() == "cause":
                text = text.strip()
                if text.isdigit() and int(text) <= Q850_MAX_CAUSE:
                    return int(text)
                return None
    return None


def reason_text(reason: str | None) -> str | None:
    """The header as stored: printable, at most the column's length (None when absent)."""
    if not reason:
        return None
    text = "".join(c if c.isprintable() else " " for c in reason).strip()
    return text[:MAX_REASON_TEXT] or None


def _split_values(header: str) -> list[str]:
    """Comma-separated values, commas inside quoted text kept."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for c in header:
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(c)
    out.append("".join(current))
    return out


def _split_params(params: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for c in params:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(c)
    out.append("".join(current))
    return out


def ended_by_failure(canceled: bool, timed_out: bool) -> str:
    """failure_route: who ended a call that got no answer. The caller cancelled it; the proxy
    gave up waiting (no final answer before the INVITE timer, or from a gateway before the
    failover timeout); otherwise the callee's side refused it (busy, decline, a gateway's error)."""
    if canceled:
        return CALLER
    if timed_out:
        return PROXY
    return CALLEE
