"""Is a URI user something usrloc can even look up?

Kamailio un-escapes the R-URI user before a location lookup and refuses %XX escapes that
are not two hex digits or that decode to a control or non-ASCII character (`%00`, `%0d`,
`%ff`); registrar.lookup() then fails with a generic error. That is the request's fault,
so it deserves a 400, not the 500 a real lookup failure gets. Likewise a user longer than
any subscriber name (usrloc's AOR limit is 256) is simply not found: 404.
"""
from __future__ import annotations

import re

from kemi import sip

_ESCAPE = re.compile(r"%(..?)")
_PRINTABLE_ASCII = range(0x20, 0x7F)


def has_bad_escape(user: str) -> bool:
    if "%" not in user:             # nearly every user: no regex scan
        return False
    for m in _ESCAPE.finditer(user):
        digits = m.group(1)
        if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return True
        if int(digits, 16) not in _PRINTABLE_ASCII:
            return True
    return user.endswith("%")


def unroutable_user(user: str, max_length: int) -> tuple[sip.Reply, str] | None:
    """(reply, why) when an R-URI user cannot name a registered subscriber, before asking
    usrloc (which fails with a generic error on these); None when a lookup makes sense."""
    if has_bad_escape(user):
        return sip.BAD_REQUEST, "R-URI user has an invalid %-escape"
    if len(user) > max_length:
        return sip.NOT_FOUND, f"R-URI user longer than {max_length} characters"
    return None


# URI schemes this proxy routes; anything else gets 416 (RFC 3261 16.3 step 2)
SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def has_unsupported_scheme(uri: str) -> bool:
    """True for a well-formed scheme we do not route ("soap.beep:", "mailto:"); a URI
    without a recognisable scheme ("<sip:...>") is malformed instead: sanity answers 400."""
    if uri.startswith(("sip:", "sips:", "tel:")):     # nearly every request: no regex
        return False
    m = _SCHEME.match(uri)
    return m is not None and m.group(1).lower() not in SUPPORTED_SCHEMES


def request_line_uri(request_line: str) -> str:
    """The Request-URI of 'METHOD URI SIP/2.0' ("" when the line has another shape)."""
    parts = request_line.split(" ")
    return parts[1] if len(parts) == 3 else ""


def unsupported_extensions(proxy_require: str) -> str:
    """Option tags of a Proxy-Require header, all unsupported (this proxy implements none):
    the value of the Unsupported header of the 420 answer, "" when there is none."""
    if not proxy_require:           # nearly every request has none
        return ""
    tags = [t.strip() for t in proxy_require.split(",") if t.strip()]
    return ", ".join(dict.fromkeys(tags))
