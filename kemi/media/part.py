"""The media part: rtpengine offer / answer / delete where the call flow needs them.

on_request   route[RELAY], before t_relay: offer (INVITE/UPDATE with SDP), answer (ACK/PRACK
             answering a late offer), delete (BYE/CANCEL); an offer that fails is answered
             503 (no rtpengine) or 488 (SDP refused) and the request is not relayed
on_reply     onreply_route, 1xx/2xx: the answer (or a late offer) in the reply
on_failure   failure_route: the failed initial INVITE's session is deleted

What to do is decided by actions.py and spelled by flags.py; what the call's sides say about
an SDP (rtpengine interfaces, profile, whether a gateway sent it, each side's media security)
comes from the sides part once per message, as an SdpView (view.py); media security per
party (SRTP / DTLS / WebRTC) is MediaSecurity below, deciding with security.py. This part only
reads the message and calls KSR.rtpengine. With media.enabled = false the Router builds
NoMedia: SDP passes untouched.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kemi import sip
from kemi.media.actions import (
    ANSWER_METHODS,
    OFFER_METHODS,
    failure_action,
    offer_failed_reply,
    reply_action,
    request_action,
)
from kemi.media.families import IP4, address_family, uri_family
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.media.security import NOTHING, Decision, Parties, Rules, decide, refused_reply, rules_in_use, sdp_crypto
from kemi.media.settings import MediaSettings
from kemi.media.view import SdpView
from kemi.message import Message, loggable
from kemi.names import AVP_MEDIA_CALLEE, AVP_MEDIA_CALLER, DONE, FLT_SDP_OFFER, NEXT, RTPENGINE_INSTANCE_PV
from kemi.observe.metrics import (
    RTP_ANSWER,
    RTP_DELETE,
    RTP_FAILED,
    RTP_INSECURE,
    RTP_NO_ANSWER,
    RTP_OFFER,
    RTP_REFUSED,
    UNAVAILABLE_RTPENGINE,
)
from kemi.observe.part import Observer

if TYPE_CHECKING:
    from kemi.nat.part import Nat, NoNat
    from kemi.settings import Settings

SDP_CONTENT_TYPE = "application/sdp"
# in a reply route: the source address of the request the reply answers (tmx)
REQUEST_SOURCE_PV = "$T_req($si)"
# rtpengine_query_v: compact JSON into this variable (records, kemi/records/media.py reads it)
STATS_FORMAT, STATS_VAR = "j", "$var(kemi_rtpstats)"
SDP_METHODS = OFFER_METHODS | ANSWER_METHODS


class MediaViews(Protocol):
    """The sides part (OneSide, SbcSides): what it says about one SDP of a message (Any: the
    SBC's takes its SbcMessage)."""
    def media_view(self, msg: Any, is_reply: bool) -> SdpView: ...


class Rtpengine:
    # tm's reply route (answers, late offers) and failure route (delete) have work on every INVITE
    wants_replies = True          # (one name per line: mypyc compiles no chained class assignment)
    wants_failures = True

    def __init__(self, ksr, media: MediaSettings, observe: Observer, reply: Callable[[sip.Reply], None], *,
                 views: MediaViews, nat: Nat | NoNat, security: MediaSecurity | NoSecurity | None = None,
                 sender_nated: Callable[[Message, bool, SdpView], bool] | None = None,
                 families: ReceiverFamilies | NoFamilies | None = None):
        self.ksr, self.settings, self.observe, self.reply = ksr, media, observe, reply
        self.views, self.nat = views, nat
        # SRTP / DTLS / WebRTC per party (NoSecurity: every party "any", nothing read)
        self.security = security if security is not None else NoSecurity()
        # IPv4 <-> IPv6: the family each offer's receiver speaks (NoFamilies: one family only)
        self.families = families if families is not None else NoFamilies()
        # whether an SDP's sender is behind NAT (a Router subclass's media_behind_nat, if any)
        self.sender_nated = sender_nated or self.sdp_sender_nated
        self.sockets = media.sockets                     # for log lines
        # few distinct flag strings (operations x profiles x NAT x interface pairs): built once each
        self.built_flags: dict[tuple, str] = {}
        # whose media address rtpengine may learn (kemi.media.learning)
        self.learning = media.rtpengine.endpoint_learning

    # route[RELAY], before t_relay
    def on_request(self, msg: Message) -> bool:
        """Offer/answer/delete for a request about to be relayed; DONE when it was answered."""
        method = msg.method
        action = request_action(method, method in SDP_METHODS and self.has_sdp())
        if action == DELETE:
            self.delete(msg, f"{method} relayed")
            return NEXT
        remember = method in OFFER_METHODS and self.security.remembers
        if action is None and not remember:
            return NEXT
        view = self.views.media_view(msg, False)
        parties = self.security.parties(msg, view)
        if remember:                      # the parties' media security, for this transaction's replies
            self.security.remember(parties)
        if action == OFFER:
            return self.offer(msg, view, parties)
        if action == ANSWER:              # ACK / PRACK answering a late offer
            decision = self.security.check(msg, ANSWER, parties)
            if decision.refusal:
                self.answer_refused(msg, decision, parties, method)
                return NEXT
            if self.ksr.rtpengine.rtpengine_answer(self.sdp_flags(msg, ANSWER, view, False)) < 0:
                self.observe.note_rtpengine_error(RTP_ANSWER, RTP_FAILED)
                self.ksr.err(f"kemi: media: rtpengine answer for {method} failed "
                             f"({self.sockets}); media may not flow [call-id={msg.call_id}]\n")
        return NEXT

    def offer(self, msg: Message, view: SdpView, parties: Parties) -> bool:
        """rtpengine_offer on the request's SDP; on failure answer 503 (488) and stop.

        The request is never relayed with SDP that rtpengine has not taken: the callee
        would send media to a relay that does not know the call.
        """
        ksr = self.ksr
        decision = self.security.check(msg, OFFER, parties)
        if decision.refusal:              # a party that must encrypt offered plain RTP, broken crypto
            self.offer_refused(msg, decision, parties)
            return DONE
        flags = self.sdp_flags(msg, OFFER, view, False, decision.flags, self.families.of_request_receiver())
        if ksr.rtpengine.rtpengine_offer(flags) > 0:
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

    def query_stats(self) -> str | None:
        """rtpengine's figures for this message's call, as JSON (ng query): records ask before
        a BYE's delete. None when no rtpengine answered."""
        ksr = self.ksr
        if ksr.rtpengine.rtpengine_query_v(STATS_FORMAT, STATS_VAR) < 0:
            return None
        return ksr.pv.gete(STATS_VAR) or None

    def relay_failed(self, msg: Message) -> None:
        """t_relay failed after an offer: the initial INVITE's session would be left behind."""
        if not msg.in_dialog and self.ksr.isflagset(FLT_SDP_OFFER):
            self.delete(msg, "relay failed")

    # onreply_route[MANAGE_REPLY], for 1xx/2xx
    def on_reply(self, msg: Message) -> None:
        ksr = self.ksr
        status = msg.status             # int ($rs), only 1xx/2xx get here
        action = reply_action(status, self.has_sdp(), ksr.isflagset(FLT_SDP_OFFER))
        if action is None:
            return
        parties = self.security.reply_parties()
        decision = self.security.check(msg, action, parties)
        if decision.refusal:
            self.answer_refused(msg, decision, parties, f"the {status} reply")
            return
        # a late offer goes to the caller: rtpengine is told its family (an answer needs none)
        family = self.families.of_reply_receiver() if action == OFFER else None
        flags = self.sdp_flags(msg, action, self.views.media_view(msg, True), True, decision.flags, family)
        # a late offer (the INVITE had no SDP, the reply has), else the answer
        command = ksr.rtpengine.rtpengine_offer if action == OFFER else ksr.rtpengine.rtpengine_answer
        ok = command(flags) > 0
        if not ok:
            self.observe.note_rtpengine_error(action, RTP_FAILED)      # action: RTP_OFFER or RTP_ANSWER
            ksr.err(f"kemi: media: rtpengine {action} for the {status} reply failed "
                    f"({self.sockets}); media may not flow [call-id={msg.call_id}]\n")

    # failure_route[MANAGE_FAILURE]
    def on_failure(self, msg: Message, canceled: bool) -> None:
        if failure_action(msg.in_dialog, canceled) == DELETE:
            self.delete(msg, "call failed")

    # --- media security refusals ---------------------------------------------------------

    def offer_refused(self, msg: Message, decision: Decision, parties: Parties) -> None:
        """488 with the reason; nothing reached rtpengine, the request is not relayed."""
        reply = refused_reply(decision)
        self.observe.note_rtpengine_error(RTP_OFFER, RTP_INSECURE)
        self.ksr.notice(f"kemi: media: {msg.method} offer refused, {loggable(decision.refusal)} "
                        f"({self.security.describe(msg, parties)}), answering {reply.code} "
                        f"[call-id={msg.call_id}]\n")
        self.reply(reply)

    def answer_refused(self, msg: Message, decision: Decision, parties: Parties, where: str) -> None:
        """An answer (or late offer) that breaks the rules: no reply can carry a 488 now, so
        the media session is deleted: rtpengine relays nothing, in plain text least of all."""
        self.observe.note_rtpengine_error(RTP_ANSWER, RTP_INSECURE)
        self.ksr.err(f"kemi: media: SDP of {where} refused, {loggable(decision.refusal)} "
                     f"({self.security.describe(msg, parties)}); media session deleted, "
                     f"the call has no media [call-id={msg.call_id}]\n")
        self.delete(msg, "answer refused")

    # --- helpers --------------------------------------------------------------------------

    def delete(self, msg: Message, why: str) -> None:
        """rtpengine_delete of the call (a delete takes no flags: rtpengine finds the call by
        its Call-ID and tags)."""
        ksr = self.ksr
        # topology hiding: a request from the far side has the masked Call-ID on the wire
        deleted = ksr.rtpengine.rtpengine_delete0() if msg.dialog_call_id is None \
            else ksr.rtpengine.rtpengine_delete(f"call-id={msg.dialog_call_id}")
        if deleted < 0:
            self.observe.note_rtpengine_error(RTP_DELETE, RTP_FAILED)
            # not fatal: rtpengine drops a session by itself after media_timeout without media
            ksr.notice(f"kemi: media: rtpengine delete ({why}) failed; rtpengine may already have "
                       f"dropped the session [call-id={msg.call_id}]\n")

    def sdp_sender_nated(self, msg: Message, is_reply: bool, view: SdpView) -> bool:
        """The SDP's sender is behind NAT (SIP-source-address): never a listed gateway."""
        return not view.sender_is_gateway and self.nat.sdp_sender_nated(msg, is_reply)

    def sdp_flags(self, msg: Message, op: str, view: SdpView, is_reply: bool, security: tuple[str, ...] = (),
                  family: str | None = None) -> str:
        """Flags for an offer or answer of this message's SDP: its sender's NAT, its interfaces
        and profile (`view`), what media security adds (transport-protocol, ICE, SDES/DTLS,
        rtcp-mux), and the address family of an offer's receiver (IP4, IP6, None: unknown)."""
        nat = self.sender_nated(msg, is_reply, view)
        key = (op, view.profile, nat, view.directions, security, view.extra, family)
        flags = self.built_flags.get(key)
        if flags is None:
            ingress, egress = view.directions or (None, None)
            flags = self.built_flags[key] = build_flags(op, self.settings.get_profile(view.profile), nat=nat,
                                                        ingress=ingress, egress=egress, family=family,
                                                        extra=(*security, *view.extra), learning=self.learning)
        if msg.dialog_call_id is not None:       # topology hiding: the wire has the masked Call-ID
            return f"{flags} call-id={msg.dialog_call_id}"
        return flags

    def has_sdp(self) -> bool:
        return self.ksr.textops.has_body_type(SDP_CONTENT_TYPE) > 0


class MediaSecurity:
    """Who sends and who receives an SDP, and their media security (security.py decides).

    The KSR reads, each once per message: the SDP body ($rb), the sender's From user and
    transport ($fU, $pr), the receiver's To user and the transport of its next hop ($du or
    the R-URI after lookup). An INVITE / UPDATE remembers both parties in transaction AVPs
    (AVP_MEDIA_CALLER / AVP_MEDIA_CALLEE), so its replies' SDP (sent by the callee, to the
    caller) is judged by what the request route knew, never guessed from the reply.
    """
    remembers = True

    def __init__(self, ksr, rules: Rules):
        self.ksr, self.rules = ksr, rules

    def parties(self, msg: Message, view: SdpView) -> Parties:
        """A request's SDP: the sender's and the receiver's media security."""
        sender_ext = "" if view.sender_is_gateway else (msg.from_user or "")
        return self.rules.parties((sender_ext, msg.proto or ""), (msg.to_user or "", self.next_hop_transport()),
                                  view.securities)

    def reply_parties(self) -> Parties:
        """A reply's SDP: the callee sends, the caller receives, as the request route knew them."""
        default, pv = self.rules.default, self.ksr.pv
        return Parties(pv.gete(AVP_MEDIA_CALLEE) or default, pv.gete(AVP_MEDIA_CALLER) or default)

    def remember(self, parties: Parties) -> None:
        """request route of an INVITE / UPDATE: its parties, for the reply route."""
        self.ksr.pv.sets(AVP_MEDIA_CALLER, parties.sender)
        self.ksr.pv.sets(AVP_MEDIA_CALLEE, parties.receiver)

    def check(self, msg: Message, op: str, parties: Parties) -> Decision:
        return decide(op, self.crypto(msg), parties.sender, parties.receiver)

    def next_hop_transport(self) -> str:
        """The transport the request is sent over: its $du's, else its R-URI's (udp if none)."""
        # read here, not from msg's cache: lookup() and loose_route() rewrote them since
        pv = self.ksr.pv
        return transport_of(str(pv.gete("$du") or pv.gete("$ru")))

    def crypto(self, msg: Message):
        return sdp_crypto(str(msg.pv("$rb") or ""))

    def describe(self, msg: Message, parties: Parties) -> str:
        return f"sender {parties.sender}, receiver {parties.receiver}, SDP {self.crypto(msg).kind}"


def build_security(ksr, settings: Settings) -> MediaSecurity | NoSecurity:
    """MediaSecurity when some party can need something other than "any", else NoSecurity."""
    m = settings.media
    rules = Rules(m.security, m.transport_security, m.extension_security)
    side_securities = tuple(side.media_security for side in settings.sbc.sides) if settings.sbc.enabled else ()
    transports = {listen.proto for listen, _ in settings.listens}
    if settings.websocket.enabled:
        transports |= {name.split("-")[0] for _, name in settings.websocket.sockets}
    if not rules_in_use(rules, side_securities, frozenset(transports)):
        return NoSecurity()
    return MediaSecurity(ksr, rules)


def transport_of(uri: str) -> str:
    """The ;transport= parameter of a SIP URI, lower case; "udp" when there is none."""
    for param in uri.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport":
            return value.strip().strip(">").lower()
    return "sips" if uri.startswith("sips:") else "udp"


class ReceiverFamilies:
    """Proxy sockets in both families: which family an offer's receiver speaks (families.py).

    Read once per offer: the request's next hop ($du, else the R-URI lookup() or
    handle_ruri_alias() left), or for a reply's late offer the request's source ($T_req($si)).
    """

    def __init__(self, ksr):
        self.ksr = ksr

    def of_request_receiver(self) -> str | None:
        pv = self.ksr.pv
        return uri_family(str(pv.gete("$du") or pv.gete("$ru") or ""))

    def of_reply_receiver(self) -> str | None:
        return address_family(str(self.ksr.pv.gete(REQUEST_SOURCE_PV) or ""))


class NoFamilies:
    """One address family only (or media.address_family_bridging = false): rtpengine keeps
    each SDP's family, nothing is read."""

    def of_request_receiver(self) -> None:
        return None

    def of_reply_receiver(self) -> None:
        return None


def build_families(ksr, settings: Settings) -> ReceiverFamilies | NoFamilies:
    """ReceiverFamilies when Kamailio listens in both families and bridging is on."""
    if settings.media.address_family_bridging and len(listen_families(settings)) > 1:
        return ReceiverFamilies(ksr)
    return NoFamilies()


def listen_families(settings: Settings) -> set[str]:
    """IP4 / IP6: the families of every socket Kamailio listens on (names count as IPv4)."""
    return {address_family(listen.host) or IP4 for listen, _ in settings.listens}


ANY_PARTIES = Parties()


class NoSecurity:
    """Every party "any" (no media security rule in the settings): nothing read, nothing added."""
    remembers = False

    def parties(self, msg: Message, view: SdpView) -> Parties:
        return ANY_PARTIES

    def reply_parties(self) -> Parties:
        return ANY_PARTIES

    def remember(self, parties: Parties) -> None:
        pass

    def check(self, msg: Message, op: str, parties: Parties) -> Decision:
        return NOTHING

    def describe(self, msg: Message, parties: Parties) -> str:
        return "no media security rules"


class NoMedia:
    """media.enabled = false: no rtpengine at all, SDP passes untouched."""
    wants_replies = False
    wants_failures = False

    def on_request(self, msg: Message) -> bool:
        return NEXT

    def relay_failed(self, msg: Message) -> None:
        pass

    def on_reply(self, msg: Message) -> None:
        pass

    def on_failure(self, msg: Message, canceled: bool) -> None:
        pass
