"""The SBC's media decisions: which rtpengine interfaces an SDP travels between, which profile.

Plain values in and out, no KSR. The SBC's part (kemi/sbc/part.py, media_view) reads the
call's sides from the transaction (ingress = the side the request came from, egress = the
side it left through) and asks here what to tell rtpengine.

An SDP in a request (offer in an INVITE / re-INVITE / UPDATE, answer in an ACK / PRACK)
is sent by the party on the ingress side to the one on the egress side; an SDP in a reply
travels back, from the egress side to the ingress side. rtpengine wants
`direction=<sender's interface> direction=<receiver's interface>`:

    call = CallSides("public", "private")          # a call from a public gateway
    directions(call, is_reply=False, media)       # the INVITE's offer
        -> {"ingress": "public", "egress": "private"}
    directions(call, is_reply=True, media)        # the 200's answer
        -> {"ingress": "private", "egress": "public"}

The callee's re-INVITE is its own transaction with its own sides, CallSides("private",
"public"), so it gets `direction=private direction=public`: the same interfaces each party
has had since the first offer. rtpengine 10.5 applies direction= on answers as well
(measured: an answer carrying the offer's pair moves the caller to the other interface),
so answers get the pair in the answerer's order, never the offer's.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kemi.sbc.direction import CallSides


@dataclass(frozen=True)
class SideMedia:
    """What media needs of one side: its rtpengine interface, the profile for SDP sent to it,
    its media security (None: media.security)."""
    interface: str
    profile: str
    security: str | None = None


def side_media(sbc, default_profile: str) -> dict[str, SideMedia]:
    """Side name -> SideMedia from settings.sbc (kemi.settings.SbcSettings).

    A side's interface defaults to the side's name, its profile to media.profile.
    """
    return {side.name: SideMedia(side.media_interface, side.media_profile or default_profile,
                                 side.media_security or None)
            for side in sbc.sides}


def sdp_sides(call: CallSides, is_reply: bool) -> tuple[str, str]:
    """(sender side, receiver side) of the SDP in a request (False) or a reply (True) of `call`."""
    return (call.egress, call.ingress) if is_reply else (call.ingress, call.egress)


def directions(call: CallSides, is_reply: bool, media: Mapping[str, SideMedia]) -> dict[str, str]:
    """kemi.media.flags.build_flags' ingress/egress: the sender's and the receiver's interface."""
    sender, receiver = sdp_sides(call, is_reply)
    return {"ingress": media[sender].interface, "egress": media[receiver].interface}


def profile_name(call: CallSides, is_reply: bool, media: Mapping[str, SideMedia]) -> str:
    """The profile of the side the SDP is sent to (its rtcp-mux and codec needs)."""
    return media[sdp_sides(call, is_reply)[1]].profile


def securities(call: CallSides, media: Mapping[str, SideMedia]) -> tuple[str | None, str | None]:
    """Media security of the sender's and the receiver's side of a request's SDP."""
    sender, receiver = sdp_sides(call, False)
    return media[sender].security, media[receiver].security
