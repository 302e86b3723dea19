"""MediaRoutes with the fake KSR: which rtpengine call each message gets, and what fails how."""
import pytest

from kemi import sip
from kemi.names import FLB_NATB, FLT_NATS, FLT_SDP_OFFER
from kemi.routing import Router
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router, signed_route

SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_HEADERS = {"Content-Type": "application/sdp"}
CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002"'}
SEED_FLAGS = "replace-origin replace-session-connection"
OFFER, ANSWER, DELETE = ("rtpengine.rtpengine_offer", "rtpengine.rtpengine_answer", "rtpengine.rtpengine_delete0")
MEDIA_ON = {"media": {"enabled": True}}


def invite(body=SDP, **kw) -> SipMessage:
    headers = {**CREDENTIALS, **(SDP_HEADERS if body else {})}
    return SipMessage(method="INVITE", headers=headers, body=body, **kw)


def in_dialog(method, body="", **kw) -> SipMessage:
    headers = {"Route": signed_route(), **(SDP_HEADERS if body else {})}
    return SipMessage(method=method, to_tag="to-tag-1", headers=headers, body=body, **kw)


def routed(message, settings=MEDIA_ON, router_class=None, **ksr_attrs):
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    for name, value in ksr_attrs.items():
        setattr(ksr, name, value)
    router = make_router(ksr, settings, router_class=router_class)
    router.ksr_request_route(None)
    return ksr


def rtpengine_calls(ksr):
    return [(key, args) for key, args in ksr.calls if key.startswith("rtpengine.")]


# --- requests -------------------------------------------------------------------------------


