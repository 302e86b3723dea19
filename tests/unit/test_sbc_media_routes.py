"""SBC media: the direction decision as a table, and the routes on the fake KSR (offer,
answer, late offer, re-INVITE and BYE from either side, failover, profiles, gateways and NAT)."""
import pytest

from kemi import sip
from kemi.names import FLT_SDP_OFFER
from kemi.names import AVP_EGRESS, AVP_GATEWAY_SET, AVP_INGRESS
from kemi.sbc.direction import CallSides
from kemi.sbc.media import SideMedia, directions, profile_name, sdp_sides, side_media
from kemi.settings import SettingsError, parse_settings
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import TEST_ROUTE_SECRET, FakeDids, FakeSubscribers, make_router, signed_route

SEED = "replace-origin replace-session-connection trust-address endpoint-learning-off strict-source"
OFFER, ANSWER = "rtpengine.rtpengine_offer", "rtpengine.rtpengine_answer"
DELETE, DELETE_FLAGS = "rtpengine.rtpengine_delete0", "rtpengine.rtpengine_delete"
SDP = "v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_HEADERS = {"Content-Type": "application/sdp"}
PUB_GW = ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]
PRIV_GW = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
INTERFACES = [{"name": "public", "address": "203.0.113.1"}, {"name": "private", "address": "198.51.100.1"}]


