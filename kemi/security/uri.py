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
    for m in _ESCAPE.finditer(user):
        digits = m.group(1)
        if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return True
        if int(digits, 16) not in _PRINTABLE_ASCII:
            return True
    return user.endswith("%")


def unroutable_user(user: str, max_length: int) -> tuple["sip.Reply", str] | None:
    """(reply, why) when an R-URI user cannot name a registered subscriber, before asking
    usrloc (which fails with a generic error on these); None when a lookup makes sense."""
    if has_bad_escape(user):
        return sip.BAD_REQUEST, "R-URI user has an invalid %-escape"
    if len(user) > max_length:
        return sip.NOT_FOUND, f"R-URI user longer than {max_length} characters"
    return None
