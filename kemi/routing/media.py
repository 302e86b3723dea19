"""Media anchoring: rtpengine offer / answer / delete where the call flow needs them.

route_relay calls route_media for every request it relays; the reply and failure routes
call media_reply and media_failure. What to do is decided by kemi.media.actions and spelled
by kemi.media.flags (plain functions); this mixin only reads the message and calls
KSR.rtpengine. With media.enabled = false every method returns at once and SDP is untouched.

A site (or the SBC, kemi/routing/sbc_media.py) picks rtpengine interfaces, the profile and
the NAT decision per message by overriding media_directions(), media_profile_name() and
media_behind_nat().
"""
from __future__ import annotations

from functools import cached_property

from kemi import sip
from kemi.names import FLB_NATB, FLT_NATS, FLT_SDP_OFFER
from kemi.media import RTPENGINE_INSTANCE_PV
from kemi.media.actions import (ANSWER_METHODS, OFFER_METHODS, failure_action, offer_failed_reply,
                                reply_action, request_action)
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.observe.metrics import (RTP_ANSWER, RTP_DELETE, RTP_FAILED, RTP_NO_ANSWER, RTP_OFFER, RTP_REFUSED,
                                  UNAVAILABLE_RTPENGINE)
from kemi.routing.message import Message
from kemi.routing.request import DONE, NEXT

SDP_CONTENT_TYPE = "application/sdp"
SDP_METHODS = OFFER_METHODS | ANSWER_METHODS
_HAS_SDP = "#has_sdp"            # Message.cache key
# the keyword arguments media_directions() returns; any other one is a subclass's own flag
DIRECTION_KEYS = frozenset({"ingress", "egress"})