def raw_settings(public=None, private=None, media=None):
    return {
        "sip": {"domain": "198.51.100.1"},
        "security": {"route_secret": TEST_ROUTE_SECRET},
        "media": {"rtpengine": {"interfaces": INTERFACES}, **(media or {})},
        "sbc": {"enabled": True,
                "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                           "gateways": PUB_GW, **(public or {})},
                "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                            "gateways": PRIV_GW, **(private or {})}},
    }


SETTINGS = parse_settings(raw_settings())


# --- the decision, plain values --------------------------------------------------------------

MEDIA = {"public": SideMedia("pub-if", "carrier"), "private": SideMedia("priv-if", "pbx")}


@pytest.mark.parametrize("call, is_reply, sender, receiver, pair, profile", [
    # a call from the public side: the INVITE's SDP goes public -> private, the 200's back
    (CallSides("public", "private"), False, "public", "private", ("pub-if", "priv-if"), "pbx"),
    (CallSides("public", "private"), True, "private", "public", ("priv-if", "pub-if"), "carrier"),
    # the callee's re-INVITE is a transaction of its own, from the private side
    (CallSides("private", "public"), False, "private", "public", ("priv-if", "pub-if"), "carrier"),
    (CallSides("private", "public"), True, "public", "private", ("pub-if", "priv-if"), "pbx"),
    # both parties on one side (extension to extension): one interface both ways
    (CallSides("private", "private"), False, "private", "private", ("priv-if", "priv-if"), "pbx"),
    (CallSides("private", "private"), True, "private", "private", ("priv-if", "priv-if"), "pbx"),
])
def test_direction_and_profile_decision(call, is_reply, sender, receiver, pair, profile):
    assert sdp_sides(call, is_reply) == (sender, receiver)
    assert directions(call, is_reply, MEDIA) == {"ingress": pair[0], "egress": pair[1]}
    assert profile_name(call, is_reply, MEDIA) == profile


def test_side_media_defaults_to_the_side_name_and_media_profile():
    s = parse_settings(raw_settings(
        private={"rtpengine_interface": "lan", "media_profile": "pbx"},
        media={"rtpengine": {"interfaces": [INTERFACES[0], {"name": "lan", "address": "198.51.100.1"}]},
               "profiles": {"pbx": {"rtcp_mux": ["demux"]}}}))
    assert side_media(s.sbc, s.media.profile) == {"public": SideMedia("public", "default"),
                                                   "private": SideMedia("lan", "pbx")}


# --- the routes on the fake KSR ---------------------------------------------------------------


def ksr_for(message):
    ksr = FakeKSR(message, local_addresses=("203.0.113.1", "198.51.100.1"),
                  local_domains=("203.0.113.1", "198.51.100.1"))
    ksr.gateways = {1: list(PUB_GW), 2: list(PRIV_GW)}
    ksr.gateway_sockets = {**{u: "public" for u in PUB_GW}, **{u: "private" for u in PRIV_GW}}
    return ksr


def router(ksr, settings=SETTINGS):
    return make_router(ksr, settings, FakeSubscribers(("3001", "3002")), dids=FakeDids())


def gateway_invite(source, socket_name, host, body=SDP):
    return SipMessage(method="INVITE", ruri=f"sip:15550100@{host}", source=(source, 5060),
                      socket_name=socket_name, received_on=f"udp:{host}:5060",
                      headers=SDP_HEADERS if body else {}, body=body)


def request(message, settings=SETTINGS, ksr=None):
    ksr = ksr or ksr_for(message)
    router(ksr, settings).ksr_request_route(None)
    return ksr


def offered(ksr):
    return [args[0] for args in ksr.calls_to(OFFER)]


def test_call_from_public_gateway_offers_public_to_private():
    ksr = request(gateway_invite("203.0.113.10", "public", "203.0.113.1"))
    assert offered(ksr) == [f"{SEED} direction=public direction=private"]
    assert ksr.relayed[0]["socket"] == "private" and FLT_SDP_OFFER in ksr.flags


def test_call_from_private_gateway_offers_private_to_public():
    ksr = request(gateway_invite("198.51.100.11", "private", "198.51.100.1"))
    assert offered(ksr) == [f"{SEED} direction=private direction=public"]
    assert ksr.relayed[0]["socket"] == "public"


def test_offer_is_made_once_the_egress_socket_is_known():
    """A gateway without sockname=: route_sbc_egress forces the side's socket BEFORE the offer."""
    message = gateway_invite("203.0.113.10", "public", "203.0.113.1")
    ksr = ksr_for(message)
    ksr.gateway_sockets = {}
    request(message, ksr=ksr)
    order = [k for k, _ in ksr.calls if k in ("corex.set_send_socket_name", OFFER, "tm.t_relay")]
    assert order == ["corex.set_send_socket_name", OFFER, "tm.t_relay"]
    assert offered(ksr) == [f"{SEED} direction=public direction=private"]


def test_extension_calling_out_offers_private_to_public():
    message = SipMessage(method="INVITE", ruri="sip:0049301234@198.51.100.1", source=("198.51.100.30", 5060),
                         socket_name="private", received_on="udp:198.51.100.1:5060",
                         from_uri="sip:3001@198.51.100.1",
                         headers={"Proxy-Authorization": "Digest ...", **SDP_HEADERS}, body=SDP)
    ksr = request(message)
    assert offered(ksr) == [f"{SEED} direction=private direction=public"]


def reply(status=200, socket_name="private", source="198.51.100.10", ingress="public", offered_flag=True):
    """The onreply route of an INVITE relayed from `ingress`; the reply arrived on `socket_name`."""
    message = SipMessage(method="INVITE", status=status, reason="OK", to_tag="gw-tag", socket_name=socket_name,
                         source=(source, 5060), headers=SDP_HEADERS, body=SDP)
    ksr = ksr_for(message)
    ksr.pvs[AVP_INGRESS] = ingress
    ksr.rtpengine_sessions.add(message.call_id)
    if offered_flag:
        ksr.flags.add(FLT_SDP_OFFER)
    router(ksr).ksr_onreply_manage(None)
    return ksr


def test_answer_in_the_reply_gets_the_transactions_sides_reversed():
    ksr = reply()
    assert ksr.calls_to(ANSWER) == [(f"{SEED} direction=private direction=public",)]
    assert not ksr.called(OFFER)


def test_answer_follows_the_transaction_not_a_fixed_guess():
    # a call from the private side: its 200 arrives on the public NIC from a public gateway
    ksr = reply(socket_name="public", source="203.0.113.11", ingress="private")
    assert ksr.calls_to(ANSWER) == [(f"{SEED} direction=public direction=private",)]


def test_early_media_183_is_answered_the_same_way():
    assert reply(status=183).calls_to(ANSWER) == [(f"{SEED} direction=private direction=public",)]


def test_late_offer_in_the_200_is_offered_from_the_callee_side():
    ksr = reply(offered_flag=False)
    assert offered(ksr) == [f"{SEED} direction=private direction=public"]


def in_dialog(method, source, socket_name, leaves_through, body="", sbc_host="198.51.100.1"):
    """An in-dialog request; loose_route forces the socket of the other Record-Route (double RR)."""
    message = SipMessage(method=method, ruri="sip:peer@192.0.2.99:5060", to_tag="t1", source=(source, 5060),
                         socket_name=socket_name, received_on=f"udp:{sbc_host}:5060",
                         headers={"Route": signed_route(host=sbc_host, extra=";r2=on"),
                                  **(SDP_HEADERS if body else {})}, body=body)
    ksr = ksr_for(message)
    ksr.rtpengine_sessions.add(message.call_id)
    ksr.results["rr.loose_route"] = lambda k: (setattr(k, "send_socket", leaves_through), 1)[1]
    router(ksr).ksr_request_route(None)
    assert ksr.relayed, ksr.replies
    return ksr


def test_callee_side_reinvite_offers_private_to_public():
    ksr = in_dialog("INVITE", "198.51.100.10", "private", "public", body=SDP)
    assert offered(ksr) == [f"{SEED} direction=private direction=public"]
    assert (ksr.pvs[AVP_INGRESS], ksr.pvs[AVP_EGRESS]) == ("private", "public")


def test_caller_side_reinvite_offers_public_to_private():
    ksr = in_dialog("INVITE", "203.0.113.10", "public", "private", body=SDP, sbc_host="203.0.113.1")
    assert offered(ksr) == [f"{SEED} direction=public direction=private"]


def test_ack_answering_a_late_offer_comes_from_the_caller_side():
    ksr = in_dialog("ACK", "203.0.113.10", "public", "private", body=SDP, sbc_host="203.0.113.1")
    assert ksr.calls_to(ANSWER) == [(f"{SEED} direction=public direction=private",)]


@pytest.mark.parametrize("source, socket_name, leaves, host", [
    ("203.0.113.10", "public", "private", "203.0.113.1"),      # the caller hangs up
    ("198.51.100.10", "private", "public", "198.51.100.1"),    # the callee hangs up
])
def test_bye_from_either_side_deletes_the_session(source, socket_name, leaves, host):
    ksr = in_dialog("BYE", source, socket_name, leaves, sbc_host=host)
    assert ksr.calls_to(DELETE) == [()] and ksr.rtpengine_sessions == set()


def test_own_interface_names_per_side():
    s = parse_settings(raw_settings(public={"rtpengine_interface": "wan"}, private={"rtpengine_interface": "lan"},
                                    media={"rtpengine": {"interfaces": [
                                        {"name": "wan", "address": "203.0.113.1"},
                                        {"name": "lan", "address": "198.51.100.1"}]}}))
    ksr = request(gateway_invite("203.0.113.10", "public", "203.0.113.1"), settings=s)
    assert offered(ksr) == [f"{SEED} direction=wan direction=lan"]


def test_profile_of_the_side_the_sdp_is_sent_to():
    s = parse_settings(raw_settings(private={"media_profile": "pbx"},
                                    media={"profiles": {"pbx": {"rtcp_mux": ["demux"], "codec_strip": ["G729"]}}}))
    to_private = request(gateway_invite("203.0.113.10", "public", "203.0.113.1"), settings=s)
    assert offered(to_private) == [f"{SEED} direction=public direction=private rtcp-mux-demux codec-strip=G729"]
    to_public = request(gateway_invite("198.51.100.10", "private", "198.51.100.1"), settings=s)
    assert offered(to_public) == [f"{SEED} direction=private direction=public"]


def test_gateway_is_trusted_even_with_a_private_sdp_address():
    """nat_uac_test(8) fires on RFC 1918 SDP; a listed gateway is not behind NAT (no NAT between sides)."""
    message = gateway_invite("198.51.100.10", "private", "198.51.100.1")
    ksr = ksr_for(message)
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests in (sip.NAT_TEST_SDP, sip.NAT_TESTS_REPLY) else -1
    request(message, ksr=ksr)
    assert offered(ksr) == [f"{SEED} direction=private direction=public"]


def test_gateway_reply_is_trusted_a_phone_reply_is_not():
    def answered(source):
        message = SipMessage(method="INVITE", status=200, reason="OK", to_tag="x", socket_name="private",
                             source=(source, 5060), headers=SDP_HEADERS, body=SDP)
        ksr = ksr_for(message)
        ksr.pvs[AVP_INGRESS] = "public"
        ksr.flags.add(FLT_SDP_OFFER)
        ksr.rtpengine_sessions.add(message.call_id)
        ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests == sip.NAT_TESTS_REPLY else -1
        router(ksr).ksr_onreply_manage(None)
        return ksr.calls_to(ANSWER)[0][0]
    assert "trust-address" in answered("198.51.100.10")             # a private gateway
    assert "SIP-source-address" in answered("198.51.100.30")        # an extension's phone


def test_subscriber_phone_keeps_nat_detection():
    message = SipMessage(method="INVITE", ruri="sip:0049301234@198.51.100.1", source=("198.51.100.30", 5060),
                         socket_name="private", received_on="udp:198.51.100.1:5060",
                         from_uri="sip:3001@198.51.100.1",
                         headers={"Proxy-Authorization": "Digest ...", **SDP_HEADERS}, body=SDP)
    ksr = ksr_for(message)
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests == sip.NAT_TEST_SDP else -1
    request(message, ksr=ksr)
    assert offered(ksr) == ["replace-origin replace-session-connection SIP-source-address endpoint-learning-heuristic strict-source "
                            "direction=private direction=public"]


def test_unknown_egress_falls_back_to_rtpengines_default_interface():
    """No socket forced and no gateway set (e.g. SIPOUT to a foreign domain): no direction=."""
    message = SipMessage(method="INVITE", ruri="sip:bob@example.org", source=("198.51.100.30", 5060),
                         socket_name="private", received_on="udp:198.51.100.1:5060",
                         from_uri="sip:3001@198.51.100.1",
                         headers={"Proxy-Authorization": "Digest ...", **SDP_HEADERS}, body=SDP)
    ksr = request(message)
    assert ksr.relayed and offered(ksr) == [SEED]


# --- failover keeps the session; a real failure deletes it -------------------------------------


def failure(code, rest=(PRIV_GW[1],), canceled=False):
    message = gateway_invite("203.0.113.10", "public", "203.0.113.1")
    ksr = ksr_for(message)
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr._ds_current, ksr._ds_rest = PRIV_GW[0], list(rest)
    ksr.t_reply_code = code
    ksr.canceled = canceled
    ksr.rtpengine_sessions.add(message.call_id)
    router(ksr).ksr_failure_manage(None)
    return ksr


def test_failover_to_the_next_gateway_keeps_the_media_session():
    ksr = failure(503)
    assert ksr.relayed[0]["du"] == PRIV_GW[1]
    assert not ksr.called(DELETE) and not ksr.called(DELETE_FLAGS)
    assert ksr.rtpengine_sessions == {ksr.message.call_id}


def test_no_gateway_left_deletes_the_session_and_answers_503():
    ksr = failure(503, rest=())
    assert ksr.replies == [(503, "Service Unavailable - no gateway left in set 2 (private)")]
    assert ksr.called(DELETE) and ksr.rtpengine_sessions == set()


def test_callee_refusal_deletes_the_session_without_failover():
    ksr = failure(486)
    assert not ksr.relayed and ksr.called(DELETE)


def test_cancelled_call_is_neither_failed_over_nor_deleted_twice():
    ksr = failure(503, canceled=True)
    assert not ksr.relayed and not ksr.called(DELETE)


# --- settings -------------------------------------------------------------------------------


BAD = [
    ({"media": {}}, "media.rtpengine.interfaces", "no interface named 'public'",
     'add { name = "public", address = "203.0.113.1" }'),
    ({"media": {"rtpengine": {"interfaces": INTERFACES[:1]}}}, "media.rtpengine.interfaces",
     "no interface named 'private'", 'add { name = "private", address = "198.51.100.1" }'),
    ({"private": {"rtpengine_interface": "public"}}, "sbc.private.rtpengine_interface",
     "also sbc.public's", "give each side its own interface"),
    ({"public": {"rtpengine_interface": "bad name"}}, "sbc.public.rtpengine_interface",
     "not a valid rtpengine interface name", "letters, digits"),
    ({"private": {"media_profile": "nope"}}, "sbc.private.media_profile", "'nope' is not a profile",
     "define [media.profiles.nope]"),
]


@pytest.mark.parametrize("change, key, problem, fix", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_sbc_media_settings_errors_name_key_and_fix(change, key, problem, fix):
    raw = raw_settings(public=change.get("public"), private=change.get("private"))
    if "media" in change:
        raw["media"] = change["media"]
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert err.value.key == key
    assert problem in str(err.value) and fix in str(err.value)


def test_no_interfaces_needed_without_media_or_for_a_remote_rtpengine():
    off = raw_settings()
    off["media"] = {"enabled": False}
    assert parse_settings(off).media.enabled is False
    remote = raw_settings()
    remote["media"] = {"instances": [{"ng": "udp:192.0.2.7:2223"}], "rtpengine": {"start": False}}
    assert parse_settings(remote).sbc.public.media_interface == "public"
