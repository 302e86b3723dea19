"""Media security in the routes, on the fake KSR: which flags each offer gets per party, both
call directions, re-INVITEs, answers and late offers from the transaction's memory, the 488
refusals (never relayed, never offered to rtpengine), the SBC's sides, WebSocket parties."""
import pytest

from kemi.media.security import ANY, RTP, SDES, SRTP, WEBRTC
from kemi.names import AVP_INGRESS, AVP_MEDIA_CALLEE, AVP_MEDIA_CALLER, FLT_SDP_OFFER
from kemi.media.part import MediaSecurity, NoSecurity, transport_of
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router, signed_route
from test_media_security import DTLS_SDP, PLAIN_SDP, SDES_SDP, WEBRTC_SDP
from test_sbc_media_routes import gateway_invite, ksr_for, raw_settings, router as sbc_router

SEED = "replace-origin replace-session-connection trust-address"
OFFER, ANSWER, DELETE = "rtpengine.rtpengine_offer", "rtpengine.rtpengine_answer", "rtpengine.rtpengine_delete0"
SDP_HEADERS = {"Content-Type": "application/sdp"}
CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002"'}
# a registrar where phones are plain by default, 2001 does SDES, 2003 DTLS, browsers WebRTC
REGISTRAR = {"media": {"enabled": True, "security": "rtp",
                       "extension_security": {"2001": "sdes", "2003": "dtls"}}}
WEBSOCKET = {"websocket": {"enabled": True, "listen": ["ws:127.0.0.1:8080"]}}
RTP_TO_SDES = ("transport-protocol=RTP/SAVP DTLS=off SDES-no-NULL_HMAC_SHA1_80 SDES-no-NULL_HMAC_SHA1_32 "
               "SDES-no-AEAD_AES_256_GCM SDES-no-AEAD_AES_128_GCM")


def invite(body, caller="2002", callee="2001", proto="udp", **kw) -> SipMessage:
    return SipMessage(method="INVITE", ruri=f"sip:{callee}@127.0.0.1", from_uri=f"sip:{caller}@127.0.0.1",
                      headers={"Proxy-Authorization": f'Digest username="{caller}"', **SDP_HEADERS},
                      body=body, proto=proto, **kw)


def routed(message, settings=REGISTRAR, contact=None):
    ksr = FakeKSR(message)
    callee = message.ruri.split(":")[1].split("@")[0]
    ksr.locations[callee] = [contact or f"sip:{callee}@192.0.2.20:5060"]
    make_router(ksr, settings).ksr_request_route(None)
    return ksr


def offered(ksr):
    return [args[0] for args in ksr.calls_to(OFFER)]


# --- initial offers: what the callee needs -----------------------------------------------------


@pytest.mark.parametrize("caller, callee, body, flags", [
    ("2002", "2004", SDES_SDP, "transport-protocol=RTP/AVP"),       # SDES caller -> plain phone
    ("2002", "2004", DTLS_SDP, "transport-protocol=RTP/AVP"),       # DTLS caller -> plain phone
    ("2002", "2001", PLAIN_SDP, RTP_TO_SDES),                       # plain caller -> SDES phone
    ("2002", "2003", PLAIN_SDP, "transport-protocol=UDP/TLS/RTP/SAVP SDES-off"),
    ("2001", "2002", SDES_SDP, "transport-protocol=RTP/AVP"),       # the other direction
])
def test_offer_gets_what_the_callee_needs(caller, callee, body, flags):
    ksr = routed(invite(body, caller, callee))
    assert offered(ksr) == [f"{SEED} {flags}"]
    assert len(ksr.relayed) == 1 and ksr.replies == []


