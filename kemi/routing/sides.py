"""The registrar's sides part: one network, every source welcome after digest auth.

The Router asks its sides part where a request comes from, whom to trust by address,
where a call goes and what rtpengine is told about an SDP. On the registrar the answer
is always the same, so every method here returns at once; the SBC's two NICs answer the
same questions in kemi/sbc/part.py (SbcSides). The Router builds one of the two.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kemi.media.view import SdpView
from kemi.message import Message
from kemi.names import NEXT
from kemi.sbc.direction import CallSides, Side


class Sides(Protocol):
    """What the Router asks its sides part (OneSide here, SbcSides in kemi/sbc/part.py). Each
    gets the message the guard made of the sides part's message_class (Any: the SBC's methods
    take its SbcMessage)."""
    @property
    def message_class(self) -> type[Message]: ...

    def accept(self, msg: Any) -> bool: ...
    def trusts(self, msg: Any) -> bool: ...
    def is_listed_gateway(self, msg: Any) -> bool: ...
    def gateways_for(self, msg: Any, is_trusted: Callable[[Any], bool]) -> Side | None: ...
    def select_gateway(self, msg: Any, side: Side) -> bool: ...
    def leaving(self, msg: Any) -> None: ...
    def failover_possible(self, msg: Any) -> bool: ...
    def failover(self, msg: Any) -> bool: ...
    def call_sides(self, msg: Any) -> CallSides | None: ...
    def media_view(self, msg: Any, is_reply: bool) -> SdpView: ...


class OneSide:
    message_class = Message           # nothing per message beyond its values

    def __init__(self, default_profile: str):
        # every SDP: rtpengine's default interface, media.profile, nobody a gateway
        self.view = SdpView(profile=default_profile)

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

    def select_gateway(self, msg: Message, side: Side) -> bool:
        """route[SBC]: never asked (gateways_for names no side)."""
        return False

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

    def media_view(self, msg: Message, is_reply: bool) -> SdpView:
        return self.view
