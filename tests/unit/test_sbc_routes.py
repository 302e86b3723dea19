"""The SBC routes on the fake KSR: 403, trust, gateway sets, DIDs, failover, call sides."""
import pytest

from kemi.names import AVP_EGRESS, AVP_GATEWAY_SET, AVP_INGRESS
from kemi.settings import parse_settings
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import TEST_ROUTE_SECRET, FakeDids, FakeSubscribers, make_router, signed_route

DOMAIN = "sbc.example.test"
SETTINGS = parse_settings({
    "sip": {"domain": DOMAIN},
    "security": {"route_secret": TEST_ROUTE_SECRET},
    "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                           {"name": "private", "address": "198.51.100.1"}]}},
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                       "gateways": ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]},
            "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                        "gateways": ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]}},
})
PUB_GW = ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]
PRIV_GW = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
LOCAL = ("203.0.113.1", "198.51.100.1", DOMAIN)


def invite(source, socket_name, ruri_user="15550100", host="203.0.113.1", **kw):
    return SipMessage(method="INVITE", ruri=f"sip:{ruri_user}@{host}", source=(source, 5060),
                      socket_name=socket_name, received_on=f"udp:{host}:5060", **kw)


def ksr_for(message):
    ksr = FakeKSR(message, local_addresses=LOCAL[:2], local_domains=LOCAL)
    ksr.gateways = {1: list(PUB_GW), 2: list(PRIV_GW)}
    ksr.gateway_sockets = {**{u: "public" for u in PUB_GW}, **{u: "private" for u in PRIV_GW}}
    return ksr


def route(message, subscribers=("3001", "3002"), dids=None, ksr=None):
    ksr = ksr or ksr_for(message)
    router = make_router(ksr, SETTINGS, FakeSubscribers(subscribers), dids=FakeDids(dids or {}))
    router.ksr_request_route(None)
    return ksr, router


def test_unknown_source_gets_403_and_nothing_is_relayed():
    ksr, _ = route(invite("192.0.2.66", "public"))
    assert ksr.replies == [(403, "Forbidden")]
    assert not ksr.relayed and not ksr.called("auth_db.auth_check")
    assert "192.0.2.66" in ksr.log_text("notice")


def test_spoofed_private_source_on_public_nic_gets_403():
    ksr, _ = route(invite("198.51.100.10", "public"))
    assert ksr.replies == [(403, "Forbidden")]


def test_ack_from_unknown_source_is_not_answered():
    ksr, _ = route(SipMessage(method="ACK", source=("192.0.2.66", 5060), socket_name="public"))
    assert ksr.replies == [] and not ksr.relayed


def test_public_gateway_call_goes_to_private_set_through_private_socket():
    ksr, _ = route(invite("203.0.113.10", "public"))
    assert not ksr.called("auth_db.auth_check")               # a listed gateway: trusted by IP
    assert ksr.calls_to("dispatcher.ds_select_dst") == [(2, 4)]
    assert ksr.relayed[0]["du"] == PRIV_GW[0] and ksr.relayed[0]["socket"] == "private"
    assert ksr.pvs[AVP_INGRESS] == "public" and ksr.pvs[AVP_EGRESS] == "private"
    assert ksr.pvs[AVP_GATEWAY_SET] == 2
    assert ksr.tm_routes["failure_route"] == "ksr_failure_manage"
    assert ksr.called("rr.record_route")


def test_private_gateway_call_goes_to_public_set():
    ksr, _ = route(invite("198.51.100.11", "private", host="198.51.100.1"))
    assert ksr.calls_to("dispatcher.ds_select_dst") == [(1, 4)]
    assert ksr.relayed[0]["socket"] == "public"
    assert (ksr.pvs[AVP_INGRESS], ksr.pvs[AVP_EGRESS]) == ("private", "public")


def test_round_robin_alternates_gateways():
    used = []
    ksr = None
    for _ in range(4):
        message = invite("203.0.113.10", "public")
        fresh = ksr_for(message)
        if ksr is not None:
            fresh._ds_next = ksr._ds_next                        # the set's position persists
        ksr, _ = route(message, ksr=fresh)
        used.append(ksr.relayed[0]["du"])
    assert used == PRIV_GW * 2


def test_non_gateway_on_a_known_side_must_authenticate():
    ksr, _ = route(invite("203.0.113.99", "public"))
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert not ksr.relayed and not ksr.called("dispatcher.ds_select_dst")