def test_the_transaction_remembers_both_parties_for_its_replies():
    ksr = routed(invite(PLAIN_SDP, "2002", "2001"))
    assert (ksr.pvs[AVP_MEDIA_CALLER], ksr.pvs[AVP_MEDIA_CALLEE]) == (RTP, SDES)
    ksr = routed(invite("", "2001", "2002"))                       # late offer: remembered all the same
    assert (ksr.pvs[AVP_MEDIA_CALLER], ksr.pvs[AVP_MEDIA_CALLEE]) == (SDES, RTP)
    assert not ksr.called(OFFER)


def test_an_srtp_party_offering_plain_gets_488_and_nothing_is_relayed_or_offered():
    ksr = routed(invite(PLAIN_SDP, "2001", "2002"))               # 2001 must encrypt
    assert ksr.replies == [(488, "Not Acceptable Here - SRTP required")]
    assert ksr.relayed == [] and not ksr.called(OFFER) and FLT_SDP_OFFER not in ksr.flags
    notices = [t for level, t in ksr.logs if level == "notice" and "media" in t]
    assert len(notices) == 1 and "SRTP required" in notices[0] and "sender sdes" in notices[0]
    assert ksr.message.call_id in notices[0]


def test_a_broken_crypto_offer_gets_488_with_one_line_naming_the_problem():
    broken = PLAIN_SDP.replace("RTP/AVP", "RTP/SAVP")              # SAVP without any key
    ksr = routed(invite(broken, "2002", "2004"))
    assert ksr.replies == [(488, "Not Acceptable Here - bad crypto offer")]
    assert ksr.relayed == [] and not ksr.called(OFFER)
    lines = [t for _level, t in ksr.logs if "offer refused" in t]
    assert len(lines) == 1 and "without a=crypto or a=fingerprint" in lines[0]


def test_rtpengine_errors_keep_their_503_and_488():
    ksr = FakeKSR(invite(SDES_SDP, "2002", "2004"))
    ksr.locations["2004"] = ["sip:2004@192.0.2.20:5060"]
    ksr.rtpengine_up = False
    make_router(ksr, REGISTRAR).ksr_request_route(None)
    assert ksr.replies == [(503, "Service Unavailable")]
    ksr = FakeKSR(invite(SDES_SDP, "2002", "2004"))
    ksr.locations["2004"] = ["sip:2004@192.0.2.20:5060"]
    ksr.rtpengine_refuses = True
    make_router(ksr, REGISTRAR).ksr_request_route(None)
    assert ksr.replies == [(488, "Not Acceptable Here")]


def test_control_without_rules_the_offer_passes_as_it_is():
    """The control of every flag test above: media security off (every party "any")."""
    ksr = routed(invite(SDES_SDP, "2002", "2004"), settings={"media": {"enabled": True}})
    assert offered(ksr) == [SEED]
    assert AVP_MEDIA_CALLER not in ksr.pvs
    assert not any(name == "pv.gete" and args == ("$rb",) for name, args in ksr.calls)    # body never read
    ksr = routed(invite(PLAIN_SDP, "2001", "2002"), settings={"media": {"enabled": True}})
    assert ksr.replies == [] and len(ksr.relayed) == 1


def test_the_security_part_is_chosen_once():
    ksr = FakeKSR(invite(PLAIN_SDP))
    assert isinstance(make_router(ksr, {"media": {"enabled": True}}).media.security, NoSecurity)
    assert isinstance(make_router(ksr, REGISTRAR).media.security, MediaSecurity)
    # ws/wss are WebRTC by default, but only a WebSocket listener makes such parties possible
    assert isinstance(make_router(ksr, {"media": {"enabled": True}, **WEBSOCKET}).media.security, MediaSecurity)


# --- replies: answers and late offers, from what the request remembered -------------------------


def reply(body, caller, callee, offered_flag=True, status=200):
    message = SipMessage(method="INVITE", status=status, reason="OK", to_tag="t", headers=SDP_HEADERS, body=body)
    ksr = FakeKSR(message)
    ksr.pvs[AVP_MEDIA_CALLER], ksr.pvs[AVP_MEDIA_CALLEE] = caller, callee
    ksr.rtpengine_sessions.add(message.call_id)
    if offered_flag:
        ksr.flags.add(FLT_SDP_OFFER)
    make_router(ksr, REGISTRAR).ksr_onreply_manage(None)
    return ksr