class MediaRoutes:

    # --- hooks a subclass may override ---------------------------------------------------

    def media_profile_name(self, msg: Message) -> str:
        """The [media.profiles] entry for this call (default: media.profile)."""
        return self.settings.media.profile

    def media_directions(self, msg: Message, is_reply: bool = False) -> dict:
        """rtpengine interfaces for this message's SDP (offer or answer): {} (the default
        interface) or {"ingress": NAME, "egress": NAME}, ingress being the interface of the
        SDP's sender. is_reply: the SDP is in a reply (sent by the callee's side)."""
        return {}

    def media_behind_nat(self, msg: Message, is_reply: bool = False) -> bool:
        """The sender of this message's SDP is behind NAT (rtpengine then uses the packet's
        source address, SIP-source-address, instead of the SDP's: trust-address).

        Request: route_natdetect's FLT_NATS, or a private address in the SDP. Reply: the
        callee registered from behind NAT (FLB_NATB), or nat_uac_test(9) on the reply.
        """
        ksr = self.ksr
        if is_reply:
            return ksr.isbflagset(FLB_NATB) or ksr.nathelper.nat_uac_test(sip.NAT_TESTS_REPLY) > 0
        return ksr.isflagset(FLT_NATS) or ksr.nathelper.nat_uac_test(sip.NAT_TEST_SDP) > 0

    # --- called from the routes -----------------------------------------------------------

    # from route[RELAY], before t_relay
    def route_media(self, msg: Message) -> bool:
        """Offer/answer/delete for a request about to be relayed; DONE when it was answered."""
        if not self.settings.media.enabled:
            return NEXT
        method = msg.method
        action = request_action(method, method in SDP_METHODS and self.has_sdp(msg))
        if action == OFFER:
            return self.media_offer(msg)
        if action == ANSWER:              # ACK / PRACK answering a late offer
            if self.ksr.rtpengine.rtpengine_answer(self.sdp_flags(msg, ANSWER)) < 0:
                self.note_rtpengine_error(RTP_ANSWER, RTP_FAILED)
                self.ksr.err(f"kemi: media: rtpengine answer for {method} failed "
                             f"({self.settings.media.sockets}); media may not flow [call-id={msg.call_id}]\n")
        elif action == DELETE:
            self.media_delete(msg, f"{method} relayed")
        return NEXT

    def media_offer(self, msg: Message) -> bool:
        """rtpengine_offer on the request's SDP; on failure answer 503 (488) and stop.

        The request is never relayed with SDP that rtpengine has not taken: the callee
        would send media to a relay that does not know the call.
        """
        ksr = self.ksr
        if ksr.rtpengine.rtpengine_offer(self.sdp_flags(msg, OFFER)) > 0:
            ksr.setflag(FLT_SDP_OFFER)
            return NEXT
        answered = ksr.pv.gete(RTPENGINE_INSTANCE_PV)
        reply = offer_failed_reply(bool(answered))
        if answered:
            self.note_rtpengine_error(RTP_OFFER, RTP_REFUSED)
            ksr.warn(f"kemi: media: rtpengine {answered} refused the SDP offer of {msg.method}, "
                     f"answering {reply.code} [call-id={msg.call_id}]\n")
            if not msg.in_dialog:        # rtpengine may have kept a half-made session
                self.media_delete(msg, "offer refused")
        else:
            self.note_rtpengine_error(RTP_OFFER, RTP_NO_ANSWER)
            self.note_503(msg, UNAVAILABLE_RTPENGINE)
            ksr.err(f"kemi: media: no answer from rtpengine {self.settings.media.sockets} "
                    f"to the offer of {msg.method}, answering {reply.code} [call-id={msg.call_id}]\n")
        self.reply(reply)
        return DONE

    def media_relay_failed(self, msg: Message) -> None:
        """t_relay failed after an offer: the initial INVITE's session would be left behind."""
        if self.settings.media.enabled and not msg.in_dialog and self.ksr.isflagset(FLT_SDP_OFFER):
            self.media_delete(msg, "relay failed")

    # onreply_route[MANAGE_REPLY], for 1xx/2xx
    def media_reply(self, msg: Message) -> None:
        if not self.settings.media.enabled:
            return
        ksr = self.ksr
        status = msg.status             # int ($rs), only 1xx/2xx get here
        action = reply_action(status, self.has_sdp(msg), ksr.isflagset(FLT_SDP_OFFER))
        if action is None:
            return
        flags = self.sdp_flags(msg, action, is_reply=True)
        if action == OFFER:              # late offer: the INVITE had no SDP, the reply has
            ok = ksr.rtpengine.rtpengine_offer(flags) > 0
        else:
            ok = ksr.rtpengine.rtpengine_answer(flags) > 0
        if not ok:
            self.note_rtpengine_error(action, RTP_FAILED)      # action: RTP_OFFER or RTP_ANSWER
            ksr.err(f"kemi: media: rtpengine {action} for the {status} reply failed "
                    f"({self.settings.media.sockets}); media may not flow [call-id={msg.call_id}]\n")

    # failure_route[MANAGE_FAILURE]
    def media_failure(self, msg: Message, canceled: bool) -> None:
        if self.settings.media.enabled and failure_action(msg.in_dialog, canceled) == DELETE:
            self.media_delete(msg, "call failed")

    # --- helpers --------------------------------------------------------------------------

    def media_delete(self, msg: Message, why: str) -> None:
        ksr = self.ksr
        flags = self.media_flags(msg, DELETE)
        rc = ksr.rtpengine.rtpengine_delete(flags) if flags else ksr.rtpengine.rtpengine_delete0()
        if rc < 0:
            self.note_rtpengine_error(RTP_DELETE, RTP_FAILED)
            # not fatal: rtpengine drops a session by itself after media_timeout without media
            ksr.notice(f"kemi: media: rtpengine delete ({why}) failed; rtpengine may already have "
                       f"dropped the session [call-id={msg.call_id}]\n")

    def sdp_flags(self, msg: Message, op: str, is_reply: bool = False) -> str:
        """Flags for an offer or answer of this message's SDP: its sender's NAT, its interfaces."""
        return self.media_flags(msg, op, nat=self.media_behind_nat(msg, is_reply),
                                **self.media_directions(msg, is_reply))

    def media_flags(self, msg: Message, op: str, nat: bool = False, **directions) -> str:
        # few distinct answers (operations x profiles x NAT x interface pairs): built once each
        name = self.media_profile_name(msg)
        if directions and not directions.keys() <= DIRECTION_KEYS:   # a subclass's extra flags: as asked
            return build_flags(op, self.settings.media.get_profile(name), nat=nat, **directions)
        key = (op, name, nat, directions.get("ingress"), directions.get("egress"))
        flags = self._media_flags_built.get(key)
        if flags is None:
            profile = self.settings.media.get_profile(name)
            flags = self._media_flags_built[key] = build_flags(op, profile, nat=nat, **directions)
        return flags

    @cached_property
    def _media_flags_built(self) -> dict:
        return {}

    def has_sdp(self, msg: Message) -> bool:
        cached = msg.cache.get(_HAS_SDP)
        if cached is None:
            cached = msg.cache[_HAS_SDP] = self.ksr.textops.has_body_type(SDP_CONTENT_TYPE) > 0
        return cached
