"""Whose media address rtpengine may learn from the packets it receives, and the flags that
say so on every offer and answer (docs/security.md, "Media attacks").

rtpengine's default (`--endpoint-learning=delayed`) sends a leg's media, for 3 s after every
offer and answer, to whoever sent a packet to that relay port last, and then keeps the first
sender after those 3 s: a stranger spraying the relay's ports hears calls, and may keep a
call's media for good. So media.rtpengine.endpoint_learning says who is learned:

    "nat"   (default) a party behind NAT learns (endpoint-learning-heuristic): its NAT may
            have changed the port its SDP announces, only its packets tell the real one.
            Every other party learns nothing (endpoint-learning-off): rtpengine sends to the
            address and port of its SDP, and nothing else. Everybody gets strict-source:
            once a leg's address is known, packets from any other address or port are dropped.
    "none"  nobody learns (endpoint-learning-off strict-source for every party): no stranger
            can take any leg, but a NATed phone's media reaches it only if its NAT keeps the
            port its SDP announces.
    "all"   rtpengine's own default for everyone, nothing added (kemi before issue 25): for
            phones that send from another address or port than their SDP says without being
            detected as behind NAT; any stranger can take media in the learning window.

A party is "behind NAT" by kemi's NAT detection, the same decision that picks
SIP-source-address over trust-address (kemi.media.flags).
"""
from __future__ import annotations

LEARN_NAT = "nat"
LEARN_NONE = "none"
LEARN_ALL = "all"
POLICIES = (LEARN_NAT, LEARN_NONE, LEARN_ALL)

STRICT_SOURCE = "strict-source"
NO_LEARNING = "endpoint-learning-off"
# rtpengine ranks what it sees: the SDP's address and port first, then its address with
# another port (a port-changing NAT), then anything else
NAT_LEARNING = "endpoint-learning-heuristic"
# the daemon's --endpoint-learning: what a session gets when an offer carries no flag
DAEMON_LEARNING = {LEARN_NAT: "off", LEARN_NONE: "off", LEARN_ALL: "delayed"}


def learning_flags(policy: str, nat: bool) -> tuple[str, ...]:
    """The flags for one SDP's sender: behind NAT or not, under `policy`."""
    if policy == LEARN_ALL:
        return ()
    if policy not in POLICIES:
        raise ValueError(f"unknown endpoint learning {policy!r}; use one of {POLICIES}")
    return (NAT_LEARNING if nat and policy == LEARN_NAT else NO_LEARNING, STRICT_SOURCE)
