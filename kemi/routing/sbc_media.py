"""Media on the dual-NIC SBC: the MediaRoutes hooks, answered from the transaction's sides.

MediaRoutes (media.py) calls rtpengine; it asks three hooks per message, which this mixin
answers when the SBC is on (sbc.enabled) and the message's call sides are known:

media_directions    direction=<sender's interface> direction=<receiver's interface>, from
                    call_sides() (request: ingress -> egress; reply: egress -> ingress).
                    In the reply route call_sides() reads the ingress side the request route
                    stored in the transaction ($avp(sbc_ingress)) and the side the reply
                    arrived on: what the transaction remembers, never a guess.
media_profile_name  the profile of the side the SDP is sent to (sbc.<side>.media_profile).
media_behind_nat    a listed gateway of the sender's side is never behind NAT: trust-address.
                    Anybody else (a subscriber's phone) keeps the registrar's NAT detection.

Otherwise (SBC off, or a request whose egress NIC is unknown, e.g. a subscriber's call to a
foreign domain) each hook falls back to MediaRoutes' default. The decisions are plain
functions in kemi/sbc/media.py.
"""
from __future__ import annotations

from functools import cached_property

from kemi.routing.message import Message
from kemi.routing.sbc import DS_MATCH_IP_ONLY
from kemi.sbc import media as sbc_media
from kemi.sbc.direction import CallSides

_CALL_SIDES = "#call_sides"          # Message.cache key


class SbcMediaRoutes:
    @cached_property
    def side_media(self) -> dict[str, sbc_media.SideMedia]:
        """Side name -> its rtpengine interface and profile (from the settings, built once)."""
        return sbc_media.side_media(self.settings.sbc, self.settings.media.profile)

    def media_call_sides(self, msg: Message) -> CallSides | None:
        """call_sides(msg), read once per message."""
        if _CALL_SIDES not in msg.cache:
            msg.cache[_CALL_SIDES] = self.call_sides(msg) if self.sides is not None else None
        return msg.cache[_CALL_SIDES]

    # --- the MediaRoutes hooks ------------------------------------------------------------------

    def media_directions(self, msg: Message, is_reply: bool = False) -> dict:
        call = self.media_call_sides(msg)
        if call is None:
            return super().media_directions(msg, is_reply)
        return sbc_media.directions(call, is_reply, self.side_media)

    def media_profile_name(self, msg: Message) -> str:
        call = self.media_call_sides(msg)
        if call is None:
            return super().media_profile_name(msg)
        return sbc_media.profile_name(call, msg.is_reply, self.side_media)

    def media_behind_nat(self, msg: Message, is_reply: bool = False) -> bool:
        if self.media_sender_is_gateway(msg, is_reply):
            return False
        return super().media_behind_nat(msg, is_reply)

    # --- helpers --------------------------------------------------------------------------------

    def media_sender_is_gateway(self, msg: Message, is_reply: bool) -> bool:
        """The SDP's sender is a listed gateway of its side (by IP, as route[AUTH] trusts it)."""
        if self.sides is None:
            return False
        if not is_reply:
            return self.is_listed_gateway(msg)
        call = self.media_call_sides(msg)
        side = self.sides.by_name(call.egress) if call is not None else None
        if side is None:
            return False
        return self.ksr.dispatcher.ds_is_from_list_mode(side.gateway_set, DS_MATCH_IP_ONLY) > 0