def test_invite_with_sdp_is_offered_to_rtpengine_then_relayed():
    ksr = routed(invite())
    assert rtpengine_calls(ksr) == [(OFFER, (f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",))]
    assert FLT_SDP_OFFER in ksr.flags               # the 1xx/2xx SDP will be the answer
    assert len(ksr.relayed) == 1 and ksr.replies == []
    assert ksr.rtpengine_sessions == {ksr.message.call_id}


def test_offer_comes_before_the_relay():
    ksr = routed(invite())
    order = [k for k, _ in ksr.calls if k in (OFFER, "tm.t_relay")]
    assert order == [OFFER, "tm.t_relay"]


def test_sender_behind_nat_gets_sip_source_address():
    ksr = FakeKSR(invite())
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests == sip.NAT_TESTS else -1
    make_router(ksr, MEDIA_ON).ksr_request_route(None)
    assert FLT_NATS in ksr.flags
    assert ksr.calls_to(OFFER) == [(f"{SEED_FLAGS} SIP-source-address endpoint-learning-heuristic strict-source",)]


def test_private_address_in_sdp_gets_sip_source_address():
    ksr = FakeKSR(invite())
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests == sip.NAT_TEST_SDP else -1
    make_router(ksr, MEDIA_ON).ksr_request_route(None)
    assert ksr.calls_to(OFFER) == [(f"{SEED_FLAGS} SIP-source-address endpoint-learning-heuristic strict-source",)]


def test_rtpengine_unreachable_answers_503_and_does_not_relay():
    ksr = routed(invite(), rtpengine_up=False)
    assert ksr.replies == [(503, "Service Unavailable")]
    assert ksr.relayed == [] and FLT_SDP_OFFER not in ksr.flags
    errors = [t for lvl, t in ksr.logs if lvl == "err"]
    assert len(errors) == 1
    assert "udp:127.0.0.1:2223" in errors[0] and "503" in errors[0] and ksr.message.call_id in errors[0]


def test_rtpengine_refusing_the_sdp_answers_488_and_deletes_the_half_made_session():
    ksr = routed(invite(), rtpengine_refuses=True)
    assert ksr.replies == [(488, "Not Acceptable Here")]
    assert ksr.relayed == []
    assert ksr.called(DELETE) and ksr.rtpengine_sessions == set()
    assert "refused the SDP" in ksr.log_text("warn")


def test_invite_without_sdp_is_relayed_untouched():
    ksr = routed(invite(body=""))
    assert rtpengine_calls(ksr) == [] and FLT_SDP_OFFER not in ksr.flags
    assert len(ksr.relayed) == 1


def test_anchoring_off_never_calls_rtpengine():
    off = {"media": {"enabled": False}}
    for message in (invite(), in_dialog("INVITE", body=SDP), in_dialog("BYE"), in_dialog("ACK", body=SDP)):
        ksr = routed(message, settings=off)
        assert rtpengine_calls(ksr) == [] and len(ksr.relayed) == 1, message.method
    cancel = FakeKSR(SipMessage(method="CANCEL"))
    cancel.results["tm.t_check_trans"] = 1
    make_router(cancel, off).ksr_request_route(None)
    answer = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", headers=SDP_HEADERS, body=SDP))
    make_router(answer, off).ksr_onreply_manage(None)
    failure = FakeKSR(SipMessage(method="INVITE"))
    make_router(failure, off).ksr_failure_manage(None)
    for ksr in (cancel, answer, failure):
        assert rtpengine_calls(ksr) == []


def test_reinvite_and_update_with_sdp_are_offers():
    for method in ("INVITE", "UPDATE"):
        ksr = routed(in_dialog(method, body=SDP))
        assert ksr.calls_to(OFFER) == [(f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",)], method
        assert len(ksr.relayed) == 1


def test_reinvite_rtpengine_unreachable_gets_503_and_keeps_the_session():
    ksr = routed(in_dialog("INVITE", body=SDP), rtpengine_up=False)
    assert ksr.replies == [(503, "Service Unavailable")] and ksr.relayed == []
    assert not ksr.called(DELETE)


def test_ack_with_sdp_is_the_answer_to_a_late_offer():
    ksr = routed(in_dialog("ACK", body=SDP), rtpengine_sessions={"call-1@192.0.2.10"})
    assert ksr.calls_to(ANSWER) == [(f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",)]
    assert len(ksr.relayed) == 1


def test_ack_without_sdp_is_left_alone():
    ksr = routed(in_dialog("ACK"))
    assert rtpengine_calls(ksr) == [] and len(ksr.relayed) == 1


def test_bye_deletes_the_session_and_is_relayed():
    ksr = routed(in_dialog("BYE"), rtpengine_sessions={"call-1@192.0.2.10"})
    assert rtpengine_calls(ksr) == [(DELETE, ())]
    assert ksr.rtpengine_sessions == set() and len(ksr.relayed) == 1


def test_bye_is_relayed_even_when_rtpengine_is_down():
    ksr = routed(in_dialog("BYE"), rtpengine_up=False)
    assert ksr.called(DELETE) and len(ksr.relayed) == 1 and ksr.replies == []
    assert "delete (BYE relayed) failed" in ksr.log_text("notice")


def test_cancel_of_a_known_transaction_deletes_the_session():
    ksr = FakeKSR(SipMessage(method="CANCEL"))
    ksr.results["tm.t_check_trans"] = 1
    ksr.rtpengine_sessions.add(ksr.message.call_id)
    make_router(ksr, MEDIA_ON).ksr_request_route(None)
    assert rtpengine_calls(ksr) == [(DELETE, ())] and len(ksr.relayed) == 1


def test_relay_failure_after_the_offer_deletes_the_session():
    ksr = FakeKSR(invite())
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results["tm.t_relay"] = -1
    make_router(ksr, MEDIA_ON).ksr_request_route(None)
    assert [k for k, _ in rtpengine_calls(ksr)] == [OFFER, DELETE]
    assert ksr.rtpengine_sessions == set() and ksr.replies == [(500, "Server Internal Error")]


# --- replies --------------------------------------------------------------------------------


def reply(status, body=SDP, flags=(), bflags=()):
    ksr = FakeKSR(SipMessage(method="INVITE", status=status, to_tag="to-tag-1",
                             headers=SDP_HEADERS if body else {}, body=body))
    ksr.flags |= set(flags)
    ksr.bflags |= set(bflags)
    ksr.rtpengine_sessions.add(ksr.message.call_id)
    make_router(ksr, MEDIA_ON).ksr_onreply_manage(None)
    return ksr


@pytest.mark.parametrize("status, body, flags, bflags, expected", [
    (200, SDP, {FLT_SDP_OFFER}, (), [(ANSWER, (f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",))]),
    (183, SDP, {FLT_SDP_OFFER}, (), [(ANSWER, (f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",))]),
    # late offer: the INVITE had no SDP
    (200, SDP, (), (), [(OFFER, (f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",))]),
    # the callee is registered behind NAT
    (200, SDP, {FLT_SDP_OFFER}, {FLB_NATB}, [(ANSWER, (f"{SEED_FLAGS} SIP-source-address endpoint-learning-heuristic strict-source",))]),
    # the caller's NAT flag (request flags show in reply routes) is not the callee's
    (200, SDP, {FLT_SDP_OFFER, FLT_NATS}, (), [(ANSWER, (f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source",))]),
    (180, "", {FLT_SDP_OFFER}, (), []),
    (100, "", {FLT_SDP_OFFER}, (), []),
])
def test_reply_route(status, body, flags, bflags, expected):
    assert rtpengine_calls(reply(status, body, flags, bflags)) == expected


def test_failed_answer_is_logged_once():
    ksr = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", headers=SDP_HEADERS, body=SDP))
    ksr.flags.add(FLT_SDP_OFFER)
    ksr.rtpengine_up = False
    make_router(ksr, MEDIA_ON).ksr_onreply_manage(None)
    assert ksr.log_text("err").count("rtpengine answer for the 200 reply failed") == 1


# --- failure route --------------------------------------------------------------------------


def failed(canceled=False, to_tag=""):
    ksr = FakeKSR(SipMessage(method="INVITE", to_tag=to_tag))
    ksr.canceled = canceled
    ksr.rtpengine_sessions.add(ksr.message.call_id)
    make_router(ksr, MEDIA_ON).ksr_failure_manage(None)
    return ksr


def test_final_failure_of_the_initial_invite_deletes_the_session():
    ksr = failed()
    assert rtpengine_calls(ksr) == [(DELETE, ())] and ksr.rtpengine_sessions == set()


def test_cancelled_invite_is_not_deleted_twice():
    assert rtpengine_calls(failed(canceled=True)) == []


def test_failed_reinvite_keeps_the_call_media():
    assert rtpengine_calls(failed(to_tag="to-tag-1")) == []


# --- profiles and the SBC hooks -------------------------------------------------------------


def test_profile_flags_codecs_and_rtcp_mux_on_the_offer():
    settings = {"media": {"enabled": True, "profile": "hd",
                          "profiles": {"hd": {"flags": ["replace-origin"], "rtcp_mux": ["accept", "offer"],
                                              "codec_strip": ["G729"], "codec_transcode": ["opus"]}}}}
    ksr = routed(invite(), settings=settings)
    assert ksr.calls_to(OFFER) == [("replace-origin trust-address endpoint-learning-off strict-source rtcp-mux-accept rtcp-mux-offer "
                                    "codec-strip=G729 codec-transcode=opus",)]


class TwoInterfaceRouter(Router):
    """What the SBC does: name the interfaces of each side."""

    def media_directions(self, msg, is_reply=False):
        return {"ingress": "private", "egress": "public"} if is_reply else {"ingress": "public", "egress": "private"}


def test_media_directions_hook_adds_direction_on_offers():
    ksr = routed(invite(), router_class=TwoInterfaceRouter)
    assert ksr.calls_to(OFFER) == [(f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source direction=public direction=private",)]
    late = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", headers=SDP_HEADERS, body=SDP))
    make_router(late, MEDIA_ON, router_class=TwoInterfaceRouter).ksr_onreply_manage(None)
    assert late.calls_to(OFFER) == [(f"{SEED_FLAGS} trust-address endpoint-learning-off strict-source direction=private direction=public",)]


def test_rtpengine_raising_is_answered_500_by_the_handler_guard():
    ksr = FakeKSR(invite())
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]

    def boom(k, flags):
        raise RuntimeError("module blew up")

    ksr.results[OFFER] = boom
    make_router(ksr, MEDIA_ON).ksr_request_route(None)
    assert ksr.replies == [(500, "Server Internal Error")] and ksr.relayed == []