def test_answers_need_no_flags():
    ksr = reply(SDES_SDP, RTP, SDES)
    assert ksr.calls_to(ANSWER) == [(SEED,)]


def test_a_late_offer_in_the_reply_gets_what_the_caller_needs():
    ksr = reply(PLAIN_SDP, SDES, RTP, offered_flag=False)         # the callee offers, the caller gets it
    assert ksr.calls_to(OFFER) == [(f"{SEED} {RTP_TO_SDES}",)]


def test_a_plain_answer_from_an_srtp_party_ends_the_media():
    """No 488 can be sent for a 200: the session is deleted, so nothing is relayed in plain."""
    ksr = reply(PLAIN_SDP, RTP, SDES)
    assert not ksr.called(ANSWER) and ksr.called(DELETE)
    errors = [t for level, t in ksr.logs if level == "err"]
    assert len(errors) == 1 and "SRTP required" in errors[0] and "the 200 reply" in errors[0]


# --- in-dialog: re-INVITEs both ways, ACK answers ------------------------------------------------


def in_dialog(method, body, caller, callee):
    """An in-dialog request from `caller` to `callee` (From/To as that party sends them)."""
    return SipMessage(method=method, ruri=f"sip:{callee}@192.0.2.20:5060", from_uri=f"sip:{caller}@127.0.0.1",
                      to_uri=f"sip:{callee}@127.0.0.1", to_tag="t1",
                      headers={"Route": signed_route(), **SDP_HEADERS}, body=body)


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_reinvites_both_ways_get_the_receivers_flags(method):
    ksr = routed(in_dialog(method, PLAIN_SDP, "2002", "2001"))     # caller re-INVITEs the SDES phone
    assert offered(ksr) == [f"{SEED} {RTP_TO_SDES}"]
    ksr = routed(in_dialog(method, SDES_SDP, "2001", "2002"))      # the SDES phone re-INVITEs back
    assert offered(ksr) == [f"{SEED} transport-protocol=RTP/AVP"]
    ksr = routed(in_dialog(method, PLAIN_SDP, "2001", "2002"))     # ... in plain: refused, call goes on
    assert ksr.replies == [(488, "Not Acceptable Here - SRTP required")] and ksr.relayed == []


def test_an_ack_answering_a_late_offer_follows_the_same_rules():
    ksr = routed(in_dialog("ACK", SDES_SDP, "2001", "2002"))
    assert ksr.calls_to(ANSWER) == [(SEED,)]
    ksr = routed(in_dialog("ACK", PLAIN_SDP, "2001", "2002"))
    assert not ksr.called(ANSWER) and ksr.called(DELETE)


# --- WebSocket parties (browsers) ---------------------------------------------------------------


def test_a_browser_over_websocket_calling_a_plain_phone():
    settings = {**REGISTRAR, **WEBSOCKET}
    ksr = routed(invite(WEBRTC_SDP, "2005", "2004", proto="ws"), settings=settings)
    assert offered(ksr) == [f"{SEED} transport-protocol=RTP/AVP ICE=remove rtcp-mux-demux"]
    assert (ksr.pvs[AVP_MEDIA_CALLER], ksr.pvs[AVP_MEDIA_CALLEE]) == (WEBRTC, RTP)


def test_a_plain_phone_calling_a_browser_registered_over_websocket():
    settings = {**REGISTRAR, **WEBSOCKET}
    ksr = routed(invite(PLAIN_SDP, "2004", "2005"), settings=settings,
                 contact="sip:k3l5m7@df7jal23ls0d.invalid;transport=ws")
    assert offered(ksr) == [f"{SEED} transport-protocol=UDP/TLS/RTP/SAVPF ICE=force rtcp-mux-require SDES-off "
                            "generate-mid"]


