"""The media part: rtpengine offer / answer / delete where the call flow needs them.

on_request   route[RELAY], before t_relay: offer (INVITE/UPDATE with SDP), answer (ACK/PRACK
             answering a late offer), delete (BYE/CANCEL); an offer that fails is answered
             503 (no rtpengine) or 488 (SDP refused) and the request is not relayed
on_reply     onreply_route, 1xx/2xx: the answer (or a late offer) in the reply
on_failure   failure_route: the failed initial INVITE's session is deleted

What to do is decided by kemi.media.actions and spelled by kemi.media.flags (plain
functions); this part only reads the message and calls KSR.rtpengine. The flags of each SDP
come from the Router's media hooks (media_directions, media_profile_name, media_behind_nat:
on the SBC the call's sides answer them, kemi/routing/sbc.py). With media.enabled = false the
Router builds NoMedia: SDP passes untouched.
"""
from __future__ import annotations

from typing import Callable

from kemi import sip
from kemi.media.actions import (ANSWER_METHODS, OFFER_METHODS, failure_action, offer_failed_reply,
                                reply_action, request_action)
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.names import DONE, FLT_SDP_OFFER, NEXT, RTPENGINE_INSTANCE_PV
from kemi.observe.metrics import (RTP_ANSWER, RTP_DELETE, RTP_FAILED, RTP_NO_ANSWER, RTP_OFFER, RTP_REFUSED,
                                  UNAVAILABLE_RTPENGINE)
from kemi.routing.message import Message
from kemi.routing.observe import Observer
from kemi.settings import MediaSettings

SDP_CONTENT_TYPE = "application/sdp"
SDP_METHODS = OFFER_METHODS | ANSWER_METHODS
# the keyword arguments media_directions() returns; any other one is a subclass's own flag
DIRECTION_KEYS = frozenset({"ingress", "egress"})


class Rtpengine:
    # tm's reply route (answers, late offers) and failure route (delete) have work on every INVITE
    wants_replies = wants_failures = True

    def __init__(self, ksr, media: MediaSettings, observe: Observer, reply: Callable[[sip.Reply], None], *,
                 directions: Callable[..., dict], profile_name: Callable[[Message], str],
                 behind_nat: Callable[..., bool]):
        self.ksr, self.settings, self.observe, self.reply = ksr, media, observe, reply
        # the Router's media hooks (a subclass may override them)
        self.directions, self.profile_name, self.behind_nat = directions, profile_name, behind_nat
        self.sockets = media.sockets                     # for log lines
        # few distinct flag strings (operations x profiles x NAT x interface pairs): built once each
        self.built_flags: dict[tuple, str] = {}

    # route[RELAY], before t_relay
    def on_request(self, msg: Message) -> bool:
        """Offer/answer/delete for a request about to be relayed; DONE when it was answered."""
        method = msg.method
        action = request_action(method, method in SDP_METHODS and self.has_sdp(msg))
        if action == OFFER:
            return self.offer(msg)
        if action == ANSWER:              # ACK / PRACK answering a late offer
            if self.ksr.rtpengine.rtpengine_answer(self.sdp_flags(msg, ANSWER)) < 0:
                self.observe.note_rtpengine_error(RTP_ANSWER, RTP_FAILED)
                self.ksr.err(f"kemi: media: rtpengine answer for {method} failed "
                             f"({self.sockets}); media may not flow [call-id={msg.call_id}]\n")
        elif action == DELETE:
            self.delete(msg, f"{method} relayed")
        return NEXT

    def offer(self, msg: Message) -> bool:
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
            self.observe.note_rtpengine_error(RTP_OFFER, RTP_REFUSED)
            ksr.warn(f"kemi: media: rtpengine {answered} refused the SDP offer of {msg.method}, "
                     f"answering {reply.code} [call-id={msg.call_id}]\n")
            if not msg.in_dialog:        # rtpengine may have kept a half-made session
                self.delete(msg, "offer refused")
        else:
            self.observe.note_rtpengine_error(RTP_OFFER, RTP_NO_ANSWER)
            self.observe.note_503(msg, UNAVAILABLE_RTPENGINE)
            ksr.err(f"kemi: media: no answer from rtpengine {self.sockets} "
                    f"to the offer of {msg.method}, answering {reply.code} [call-id={msg.call_id}]\n")
        self.reply(reply)
        return DONE

    def relay_failed(self, msg: Message) -> None:
        """t_relay failed after an offer: the initial INVITE's session would be left behind."""
        if not msg.in_dialog and self.ksr.isflagset(FLT_SDP_OFFER):
            self.delete(msg, "relay failed")

    # onreply_route[MANAGE_REPLY], for 1xx/2xx
    def on_reply(self, msg: Message) -> None:
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
            self.observe.note_rtpengine_error(action, RTP_FAILED)      # action: RTP_OFFER or RTP_ANSWER
            ksr.err(f"kemi: media: rtpengine {action} for the {status} reply failed "
                    f"({self.sockets}); media may not flow [call-id={msg.call_id}]\n")

    # failure_route[MANAGE_FAILURE]
    def on_failure(self, msg: Message, canceled: bool) -> None:
        if failure_action(msg.in_dialog, canceled) == DELETE:
            self.delete(msg, "call failed")

    # --- helpers --------------------------------------------------------------------------

    def delete(self, msg: Message, why: str) -> None:
        ksr = self.ksr
        flags = self.flags(msg, DELETE)
        rc = ksr.rtpengine.rtpengine_delete(flags) if flags else ksr.rtpengine.rtpengine_delete0()
        if rc < 0:
            self.observe.note_rtpengine_error(RTP_DELETE, RTP_FAILED)
            # not fatal: rtpengine drops a session by itself after media_timeout without media
            ksr.notice(f"kemi: media: rtpengine delete ({why}) failed; rtpengine may already have "
                       f"dropped the session [call-id={msg.call_id}]\n")

    def sdp_flags(self, msg: Message, op: str, is_reply: bool = False) -> str:
        """Flags for an offer or answer of this message's SDP: its sender's NAT, its interfaces."""
        return self.flags(msg, op, nat=self.behind_nat(msg, is_reply), **self.directions(msg, is_reply))

    def flags(self, msg: Message, op: str, nat: bool = False, **directions) -> str:
        name = self.profile_name(msg)
        if directions and not directions.keys() <= DIRECTION_KEYS:   # a subclass's extra flags: as asked
            return build_flags(op, self.settings.get_profile(name), nat=nat, **directions)
        key = (op, name, nat, directions.get("ingress"), directions.get("egress"))
        flags = self.built_flags.get(key)
        if flags is None:
            profile = self.settings.get_profile(name)
            flags = self.built_flags[key] = build_flags(op, profile, nat=nat, **directions)
        return flags

    def has_sdp(self, msg: Message) -> bool:
        if msg.has_sdp is None:
            msg.has_sdp = self.ksr.textops.has_body_type(SDP_CONTENT_TYPE) > 0
        return msg.has_sdp


class NoMedia:
    """media.enabled = false: no rtpengine at all, SDP passes untouched."""
    wants_replies = wants_failures = False

    def on_request(self, msg: Message) -> bool:
        return NEXT

    def relay_failed(self, msg: Message) -> None:
        pass

    def on_reply(self, msg: Message) -> None:
        pass

    def on_failure(self, msg: Message, canceled: bool) -> None:
        pass
