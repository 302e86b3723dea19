"""Topology hiding's decisions, plain functions (no KSR): which calls are hidden, which outgoing
messages topos leaves alone, what a hidden call's From, To, R-URI and redirect contacts become.

A call is hidden end to end when either of its legs is on a side that hides: topos keeps one
record per dialog with both legs in it, so it cannot strip one leg and pass the other (an
in-dialog request from the unhidden leg would reach topos without the key it needs). A call
between parties on non-hiding sides passes as before.
"""
from __future__ import annotations

import re

# our Record-Route parameter on a hidden call's dialog-forming request (";kth"): topos keeps the
# Record-Route in its storage and puts it back as the Route of every in-dialog request, so it
# marks the dialog's requests as hidden, and the initial request and its replies for the
# topos event callback (topos_leaves_alone)
HIDE_RR_PARAM = "kth"
_MARK_RE = re.compile(rf";{HIDE_RR_PARAM}(?![\w.!%*+`'~-])", re.I)
# RFC 3323: an anonymous From keeps its well-known host
ANONYMOUS_HOST = "anonymous.invalid"
_SIP_URI_RE = re.compile(r"^(?P<scheme>sips?):(?:(?P<user>[^@]*)@)?(?P<hostport>[^;?]*)(?P<rest>.*)$", re.I)
_NAME_ADDR_URI_RE = re.compile(r"<([^>]*)>")


def call_hidden(ingress: str | None, egress: str | None, hiding: frozenset[str], everything: bool) -> bool:
    """Is a new call from side `ingress` leaving through side `egress` hidden?

    `everything`: the registrar with topology.registrar, or an SBC whose two sides hide.
    An egress nothing fixed (None: a subscriber's call to a foreign domain, left to the kernel's
    routing) may leave through a hiding side: hidden whenever any side hides.
    """
    if everything:
        return True
    if not hiding:
        return False
    return ingress in hiding or egress in hiding or egress is None


def topos_leaves_alone(record_routes: str | None) -> bool:
    """topos event callback (msg-sending): True when topos must pass this outgoing message
    unchanged. Only an SBC where one side hides asks.

    A dialog-forming request and its replies carry our Record-Route: hidden calls' has the
    ;kth mark (set by the part before t_relay, put back by topos into the replies it restores),
    a passing call's has none. In-dialog requests and replies of passing calls never reach
    topos's storage anyway (they lack the keys topos adds on receipt), and a request without
    any Record-Route (tm's CANCEL / ACK, a relayed MESSAGE) is left to topos: hiding more than
    needed is safe, less is not.
    """
    if not record_routes:
        return False
    return _MARK_RE.search(record_routes) is None


def uri_on_host(uri: str, host: str) -> str:
    """A From / To URI as the far side of a hidden call sees it: the same scheme and user on
    the SBC's own address on that side ("sip:2001@198.51.100.10:5060;transport=udp" ->
    "sip:2001@203.0.113.1"). Parameters go (they may name hosts), but user=phone stays (it says
    how to read the user). tel: URIs and RFC 3323's anonymous.invalid are kept as they are."""
    m = _SIP_URI_RE.match(uri.strip())
    if not m:
        return uri
    hostport = m.group("hostport")
    if hostport.lower() == ANONYMOUS_HOST:
        return uri
    user = m.group("user")
    out = f"{m.group('scheme').lower()}:{user}@{host}" if user else f"{m.group('scheme').lower()}:{host}"
    if re.search(r";user=phone(?:[;?]|$)", m.group("rest"), re.I):
        out += ";user=phone"
    return out


def redirect_contacts(contact_values: list[str], host: str) -> list[str]:
    """A 3xx's Contact URIs as a hidden call's caller gets them: each one's user on the SBC's
    own address on the caller's side ("<sip:4711@198.51.100.40>" -> "<sip:4711@203.0.113.1>"),
    so a redirect to another number still works, through the SBC. A contact without a user
    part names only a host: it is dropped. Order kept, duplicates removed."""
    out: list[str] = []
    for value in contact_values:
        uris = _NAME_ADDR_URI_RE.findall(value) or [part.split(";", 1)[0].strip() for part in value.split(",")]
        for uri in uris:
            m = _SIP_URI_RE.match(uri.strip())
            if not m or not m.group("user"):
                continue
            contact = f"<{uri_on_host(uri, host)}>"
            if contact not in out:
                out.append(contact)
    return out