def test_a_browser_offering_plain_rtp_is_refused():
    ksr = routed(invite(PLAIN_SDP, "2005", "2004", proto="wss"), settings={**REGISTRAR, **WEBSOCKET})
    assert ksr.replies == [(488, "Not Acceptable Here - SRTP required")]


def test_transport_of_a_uri():
    assert transport_of("sip:a@b.invalid;transport=ws") == "ws"
    assert transport_of("sip:127.0.0.1:50234;transport=WSS;alias=1") == "wss"
    assert transport_of("sip:2001@192.0.2.20:5060") == "udp"
    assert transport_of("sips:2001@example.com") == "sips"


# --- the SBC: per side ----------------------------------------------------------------------------

SBC_SRTP_PUBLIC = raw_settings(public={"media_security": "srtp"}, private={"media_security": "rtp"})


def sbc(message, settings=SBC_SRTP_PUBLIC):
    from kemi.settings import parse_settings
    ksr = ksr_for(message)
    sbc_router(ksr, parse_settings(settings)).ksr_request_route(None)
    return ksr


def test_sbc_public_side_srtp_to_private_plain():
    ksr = sbc(gateway_invite("203.0.113.10", "public", "203.0.113.1", body=SDES_SDP))
    assert offered(ksr) == [f"{SEED} direction=public direction=private transport-protocol=RTP/AVP"]
    assert (ksr.pvs[AVP_MEDIA_CALLER], ksr.pvs[AVP_MEDIA_CALLEE]) == (SRTP, RTP)


def test_sbc_public_side_refuses_plain():
    ksr = sbc(gateway_invite("203.0.113.10", "public", "203.0.113.1", body=PLAIN_SDP))
    assert ksr.replies == [(488, "Not Acceptable Here - SRTP required")] and ksr.relayed == []


def test_sbc_private_to_public_gets_srtp():
    ksr = sbc(gateway_invite("198.51.100.11", "private", "198.51.100.1", body=PLAIN_SDP))
    assert offered(ksr) == [f"{SEED} direction=private direction=public {RTP_TO_SDES}"]
    assert ksr.relayed[0]["socket"] == "public"


def test_sbc_answer_from_the_public_side_in_plain_ends_the_media():
    message = SipMessage(method="INVITE", status=200, reason="OK", to_tag="gw", socket_name="public",
                         source=("203.0.113.10", 5060), headers=SDP_HEADERS, body=PLAIN_SDP)
    ksr = ksr_for(message)
    ksr.pvs.update({AVP_INGRESS: "private", AVP_MEDIA_CALLER: RTP, AVP_MEDIA_CALLEE: SRTP})
    ksr.flags.add(FLT_SDP_OFFER)
    ksr.rtpengine_sessions.add(message.call_id)
    from kemi.settings import parse_settings
    sbc_router(ksr, parse_settings(SBC_SRTP_PUBLIC)).ksr_onreply_manage(None)
    assert not ksr.called(ANSWER) and ksr.called(DELETE)


def test_sbc_without_side_rules_is_unchanged():
    ksr = sbc(gateway_invite("203.0.113.10", "public", "203.0.113.1", body=SDES_SDP), settings=raw_settings())
    assert offered(ksr) == [f"{SEED} direction=public direction=private"]


def test_a_gateway_is_never_judged_by_an_extension_rule():
    """A trunk's caller number may equal an extension: only subscribers get extension rules."""
    settings = raw_settings(media={"extension_security": {"15559990001": "sdes"}})
    message = gateway_invite("198.51.100.11", "private", "198.51.100.1", body=PLAIN_SDP)
    message.from_uri = "sip:15559990001@198.51.100.11"
    ksr = sbc(message, settings=settings)
    assert ksr.replies == [] and offered(ksr) == [f"{SEED} direction=private direction=public"]
    assert ANY == ksr.pvs[AVP_MEDIA_CALLER]
