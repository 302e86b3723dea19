"""IPv4 <-> IPv6 bridging (kemi/media/families.py and the media part) with the fake KSR: each
offer tells rtpengine the family its receiver speaks, when Kamailio listens in both.
End to end: tests/e2e/test_nat.py (an IPv6 phone and a NATed IPv4 phone)."""
import pytest

from kemi.media.families import address_family, family_flag, uri_family
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.media.part import NoFamilies, ReceiverFamilies
from kemi.names import FLT_SDP_OFFER
from kemi.settings import DEFAULT_MEDIA_PROFILE
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router, signed_route

SDP = "v=0\r\no=- 1 1 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_HEADERS = {"Content-Type": "application/sdp"}
CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002"'}
OFFER_CALL, ANSWER_CALL = "rtpengine.rtpengine_offer", "rtpengine.rtpengine_answer"
RELAYS = [{"name": "default", "address": "127.0.0.1"}, {"name": "default", "address": "::1"}]
DUAL = {"sip": {"listen": ["udp:127.0.0.1:5060", "udp:[::1]:5060"]},
        "media": {"enabled": True, "rtpengine": {"interfaces": RELAYS}}}
IPV4_ONLY = {"media": {"enabled": True}}
NO_BRIDGING = {**DUAL, "media": {**DUAL["media"], "address_family_bridging": False}}


@pytest.mark.parametrize("uri, family", [
    ("sip:2001@[2001:db8::1]:5060;transport=udp", "IP6"), ("sip:[2001:db8::1]", "IP6"),
    ("sips:2001@198.51.100.1:5061", "IP4"), ("sip:198.51.100.12:2013", "IP4"),
    ("sip:2001@192.0.2.10;alias=198.51.100.11~5060~1", "IP4"), ("<sip:2001@[::1]>", "IP6"),
    ("sip:gw.example.com:5060", None), ("tel:+15550100", None), ("", None), ("sip:a@[bad", None),
])
def test_uri_family(uri, family):
    assert uri_family(uri) == family


def test_address_family_and_the_flag():
    assert [address_family(a) for a in ("2001:db8::1", "[::1]", "192.0.2.1")] == ["IP6", "IP6", "IP4"]
    assert address_family("example.com") is None
    assert family_flag("IP6") == ("address-family=IP6",) and family_flag(None) == ()


@pytest.mark.parametrize("op, expected", [
    (OFFER, "replace-origin replace-session-connection trust-address endpoint-learning-off strict-source "
            "address-family=IP6"),
    (ANSWER, "replace-origin replace-session-connection trust-address endpoint-learning-off strict-source"),
    # (an answer has no family: rtpengine remembers the offer's)
    (DELETE, ""),
])
def test_the_family_goes_on_offers_only(op, expected):
    assert build_flags(op, DEFAULT_MEDIA_PROFILE, family="IP6") == expected


def offered(settings, du=None, locations=("sip:2001@[2001:db8::20]:5060",)) -> list:
    ksr = FakeKSR(SipMessage(method="INVITE", headers={**CREDENTIALS, **SDP_HEADERS}, body=SDP))
    ksr.locations["2001"] = list(locations)
    if du:      # lookup() sets the R-URI to the contact and $du to its received address
        def lookup(k, table):
            k.pvs["$du"] = du
            return k._m_registrar__lookup(table)
        ksr.results["registrar.lookup"] = lookup
    make_router(ksr, settings).ksr_request_route(None)
    assert len(ksr.relayed) == 1
    return ksr.calls_to(OFFER_CALL)


def test_an_offer_to_an_ipv6_contact_asks_for_an_ipv6_relay_address():
    (flags,), = offered(DUAL)
    assert flags.endswith("strict-source address-family=IP6")


def test_an_offer_follows_the_destination_uri_over_the_contact():
    (flags,), = offered(DUAL, du="sip:198.51.100.11:5060", locations=("sip:2001@[2001:db8::20]:5060",))
    assert "address-family=IP4" in flags
    (flags,), = offered(DUAL, du="sip:[2001:db8::30]:5060", locations=("sip:2001@192.0.2.10:5060",))
    assert "address-family=IP6" in flags


def test_an_offer_to_a_host_name_leaves_the_family_to_rtpengine():
    (flags,), = offered(DUAL, locations=("sip:2001@phone.example.com:5060",))
    assert "address-family" not in flags


@pytest.mark.parametrize("settings", [IPV4_ONLY, NO_BRIDGING], ids=["one-family", "bridging-off"])
def test_no_family_flag_with_one_family_or_bridging_off(settings):
    (flags,), = offered(settings)
    assert "address-family" not in flags


def test_the_parts_chosen_once():
    assert isinstance(make_router(FakeKSR(SipMessage()), DUAL).media.families, ReceiverFamilies)
    assert isinstance(make_router(FakeKSR(SipMessage()), IPV4_ONLY).media.families, NoFamilies)
    assert isinstance(make_router(FakeKSR(SipMessage()), NO_BRIDGING).media.families, NoFamilies)


def test_an_in_dialog_reoffer_goes_to_the_ipv4_caller_it_is_addressed_to():
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2002@192.0.2.10:5060", to_tag="t",
                             headers={"Route": signed_route(), **SDP_HEADERS}, body=SDP))
    make_router(ksr, DUAL).ksr_request_route(None)
    (flags,), = ksr.calls_to(OFFER_CALL)
    assert "address-family=IP4" in flags


@pytest.mark.parametrize("caller, family", [("2001:db8::20", "IP6"), ("198.51.100.11", "IP4")])
def test_a_late_offer_in_a_reply_goes_to_the_callers_family(caller, family):
    ksr = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", headers=SDP_HEADERS, body=SDP))
    ksr.pvs["$T_req($si)"] = caller                  # the INVITE (without SDP) came from there
    make_router(ksr, DUAL).ksr_onreply_manage(None)
    (flags,), = ksr.calls_to(OFFER_CALL)
    assert flags.endswith(f"address-family={family}")


def test_an_answer_in_a_reply_carries_no_family():
    ksr = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", headers=SDP_HEADERS, body=SDP))
    ksr.flags.add(FLT_SDP_OFFER)
    make_router(ksr, DUAL).ksr_onreply_manage(None)
    (flags,), = ksr.calls_to(ANSWER_CALL)
    assert "address-family" not in flags
