"""The structured decision log: one logfmt line per routing decision.

    kemi: decision event=call decision=unavailable code=480 method=INVITE call_id=abc@192.0.2.1
    source=192.0.2.1:5060 ingress=none egress=none target=sip:2001@127.0.0.1

(one line). Switched at runtime, without a restart, by the cfg-group variable
`kemi_log.decisions` (declared in kamailio-settings.cfg from settings logging.decisions):

    kamcmd cfg.seti kemi_log decisions 1      # on;  0: off

The routes read it with one KSR.pv call per decision and build the line only when it is on.
"""
from __future__ import annotations

from kemi.names import DECISION_LOG_GROUP, DECISION_LOG_PV, DECISION_LOG_VAR  # noqa: F401 (the cfg variable)

DECISION_LEVELS = ("info", "notice")     # KSR.info / KSR.notice
LINE_PREFIX = "kemi: decision"

EVENT_CALL = "call"
EVENT_REGISTER = "register"
EVENT_FAILOVER = "failover"
EVENT_UNAVAILABLE = "unavailable"     # a 503 sent by the routing

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "-_.:@/;+[]<>!~*'()%&$,?#")


def is_on(value) -> bool:
    """The cfg variable as KSR.pv.gete returns it ("0" / "1", or an int)."""
    return value not in ("0", 0, "", None)


def quote(value) -> str:
    """A logfmt value: bare when it is plain, else in double quotes with \\ " and controls escaped."""
    text = str(value)
    if text and all(c in _SAFE for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if not escaped.isprintable():
        escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    return f'"{escaped}"'


def decision_line(event: str, fields: dict) -> str:
    """`kemi: decision event=EVENT key=value ...` plus the newline Kamailio's log wants."""
    parts = " ".join(f"{key}={quote(value)}" for key, value in fields.items())
    return f"{LINE_PREFIX} event={event} {parts}\n"


def parse_line(line: str) -> dict[str, str]:
    """The fields of one decision line (tests and log readers): the inverse of decision_line."""
    text = line.split(LINE_PREFIX, 1)[1].strip()
    out, i = {}, 0
    while i < len(text):
        while i < len(text) and text[i] == " ":
            i += 1
        eq = text.index("=", i)
        key, i = text[i:eq], eq + 1
        if i < len(text) and text[i] == '"':
            i += 1
            value = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
            out[key] = "".join(value)
        else:
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
            out[key], i = text[i:end], end
    return out
