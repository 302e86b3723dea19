"""The registrar's sides part: one network, every source welcome after digest auth.

The Router asks its sides part where a request comes from, whom to trust by address,
where a call goes and which rtpengine interfaces its SDP uses. On the registrar the answer
is always the same, so every method here returns at once; the SBC's two NICs answer the
same questions in kemi/routing/sbc.py (SbcSides). The Router builds one of the two.
"""
from __future__ import annotations

from typing import Callable

from kemi.names import NEXT
from kemi.routing.message import Message
from kemi.sbc.direction import Side


class OneSide:
    def __init__(self, default_profile: str):
        self.default_profile = default_profile        # media.profile

    def accept(self, msg: Message) -> bool:
        """request_route, first: every source may try (auth decides)."""
        return NEXT

    def trusts(self, msg: Message) -> bool:
        """route[AUTH]: nobody skips digest auth by address."""
        return False

    def is_listed_gateway(self, msg: Message) -> bool:
        """The screen exempts listed gateways from flood bans: there are none."""
        return False

    def gateways_for(self, msg: Message, is_trusted: Callable[[Message], bool]) -> Side | None:
        """route[SBC]: no gateway sets; every call goes on to SIPOUT / LOCATION."""
        return None

    def leaving(self, msg: Message) -> None:
        """route[RELAY]: one network, no egress side to record."""

    def failover_possible(self, msg: Message) -> bool:
        """route[RELAY]: does the failure route have a gateway to fail over to? No."""
        return False

    def failover(self, msg: Message) -> bool:
        """failure_route: no gateway set to fail over in."""
        return False

    def call_sides(self, msg: Message) -> None:
        return None

    def media_directions(self, msg: Message, is_reply: bool = False) -> dict:
        return {}                                      # rtpengine's default interface

    def media_profile_name(self, msg: Message) -> str:
        return self.default_profile

    def sdp_sender_is_gateway(self, msg: Message, is_reply: bool) -> bool:
        return False

    def media_securities(self, msg: Message) -> tuple[None, None]:
        """Media security of a request SDP's sender's and receiver's side: none (media.security)."""
        return (None, None)
