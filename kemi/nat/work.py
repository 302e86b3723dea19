"""Whether tm's branch and reply routes have NAT work for a request: plain functions, no KSR.

tm calls into Python for a transaction's branch or reply route only when the request path
armed it, and each entry costs ~2 µs plus the route's own work: kemi/nat/part.py arms them
when these say so.
"""
from __future__ import annotations

# the Record-Route parameter a NATed caller's dialog carries (Nat.manage adds it)
ROUTE_NAT_PARAM, ROUTE_NAT_VALUE = "nat", "yes"


def branch_route_needed(caller_nated: bool, in_dialog: bool, route_nat: bool,
                        extra_branches: int, callee_nated: bool) -> bool:
    """Whether manage() has work in the branch route.

    It acts when the caller is NATed (FLT_NATS), or the branch is (FLB_NATB): for an
    in-dialog request that flag comes from our Route's nat=yes, for an initial one from the
    contact lookup() found. Other branches' flags are not visible here, so a forked request
    always gets the branch route.
    """
    if caller_nated:
        return True
    if in_dialog:
        return route_nat
    return extra_branches > 0 or callee_nated


def reply_route_needed(in_dialog: bool, route_nat: bool, extra_branches: int, callee_nated: bool) -> bool:
    """Whether manage() has work in the reply route: only for a NATed branch (FLB_NATB),
    whose reply's Contact gets an alias; a NATed caller alone leaves replies as they are."""
    if in_dialog:
        return route_nat
    return extra_branches > 0 or callee_nated
