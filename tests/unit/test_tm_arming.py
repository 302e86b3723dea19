"""route[RELAY] arms a tm callback only when it has work: each armed one is an entry into Python.

branch route: NAT (a NATed caller or branch); reply route: media, or a NATed branch; failure
route: media (delete), or an SBC call to a gateway set (failover). A subclass's own route
is always armed.
"""
import pytest

from kemi import names
from kemi.routing import Router
from kemi.testing import FakeKSR, SipMessage, make_router, signed_route

CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}
MEDIA_OFF = {"media": {"enabled": False}}
BRANCH, REPLY, FAILURE = "branch_route", "onreply_route", "failure_route"


def relay(message: SipMessage, settings=MEDIA_OFF, contacts=("sip:2001@192.0.2.20:5060",), setup=None,
          router_class=None) -> FakeKSR:
    ksr = FakeKSR(message)
    ksr.locations["2001"] = list(contacts)
    if setup:
        setup(ksr)
    make_router(ksr, settings, router_class=router_class).ksr_request_route(None)
    assert ksr.relayed, ksr.replies
    return ksr


def invite(**kw) -> SipMessage:
    return SipMessage(headers=dict(CREDS), **kw)


def test_a_plain_call_without_media_arms_nothing():
    assert relay(invite()).tm_routes == {}


def test_control_with_media_on_the_reply_and_failure_routes_are_armed():
    ksr = relay(invite(), settings={})
    assert ksr.tm_routes == {REPLY: names.ONREPLY_ROUTE, FAILURE: names.FAILURE_ROUTE}


def test_a_nated_callee_gets_the_reply_route_for_its_contact_alias():
    ksr = relay(invite(), setup=lambda k: k.bflags.add(names.FLB_NATB))
    assert ksr.tm_routes == {BRANCH: names.BRANCH_ROUTE, REPLY: names.ONREPLY_ROUTE}


def test_a_nated_caller_alone_gets_the_branch_route_but_no_reply_route():
    ksr = relay(invite(), setup=lambda k: k.results.__setitem__("nathelper.nat_uac_test", 1))
    assert names.FLT_NATS in ksr.flags
    assert ksr.tm_routes == {BRANCH: names.BRANCH_ROUTE}


def test_a_forked_call_gets_the_reply_route():
    ksr = relay(invite(), contacts=("sip:2001@192.0.2.20:5060", "sip:2001@192.0.2.21:5060"))
    assert ksr.tm_routes == {BRANCH: names.BRANCH_ROUTE, REPLY: names.ONREPLY_ROUTE}


@pytest.mark.parametrize("extra, armed", [(";nat=yes", True), ("", False)])
def test_a_reinvite_gets_the_reply_route_only_with_nat_yes(extra, armed):
    message = SipMessage(method="INVITE", to_tag="t1", headers={"Route": signed_route(extra=extra)})
    ksr = relay(message)
    assert (REPLY in ksr.tm_routes) is armed and FAILURE not in ksr.tm_routes


def test_a_subclass_with_its_own_reply_or_failure_route_gets_them_on_every_call():
    class Watching(Router):
        def onreply_manage(self, msg):
            super().onreply_manage(msg)

        def failure_manage(self, msg):
            super().failure_manage(msg)

    ksr = relay(invite(), router_class=Watching)
    assert ksr.tm_routes == {REPLY: names.ONREPLY_ROUTE, FAILURE: names.FAILURE_ROUTE}


SBC = {"media": {"enabled": False},
       "sbc": {"enabled": True,
               "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                          "gateways": ["sip:203.0.113.10:5060"]},
               "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                           "gateways": ["sip:198.51.100.10:5060"]}}}


def test_an_sbc_call_to_a_gateway_set_gets_the_failure_route_for_failover():
    message = SipMessage(ruri="sip:15550100@203.0.113.1", source=("203.0.113.10", 5060), socket_name="public",
                         received_on="udp:203.0.113.1:5060")
    ksr = FakeKSR(message)
    ksr.gateways = {1: ["sip:203.0.113.10:5060"], 2: ["sip:198.51.100.10:5060"]}
    make_router(ksr, SBC).ksr_request_route(None)
    assert ksr.relayed and ksr.tm_routes == {FAILURE: names.FAILURE_ROUTE}


def test_control_an_sbc_call_to_a_local_extension_has_no_failover_to_arm():
    message = SipMessage(headers=dict(CREDS), source=("198.51.100.20", 5060), socket_name="private",
                         received_on="udp:198.51.100.1:5060")
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@198.51.100.30:5060"]
    make_router(ksr, SBC).ksr_request_route(None)
    assert ksr.relayed and ksr.tm_routes == {}


@pytest.mark.parametrize("nated, in_dialog, route_nat, extra, callee, expected", [
    (True, False, False, 0, False, False),      # a NATed caller: its replies are left alone
    (False, False, False, 0, True, True),       # the callee's contact is NATed: alias its Contact
    (False, False, False, 2, False, True),      # forked: other branches' flags are unknown here
    (False, True, True, 0, False, True),        # in dialog: our Route's nat=yes
    (False, True, False, 3, True, False),       # in dialog: only nat=yes counts
    (False, False, False, 0, False, False),
])
def test_reply_route_needed(nated, in_dialog, route_nat, extra, callee, expected):
    from kemi.nat.work import reply_route_needed
    assert reply_route_needed(in_dialog, route_nat, extra, callee) is expected
