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
from kemi.media.security import (NOTHING, Decision, Parties, Rules, SdpCrypto, decide, refused_reply, rules_in_use,
                                 sdp_crypto)
from kemi.names import AVP_MEDIA_CALLEE, AVP_MEDIA_CALLER, DONE, FLT_SDP_OFFER, NEXT, RTPENGINE_INSTANCE_PV
from kemi.observe.metrics import (RTP_ANSWER, RTP_DELETE, RTP_FAILED, RTP_INSECURE, RTP_NO_ANSWER, RTP_OFFER,
                                  RTP_REFUSED, UNAVAILABLE_RTPENGINE)
from kemi.routing.message import Message, loggable
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
                 behind_nat: Callable[..., bool], security: "MediaSecurity | NoSecurity | None" = None):
        self.ksr, self.settings, self.observe, self.reply = ksr, media, observe, reply
        # the Router's media hooks (a subclass may override them)
        self.directions, self.profile_name, self.behind_nat = directions, profile_name, behind_nat
        # SRTP / DTLS / WebRTC per party (NoSecurity: every party "any", nothing read)
        self.security = security if security is not None else NoSecurity()
        self.sockets = media.sockets                     # for log lines
        # few distinct flag strings (operations x profiles x NAT x interface pairs): built once each
        self.built_flags: dict[tuple, str] = {}
        # whose media address rtpengine may learn (kemi.media.learning)
        self.learning = media.rtpengine.endpoint_learning

    # route[RELAY], before t_relay
    def on_request(self, msg: Message) -> bool:
        """Offer/answer/delete for a request about to be relayed; DONE when it was answered."""
        method = msg.method
        if method in OFFER_METHODS:       # the parties' media security, for this transaction's replies
            self.security.remember(msg)
        action = request_action(method, method in SDP_METHODS and self.has_sdp(msg))
        if action == OFFER:
            return self.offer(msg)
        if action == ANSWER:              # ACK / PRACK answering a late offer
            decision = self.security.check(msg, ANSWER, False)
            if decision.refusal:
                self.answer_refused(msg, decision, method)
                return NEXT
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
        decision = self.security.check(msg, OFFER, False)
        if decision.refusal:              # a party that must encrypt offered plain RTP, broken crypto
            self.offer_refused(msg, decision)
            return DONE
        if ksr.rtpengine.rtpengine_offer(self.sdp_flags(msg, OFFER, extra=decision.flags)) > 0:
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
        decision = self.security.check(msg, action, True)
        if decision.refusal:
            self.answer_refused(msg, decision, f"the {status} reply")
            return
        flags = self.sdp_flags(msg, action, is_reply=True, extra=decision.flags)
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

    # --- media security refusals ---------------------------------------------------------

    def offer_refused(self, msg: Message, decision: Decision) -> None:
        """488 with the reason; nothing reached rtpengine, the request is not relayed."""
        reply = refused_reply(decision)
        self.observe.note_rtpengine_error(RTP_OFFER, RTP_INSECURE)
        self.ksr.notice(f"kemi: media: {msg.method} offer refused, {loggable(decision.refusal)} "
                        f"({self.security.describe(msg)}), answering {reply.code} [call-id={msg.call_id}]\n")
        self.reply(reply)

    def answer_refused(self, msg: Message, decision: Decision, where: str) -> None:
        """An answer (or late offer) that breaks the rules: no reply can carry a 488 now, so
        the media session is deleted: rtpengine relays nothing, in plain text least of all."""
        self.observe.note_rtpengine_error(RTP_ANSWER, RTP_INSECURE)
        self.ksr.err(f"kemi: media: SDP of {where} refused, {loggable(decision.refusal)} "
                     f"({self.security.describe(msg, is_reply=msg.is_reply)}); media session deleted, "
                     f"the call has no media [call-id={msg.call_id}]\n")
        self.delete(msg, "answer refused")

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

    def sdp_flags(self, msg: Message, op: str, is_reply: bool = False, extra: tuple[str, ...] = ()) -> str:
        """Flags for an offer or answer of this message's SDP: its sender's NAT, its interfaces,
        and what media security adds (`extra`: transport-protocol, ICE, SDES/DTLS, rtcp-mux)."""
        return self.flags(msg, op, nat=self.behind_nat(msg, is_reply), security=extra,
                          **self.directions(msg, is_reply))

    def flags(self, msg: Message, op: str, nat: bool = False, security: tuple[str, ...] = (), **directions) -> str:
        name = self.profile_name(msg)
        if directions and not directions.keys() <= DIRECTION_KEYS:   # a subclass's extra flags: as asked
            extra = directions.pop("extra", ())
            return build_flags(op, self.settings.get_profile(name), nat=nat, extra=(*security, *extra),
                               learning=self.learning, **directions)
        key = (op, name, nat, directions.get("ingress"), directions.get("egress"), security)
        flags = self.built_flags.get(key)
        if flags is None:
            profile = self.settings.get_profile(name)
            flags = self.built_flags[key] = build_flags(op, profile, nat=nat, extra=security,
                                                        learning=self.learning, **directions)
        return flags

    def has_sdp(self, msg: Message) -> bool:
        if msg.has_sdp is None:
            msg.has_sdp = self.ksr.textops.has_body_type(SDP_CONTENT_TYPE) > 0
        return msg.has_sdp


