"""The NAT part and [nat] with the fake KSR: which checks find a NATed sender, what is done for
it, and what NAT handling off (nat.enabled = false) leaves out. End to end: tests/e2e/test_nat.py."""
import pytest

from kemi import names
from kemi.nat.part import Nat, NoNat
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.testing import FakeKSR, SipMessage, make_router, signed_route

CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}
REG_CREDS = {"Authorization": 'Digest username="2001", realm="127.0.0.1"'}
NATED = {"nathelper.nat_uac_test": 1}


def route(message: SipMessage, settings=None, results=None, bflags=()) -> FakeKSR:
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results.update(results or {})
    ksr.bflags.update(bflags)
    make_router(ksr, settings).ksr_request_route(None)
    return ksr


def register() -> SipMessage:
    return SipMessage(method="REGISTER", ruri="sip:127.0.0.1", from_uri="sip:2001@127.0.0.1",
                      to_uri="sip:2001@127.0.0.1", headers=REG_CREDS)


# --- detection: nat.tests ------------------------------------------------------------------------


@pytest.mark.parametrize("settings, tests", [({}, 19), ({"nat": {"tests": 147}}, 147), ({"nat": {"tests": 2}}, 2)])
def test_nat_tests_are_the_checks_nat_uac_test_runs(settings, tests):
    ksr = route(register(), settings)
    assert ksr.calls_to("nathelper.nat_uac_test") == [(tests,)]


def test_a_nated_register_is_fixed_flagged_for_keepalives_and_answered_over_its_connection():
    ksr = route(register(), results=NATED)
    assert ksr.called("nathelper.fix_nated_register") and not ksr.called("nathelper.set_contact_alias")
    assert {names.FLB_NATB, names.FLB_NATSIPPING} <= ksr.bflags
    assert ksr.called("set_reply_no_connect")


def test_a_nated_caller_gets_a_contact_alias_and_no_connection_back():
    ksr = route(SipMessage(headers=CREDS), results=NATED)
    assert ksr.called("nathelper.set_contact_alias") and names.FLT_NATS in ksr.flags
    assert ksr.called("set_reply_no_connect")


def test_a_sender_not_behind_nat_is_left_alone():
    ksr = route(SipMessage(headers=CREDS), results={"nathelper.nat_uac_test": -1})
    assert not ksr.called("nathelper.set_contact_alias") and names.FLT_NATS not in ksr.flags
    assert not ksr.called("set_reply_no_connect")


# --- the branch and reply routes -------------------------------------------------------------


def branch(in_dialog=False, bflags=(), flags=()) -> FakeKSR:
    headers = {"Route": signed_route(extra=";nat=yes")} if in_dialog else {}
    ksr = FakeKSR(SipMessage(method="INVITE", to_tag="t" if in_dialog else "", headers=headers))
    ksr.results["tmx.t_is_branch_route"] = 1
    ksr.bflags.update(bflags)
    ksr.flags.update(flags)
    make_router(ksr).ksr_branch_manage(None)
    return ksr


def test_a_branch_to_a_nated_contact_is_sent_over_its_connection_only():
    ksr = branch(bflags={names.FLB_NATB})
    assert ksr.called("set_forward_no_connect")
    assert ksr.calls_to("rr.add_rr_param") == [(";nat=yes",)]


def test_a_branch_from_a_nated_caller_to_a_plain_contact_may_connect():
    ksr = branch(flags={names.FLT_NATS})
    assert not ksr.called("set_forward_no_connect")
    assert ksr.calls_to("rr.add_rr_param") == [(";nat=yes",)]


def test_an_in_dialog_request_of_a_nated_dialog_is_sent_over_the_connection_only():
    ksr = branch(in_dialog=True)
    assert names.FLB_NATB in ksr.bflags and ksr.called("set_forward_no_connect")
    assert not ksr.called("rr.add_rr_param")


def reply(record_route: str, source: str = "192.0.2.20") -> FakeKSR:
    ksr = FakeKSR(SipMessage(method="INVITE", status=200, to_tag="t", source=(source, 5060),
                             headers={"Record-Route": record_route}))
    ksr.bflags.add(names.FLB_NATB)
    make_router(ksr).ksr_onreply_manage(None)
    return ksr


def test_the_nated_callees_reply_gets_a_contact_alias_when_it_comes_straight_from_the_callee():
    assert reply("<sip:127.0.0.1;lr>").called("nathelper.set_contact_alias")
    # another proxy between us and the callee (its Record-Route on top): its address is no binding
    assert not reply("<sip:192.0.2.99;lr>, <sip:127.0.0.1;lr>").called("nathelper.set_contact_alias")


# --- NAT handling off --------------------------------------------------------------------------


def test_nat_handling_off_builds_no_nat_part():
    assert isinstance(make_router(FakeKSR(SipMessage())).nat, Nat)
    assert isinstance(make_router(FakeKSR(SipMessage()), {"nat": {"enabled": False}}).nat, NoNat)


@pytest.mark.parametrize("message", [register(), SipMessage(headers=CREDS)], ids=["REGISTER", "INVITE"])
def test_nat_handling_off_detects_and_fixes_nothing(message):
    ksr = route(message, {"nat": {"enabled": False}}, results=NATED)
    assert not ksr.called("nathelper.nat_uac_test")
    assert not any(k.startswith("nathelper.") for k, _ in ksr.calls)
    assert names.FLT_NATS not in ksr.flags and not {names.FLB_NATB, names.FLB_NATSIPPING} & ksr.bflags


def test_nat_handling_off_arms_no_branch_route_for_a_nated_contact():
    ksr = route(SipMessage(headers=CREDS), {"nat": {"enabled": False}}, bflags={names.FLB_NATB})
    assert len(ksr.relayed) == 1 and "branch_route" not in ksr.tm_routes


# --- [nat] settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("nat, interval", [({}, 30), ({"keepalive_interval": 15}, 15), ({"keepalive_interval": 0}, 0),
                                           ({"enabled": False, "keepalive_interval": 15}, 0)])
def test_the_keepalive_interval_rendered_for_nathelper(nat, interval):
    cfg = render_kamailio_defines(parse_settings({"nat": nat}))
    assert f"#!define NAT_KEEPALIVE_INTERVAL {interval}\n" in cfg


@pytest.mark.parametrize("nat, key, words", [
    ({"tests": 0}, "nat.tests", "is not a sum of nat_uac_test checks"),
    ({"tests": 64}, "nat.tests", "is not a sum"),                # 64 is websocket.enabled's
    ({"tests": 256}, "nat.tests", "is not a sum"),
    ({"keepalive_interval": -1}, "nat.keepalive_interval", "out of range"),
])
def test_bad_nat_settings_name_the_key_and_the_fix(nat, key, words):
    with pytest.raises(SettingsError) as err:
        parse_settings({"nat": nat})
    assert err.value.key == key and words in str(err.value)


def test_websocket_needs_the_nat_handling():
    with pytest.raises(SettingsError) as err:
        parse_settings({"nat": {"enabled": False},
                        "websocket": {"enabled": True, "listen": ["ws:127.0.0.1:8080"]}})
    assert err.value.key == "nat.enabled" and "contact alias" in str(err.value)
