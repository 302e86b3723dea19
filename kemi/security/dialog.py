"""Signed Record-Route: only dialogs this proxy set up may be loose-routed through it.

An in-dialog request (To tag) with a Route header naming the proxy is relayed to its
Request-URI without authentication: that is how BYE and re-INVITE work. Without a check,
anybody can forge one (`To: ...;tag=x`, `Route: <sip:proxy;lr>`) and use the proxy as an
open relay to any destination. So the proxy adds a parameter to its Record-Route on every
dialog-forming request it accepted (after authentication): an HMAC of the Call-ID under a
secret only the proxy knows. Both ends of the dialog echo it in their Route headers; a
loose-routed request whose Route lacks the right value is refused.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

ROUTE_PARAM = "kd"            # Record-Route parameter name: ;kd=<token>
TOKEN_HEX_DIGITS = 20         # 80 bits of HMAC-SHA256


def new_secret() -> str:
    """A random secret for one Kamailio run (set security.route_secret to survive restarts)."""
    return secrets.token_hex(32)


# the HMAC state after the key, per secret: copying it is cheaper than keying anew (~0.6 µs
# of ~2 per token); a run has one or two secrets (a reload keeps the old one), tests a few
_KEYED: dict[str, hmac.HMAC] = {}
_KEYED_MAX = 16


def _keyed(secret: str) -> hmac.HMAC:
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        keyed = _KEYED[secret] = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    return keyed


def route_token(secret: str, call_id: str) -> str:
    digest = _keyed(secret).copy()
    digest.update(call_id.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:TOKEN_HEX_DIGITS]


def rr_param(secret: str, call_id: str) -> str:
    """What add_rr_param() gets: ';kd=<token>'."""
    return f";{ROUTE_PARAM}={route_token(secret, call_id)}"