def test_register_from_a_gateway_address_is_challenged():
    message = SipMessage(method="REGISTER", ruri=f"sip:{DOMAIN}", source=("198.51.100.10", 5060),
                         socket_name="private", from_uri=f"sip:3001@{DOMAIN}", to_uri=f"sip:3001@{DOMAIN}")
    ksr, _ = route(message)
    assert ksr.replies == [(401, "Unauthorized")]
    assert not ksr.called("registrar.save")


def test_extension_dialling_outside_number_goes_to_public_set():
    message = invite("198.51.100.30", "private", ruri_user="0049301234", host=DOMAIN,
                     from_uri=f"sip:3001@{DOMAIN}", headers={"Proxy-Authorization": "Digest ..."})
    ksr, _ = route(message)
    assert ksr.calls_to("dispatcher.ds_select_dst") == [(1, 4)]
    assert ksr.relayed[0]["du"] == PUB_GW[0] and ksr.relayed[0]["socket"] == "public"
    assert "Proxy-Authorization" not in ksr.relayed[0]["headers"]


def test_extension_calling_extension_uses_location():
    message = invite("198.51.100.30", "private", ruri_user="3002", host=DOMAIN,
                     from_uri=f"sip:3001@{DOMAIN}", headers={"Proxy-Authorization": "Digest ..."})
    ksr = ksr_for(message)
    ksr.locations["3002"] = ["sip:3002@198.51.100.31:5060"]
    route(message, ksr=ksr)
    assert not ksr.called("dispatcher.ds_select_dst")
    assert ksr.relayed[0]["ruri"] == "sip:3002@198.51.100.31:5060"


def test_mapped_did_rings_the_extension():
    message = invite("203.0.113.11", "public", ruri_user="15550100")
    ksr = ksr_for(message)
    ksr.locations["3001"] = ["sip:3001@198.51.100.30:5060"]
    route(message, ksr=ksr, dids={"15550100": "3001"})
    assert not ksr.called("dispatcher.ds_select_dst")
    assert ksr.calls_to("pv.sets")[1:2] == [("$ru", f"sip:3001@{DOMAIN}")]
    assert ksr.relayed[0]["ruri"] == "sip:3001@198.51.100.30:5060"


def test_mapped_did_of_unregistered_extension_gets_480():
    route_ksr, _ = route(invite("203.0.113.11", "public"), dids={"15550100": "3001"})
    assert route_ksr.replies == [(480, "Temporarily Unavailable")]


def test_unmapped_did_goes_to_private_set():
    dids = FakeDids({"15550199": "3009"})
    message = invite("203.0.113.10", "public", ruri_user="15550100")
    ksr = ksr_for(message)
    make_router(ksr, SETTINGS, FakeSubscribers(), dids=dids).ksr_request_route(None)
    assert dids.asked == ["15550100"]
    assert ksr.calls_to("dispatcher.ds_select_dst") == [(2, 4)]


def test_private_gateway_never_consults_the_did_map():
    dids = FakeDids({"15550100": "3001"})
    ksr = ksr_for(invite("198.51.100.10", "private", host="198.51.100.1"))
    make_router(ksr, SETTINGS, FakeSubscribers(), dids=dids).ksr_request_route(None)
    assert dids.asked == [] and ksr.calls_to("dispatcher.ds_select_dst") == [(1, 4)]


def test_empty_set_gets_503_naming_the_set():
    message = invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.inactive_gateways = set(PRIV_GW)
    route(message, ksr=ksr)
    assert ksr.replies == [(503, "Service Unavailable - no gateway left in set 2 (private)")]
    assert not ksr.relayed


def test_gateway_without_socket_attribute_gets_the_sides_socket():
    message = invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.gateway_sockets = {}                    # e.g. a dispatcher table without sockname=
    route(message, ksr=ksr)
    assert ksr.calls_to("corex.set_send_socket_name") == [("private",)]
    assert ksr.relayed[0]["socket"] == "private"


def failover(code, rest=("sip:198.51.100.11:5060",), canceled=False):
    """A failure route after the first private gateway answered `code`."""
    message = invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr._ds_current, ksr._ds_rest = PRIV_GW[0], list(rest)
    ksr.t_reply_code = code
    if canceled:
        ksr.results["tm.t_is_canceled"] = 1
    else:
        ksr.results["tm.t_is_canceled"] = -1
    router = make_router(ksr, SETTINGS, FakeSubscribers(), dids=FakeDids())
    router.ksr_failure_manage(None)
    return ksr


