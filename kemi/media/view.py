"""What the media part needs to know about one SDP, from the call's sides: a plain value.

The sides part answers it once per message (kemi/routing/sides.py for the registrar's one
network, kemi/sbc/part.py for the SBC's two NICs); the media part (kemi/media/part.py) builds
rtpengine's flags and judges media security from it, never asking the Router.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SdpView:
    # rtpengine interfaces: (the SDP sender's, its receiver's) for direction= (ingress first);
    # None: rtpengine's default interface (the registrar, or sides unknown)
    directions: tuple[str, str] | None = None
    # the [media.profiles] entry for this SDP (the receiving side's on the SBC)
    profile: str = "default"
    # the sender is a listed SBC gateway: never behind NAT, never an extension
    sender_is_gateway: bool = False
    # media security of the sender's and the receiver's side (a request's SDP); None: media.security
    securities: tuple[str | None, str | None] = (None, None)
    # a Router subclass's own rtpengine flags (its media_directions() returned "extra")
    extra: tuple[str, ...] = ()