class MediaSecurity:
    """Who sends and who receives an SDP, and their media security (kemi.media.security).

    The KSR reads, each once per message: the SDP body ($rb), the sender's From user and
    transport ($fU, $pr), the receiver's To user and the transport of its next hop ($du or
    the R-URI after lookup). An INVITE / UPDATE remembers both parties in transaction AVPs
    (AVP_MEDIA_CALLER / AVP_MEDIA_CALLEE), so its replies' SDP (sent by the callee, to the
    caller) is judged by what the request route knew, never guessed from the reply.
    """

    def __init__(self, ksr, rules: Rules, side_securities: Callable[[Message], tuple],
                 is_gateway: Callable[[Message], bool]):
        self.ksr, self.rules = ksr, rules
        self.side_securities, self.is_gateway = side_securities, is_gateway

    def check(self, msg: Message, op: str, is_reply: bool) -> Decision:
        return decide(op, self.crypto(msg), *self.sdp_parties(msg, is_reply))

    def remember(self, msg: Message) -> None:
        """request route of an INVITE / UPDATE: its parties, for the reply route."""
        parties = self.request_parties(msg)
        self.ksr.pv.sets(AVP_MEDIA_CALLER, parties.sender)
        self.ksr.pv.sets(AVP_MEDIA_CALLEE, parties.receiver)

    def sdp_parties(self, msg: Message, is_reply: bool) -> tuple[str, str]:
        """(sender, receiver) media security of this message's SDP."""
        if is_reply:        # the callee sends, the caller receives, as the request route knew them
            default = self.rules.default
            return (self.ksr.pv.gete(AVP_MEDIA_CALLEE) or default, self.ksr.pv.gete(AVP_MEDIA_CALLER) or default)
        parties = self.request_parties(msg)
        return parties.sender, parties.receiver

    def request_parties(self, msg: Message) -> Parties:
        if msg.media_parties is None:
            sender_ext = "" if self.is_gateway(msg) else (msg.from_user or "")
            sender = (sender_ext, msg.proto or "")
            receiver = (msg.to_user or "", self.next_hop_transport(msg))
            msg.media_parties = self.rules.parties(sender, receiver, self.side_securities(msg))
        return msg.media_parties

    def next_hop_transport(self, msg: Message) -> str:
        """The transport the request is sent over: its $du's, else its R-URI's (udp if none)."""
        # read here, not from msg's cache: lookup() and loose_route() rewrote them since
        pv = self.ksr.pv
        return transport_of(str(pv.gete("$du") or pv.gete("$ru")))

    def crypto(self, msg: Message) -> SdpCrypto:
        if msg.sdp_crypto is None:
            msg.sdp_crypto = sdp_crypto(str(msg.pv("$rb") or ""))
        return msg.sdp_crypto

    def describe(self, msg: Message, is_reply: bool = False) -> str:
        sender, receiver = self.sdp_parties(msg, is_reply)
        return f"sender {sender}, receiver {receiver}, SDP {self.crypto(msg).kind}"


def build_security(ksr, settings, sides) -> "MediaSecurity | NoSecurity":
    """MediaSecurity when some party can need something other than "any", else NoSecurity."""
    m = settings.media
    rules = Rules(m.security, m.transport_security, m.extension_security)
    side_securities = tuple(side.media_security for side in settings.sbc.sides) if settings.sbc.enabled else ()
    transports = {listen.proto for listen, _ in settings.listens}
    if settings.websocket.enabled:
        transports |= {name.split("-")[0] for _, name in settings.websocket.sockets}
    if not rules_in_use(rules, side_securities, frozenset(transports)):
        return NoSecurity()
    return MediaSecurity(ksr, rules, sides.media_securities, sides.is_listed_gateway)


def transport_of(uri: str) -> str:
    """The ;transport= parameter of a SIP URI, lower case; "udp" when there is none."""
    for param in uri.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport":
            return value.strip().strip(">").lower()
    return "sips" if uri.startswith("sips:") else "udp"


class NoSecurity:
    """Every party "any" (no media security rule in the settings): nothing read, nothing added."""

    def check(self, msg: Message, op: str, is_reply: bool) -> Decision:
        return NOTHING

    def remember(self, msg: Message) -> None:
        pass

    def describe(self, msg: Message, is_reply: bool = False) -> str:
        return "no media security rules"


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
