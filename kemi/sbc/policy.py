"""Where an SBC call goes, and what to do when a gateway fails: plain decisions.

Routing (the seed's policy, with the registrar on the same box):

* from a gateway on the public side: the DID map first (R-URI user -> extension, rung via
  the location table); an unmapped DID goes to the private gateway set.
* from a gateway on the private side: the public gateway set.
* from an authenticated subscriber (an extension, on either side): another local
  extension is rung via the location table; any other number goes out through the public
  gateway set.

Failover: a gateway answering 408 or 5xx, or not answering at all (tm's local 408), is
marked and the next gateway of the set is tried; anything else (486 Busy, 404, 6xx, ...)
is the callee's answer and goes back to the caller.
"""
from __future__ import annotations

from typing import NamedTuple

from kemi import sip
from kemi.sbc.direction import Side, Sides

REQUEST_TIMEOUT = 408
SERVER_ERROR_CLASS = range(500, 600)


class Destination(NamedTuple):
    """Where a call goes: a gateway set (`gateways` is the side) or a local extension."""
    gateways: Side | None = None
    extension: str | None = None      # R-URI user to look up in the location table
    reason: str = ""

    @property
    def is_gateway_set(self) -> bool:
        return self.gateways is not None


def choose_destination(sides: Sides, ingress: Side, *, from_gateway: bool, ruri_user: str,
                       did_target: str | None, is_subscriber: bool | None) -> Destination:
    """Where a call from `ingress` for `ruri_user` goes.

    `did_target` is the DID map's extension for ruri_user (None: unmapped or not asked),
    `is_subscriber` whether ruri_user is a local extension (None: the DB cannot tell).
    """
    if from_gateway:
        if ingress is sides.public and did_target:
            return Destination(extension=did_target, reason=f"DID {ruri_user} -> extension {did_target}")
        other = sides.other(ingress)
        return Destination(gateways=other, reason=f"from a {ingress} gateway to the {other} gateways")
    if is_subscriber is False:
        return Destination(gateways=sides.public, reason=f"{ruri_user} is not a local extension")
    # a local extension, or the DB cannot tell: the location table decides (480 if unregistered)
    return Destination(extension=ruri_user, reason="local extension")


def should_fail_over(code: int) -> bool:
    """A gateway's final answer (or tm's local 408 on no answer) that means: try the next one."""
    return code == REQUEST_TIMEOUT or code in SERVER_ERROR_CLASS


def no_gateway_reply(side: Side) -> sip.Reply:
    """503 whose reason names the set that has no gateway left."""
    return sip.Reply(sip.SERVICE_UNAVAILABLE.code,
                     f"Service Unavailable - no gateway left in set {side.gateway_set} ({side.name})")