@pytest.mark.parametrize("code", [408, 500, 503, 504])
def test_failover_marks_and_tries_the_next_gateway(code):
    ksr = failover(code)
    assert ksr.ds_marks == [(PRIV_GW[0], "ip")]
    assert ksr.relayed[0]["du"] == PRIV_GW[1] and ksr.relayed[0]["socket"] == "private"
    assert ksr.tm_routes["failure_route"] == "ksr_failure_manage"
    assert ksr.replies == []
    assert f"answered {code}" in ksr.log_text("notice")


@pytest.mark.parametrize("code", [404, 480, 486, 603])
def test_callee_answers_are_not_failed_over(code):
    ksr = failover(code)
    assert ksr.ds_marks == [] and not ksr.relayed and ksr.replies == []


def test_none_left_is_503_naming_the_set():
    ksr = failover(503, rest=())
    assert ksr.ds_marks == [(PRIV_GW[0], "ip")]
    assert ksr.replies == [(503, "Service Unavailable - no gateway left in set 2 (private)")]
    assert not ksr.relayed


def test_cancelled_call_is_not_failed_over():
    ksr = failover(503, canceled=True)
    assert ksr.ds_marks == [] and not ksr.relayed


def test_failure_of_a_location_call_is_not_a_gateway_failover():
    message = invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private"})
    ksr.t_reply_code = 503
    ksr.results["tm.t_is_canceled"] = -1
    make_router(ksr, SETTINGS, FakeSubscribers(), dids=FakeDids()).ksr_failure_manage(None)
    assert not ksr.called("dispatcher.ds_mark_dst_state") and not ksr.relayed


def test_in_dialog_request_records_both_sides():
    # a BYE from the private callee: loose_route forced the public socket (double RR)
    message = SipMessage(method="BYE", ruri="sip:caller@203.0.113.10:5070", to_tag="t1",
                         source=("198.51.100.10", 5060), socket_name="private",
                         headers={"Route": signed_route(host="198.51.100.1", extra=";r2=on")})
    ksr = ksr_for(message)
    ksr.results["rr.loose_route"] = lambda k: (setattr(k, "send_socket", "public"), 1)[1]
    make_router(ksr, SETTINGS).ksr_request_route(None)
    assert ksr.relayed and (ksr.pvs[AVP_INGRESS], ksr.pvs[AVP_EGRESS]) == ("private", "public")


def test_call_sides_for_request_branch_and_reply():
    message = invite("203.0.113.10", "public")
    ksr, router = route(message)
    from kemi.message import Message
    assert router.call_sides(Message(ksr)) == ("public", "private")       # request / branch route
    reply = SipMessage(status=200, reason="OK", socket_name="private", source=("198.51.100.10", 5060))
    ksr.message = reply
    assert router.call_sides(Message(ksr)) == ("public", "private")       # reply came in on private


def test_call_sides_is_none_when_sbc_is_off():
    ksr = FakeKSR(SipMessage())
    router = make_router(ksr)
    from kemi.message import Message
    from kemi.sbc.part import SbcSides
    assert not isinstance(router.sides, SbcSides) and router.call_sides(Message(ksr)) is None


def test_sbc_off_leaves_the_registrar_flow_alone():
    message = SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", source=("192.0.2.66", 5060))
    ksr = FakeKSR(message)
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert not any(k.startswith("dispatcher.") for k, _ in ksr.calls)
    assert not ksr.called("kx.get_send_sock_name")


def test_a_listed_gateway_is_never_flood_banned():
    """A carrier gateway sends many calls from one address: pike must not ban it."""
    message = invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.results["pike.pike_check_req"] = -2           # pike would call this a flood
    route(message, ksr=ksr)
    assert not ksr.called("pike.pike_check_req")
    assert ksr.relayed and ksr.htable == {}


def test_a_flooding_host_that_is_not_a_gateway_is_banned():
    message = invite("203.0.113.66", "public")        # on the public network, not listed
    ksr = ksr_for(message)
    ksr.results["pike.pike_check_req"] = -2
    route(message, ksr=ksr)
    assert ksr.called("pike.pike_check_req") and not ksr.relayed and ksr.replies == []
    assert ksr.htable == {("ipban", "203.0.113.66"): 1}


def test_the_sbc_sockets_count_as_own_addresses():
    """Never banned nor flood-checked: every listen address, not only sip.listen's."""
    from ipaddress import ip_address
    router = make_router(FakeKSR(), SETTINGS)
    assert {ip_address("203.0.113.1"), ip_address("198.51.100.1")} <= router.screen.own_addresses
