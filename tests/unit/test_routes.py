"""Every route of the registrar/EXTEN routing against the fake KSR (no Kamailio needed)."""
import pytest

from kemi import names
from kemi.routing import Router
from kemi.testing import FakeKSR, FakeSubscribers, SipMessage, make_router, signed_route

CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}
REG_CREDS = {"Authorization": 'Digest username="2001", realm="127.0.0.1"'}


def run(message: SipMessage, setup=None, subscribers=None, router_class=None) -> FakeKSR:
    ksr = FakeKSR(message)
    if setup:
        setup(ksr)
    make_router(ksr, subscribers=subscribers, router_class=router_class).ksr_request_route(None)
    return ksr


# --- route[REQINIT] ---------------------------------------------------------------------

def test_options_to_the_server_is_answered_200():
    ksr = run(SipMessage(method="OPTIONS", ruri="sip:127.0.0.1:5060"))
    assert ksr.replies == [(200, "OK")]


def test_options_to_a_user_is_not_a_keepalive():
    ksr = run(SipMessage(method="OPTIONS", ruri="sip:2001@127.0.0.1"))
    assert ksr.replies == [(407, "Proxy Authentication Required")]


def test_max_forwards_exhausted_gets_483():
    ksr = run(SipMessage(headers={"Max-Forwards": "0"}))
    assert ksr.replies == [(483, "Too Many Hops")]
    assert not ksr.relayed


def test_insane_request_is_not_processed_further():
    ksr = run(SipMessage(), lambda k: k.results.__setitem__("sanity.sanity_check", -1))
    assert ksr.replies == [] and not ksr.relayed
    assert "malformed request" in ksr.log_text("info")
    assert not ksr.called("auth_db.auth_check")


# --- CANCEL, in-dialog, retransmissions --------------------------------------------------

def test_cancel_with_a_transaction_is_relayed():
    ksr = run(SipMessage(method="CANCEL"), lambda k: k.results.__setitem__("tm.t_check_trans", 1))
    assert len(ksr.relayed) == 1


def test_cancel_without_a_transaction_is_dropped():
    ksr = run(SipMessage(method="CANCEL"))
    assert not ksr.relayed and not ksr.replies


@pytest.mark.parametrize("method", ["BYE", "ACK", "INVITE", "UPDATE"])
def test_in_dialog_request_with_our_route_is_relayed(method):
    ksr = run(SipMessage(method=method, to_tag="t1", headers={"Route": signed_route()}))
    assert len(ksr.relayed) == 1 and not ksr.replies
    assert not ksr.called("auth_db.auth_check")        # in-dialog follows Record-Route


def test_in_dialog_request_without_route_gets_404():
    ksr = run(SipMessage(method="BYE", to_tag="t1"))
    assert ksr.replies == [(404, "Not Found")] and not ksr.relayed


def test_in_dialog_ack_without_route_or_transaction_is_absorbed():
    ksr = run(SipMessage(method="ACK", to_tag="t1"))
    assert not ksr.replies and not ksr.relayed


def test_ack_for_a_negative_reply_is_relayed_statefully():
    ksr = run(SipMessage(method="ACK", to_tag="t1"), lambda k: k.results.__setitem__("tm.t_check_trans", 1))
    assert len(ksr.relayed) == 1


def test_retransmission_is_absorbed():
    ksr = run(SipMessage(headers=CREDS), lambda k: k.results.__setitem__("tmx.t_precheck_trans", 1))
    assert not ksr.relayed and not ksr.called("auth_db.auth_check")
    assert ksr.called("tm.t_check_trans")


# --- route[AUTH] --------------------------------------------------------------------------

def test_invite_without_credentials_is_challenged_with_qop_and_not_relayed():
    ksr = run(SipMessage())
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert ksr.calls_to("auth.auth_challenge") == [("127.0.0.1", 1)]      # 1 = qop=auth
    assert not ksr.relayed


def test_register_without_credentials_gets_401():
    ksr = run(SipMessage(method="REGISTER", ruri="sip:127.0.0.1", to_uri="sip:2001@127.0.0.1"))
    assert ksr.replies == [(401, "Unauthorized")]


def test_foreign_from_domain_is_challenged_too():
    ksr = run(SipMessage(from_uri="sip:mallory@203.0.113.66"))
    assert ksr.replies == [(407, "Proxy Authentication Required")] and not ksr.relayed


@pytest.mark.parametrize("auth_rc", [-1, -2, -3, -4, -5, -6])
def test_every_auth_failure_gets_the_same_challenge(auth_rc):
    """Wrong password (-2) and unknown user (-3) must look the same: no enumeration."""
    ksr = run(SipMessage(headers=CREDS), lambda k: k.results.__setitem__("auth_db.auth_check", auth_rc))
    assert ksr.replies == [(407, "Proxy Authentication Required")]


def test_from_user_other_than_the_authenticated_user_gets_403():
    ksr = run(SipMessage(headers=CREDS), lambda k: k.results.__setitem__("auth_db.auth_check", -8))
    assert ksr.replies == [(403, "Forbidden - From user does not match credentials")]
    assert not ksr.relayed


def test_auth_uses_the_configured_domain_as_realm():
    ksr = FakeKSR(SipMessage())
    make_router(ksr, {"sip": {"domain": "pbx.example.com"}}).ksr_request_route(None)
    assert ksr.calls_to("auth_db.auth_check") == [("pbx.example.com", "subscriber", 1)]


def test_credentials_are_consumed_before_relaying_an_invite():
    def setup(k):
        k.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr = run(SipMessage(headers=dict(CREDS)), setup)
    assert ksr.relayed and "Proxy-Authorization" not in ksr.relayed[0]["headers"]


def test_trusted_source_skips_digest(monkeypatch):
    class Trusting(Router):
        def is_trusted_source(self, msg):
            return msg.source_ip == "192.0.2.99"

    def setup(k):
        k.locations["2001"] = ["sip:2001@192.0.2.20"]
    ksr = run(SipMessage(source=("192.0.2.99", 5060)), setup, router_class=Trusting)
    assert ksr.relayed and not ksr.called("auth_db.auth_check")


# --- route[REGISTRAR] ---------------------------------------------------------------------

def register(**kw):
    return SipMessage(method="REGISTER", ruri="sip:127.0.0.1", to_uri="sip:2001@127.0.0.1",
                      from_uri="sip:2001@127.0.0.1", headers=dict(REG_CREDS), **kw)


def test_register_is_saved_to_location_and_keeps_credentials():
    ksr = run(register())
    assert ksr.calls_to("registrar.save") == [("location", 0)]
    assert not ksr.called("auth.consume_credentials")
    assert not ksr.relayed


@pytest.mark.parametrize("kamailio, answer", [("5.6", "sl.sl_reply_error"), ("6.0", "sl.send_reply_error")])
def test_register_that_cannot_be_saved_gets_the_registrar_error_reply(kamailio, answer):
    """save()'s own error code answers it: 5.8+'s send_reply_error where Kamailio has it."""
    ksr = FakeKSR(register(), kamailio=kamailio)
    ksr.results["registrar.save"] = -1
    make_router(ksr).ksr_request_route(None)
    assert [k for k, _ in ksr.calls if "reply_error" in k] == [answer]
    assert ksr.replies == [(500, "Server Internal Error")]


@pytest.mark.parametrize("kamailio, answer", [("5.6", "sl.sl_reply_error"), ("6.0", "sl.send_reply_error")])
def test_a_relay_that_fails_is_answered_from_tms_error(kamailio, answer):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)),
                  kamailio=kamailio)
    ksr.results["auth_db.auth_check"] = 1
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results["tm.t_relay"] = -1
    make_router(ksr).ksr_request_route(None)
    assert [k for k, _ in ksr.calls if "reply_error" in k] == [answer]
    assert ksr.replies == [(500, "Server Internal Error")]


def test_register_from_behind_nat_is_fixed_and_pinged():
    ksr = run(register(), lambda k: k.results.__setitem__("nathelper.nat_uac_test", 1))
    assert ksr.called("nathelper.fix_nated_register")
    assert {names.FLB_NATB, names.FLB_NATSIPPING} <= ksr.bflags


def test_register_for_a_foreign_domain_is_refused():
    msg = register()
    msg.ruri = "sip:example.org"
    ksr = run(msg)
    assert ksr.replies == [(403, "Forbidden - Not Relaying")]
    assert not ksr.called("registrar.save")


# --- route[LOCATION] ----------------------------------------------------------------------

def test_invite_to_a_registered_extension_is_relayed_to_all_contacts():
    def setup(k):
        k.locations["2001"] = ["sip:2001@192.0.2.20:5060", "sip:2001@192.0.2.21:5060"]
    ksr = run(SipMessage(headers=CREDS), setup)
    assert ksr.relayed == [{"ruri": "sip:2001@192.0.2.20:5060", "branches": ["sip:2001@192.0.2.21:5060"],
                            "du": None, "headers": {"Max-Forwards": "10"}, "socket": ""}]
    assert ksr.called("rr.record_route")
    assert ksr.tm_routes == {"branch_route": "ksr_branch_manage", "onreply_route": "ksr_onreply_manage",
                             "failure_route": "ksr_failure_manage"}
    assert ksr.replies == []


def test_registered_extension_not_answering_contacts_gets_480():
    ksr = run(SipMessage(headers=CREDS))
    assert ksr.replies == [(480, "Temporarily Unavailable")]
    assert ksr.called("tm.t_newtran")


def test_unknown_user_gets_404():
    subs = FakeSubscribers({"2002"})
    ksr = run(SipMessage(headers=CREDS), subscribers=subs)
    assert ksr.replies == [(404, "Not Found")]
    assert subs.asked == ["2001"]


def test_database_down_means_480_not_404():
    ksr = run(SipMessage(headers=CREDS), subscribers=FakeSubscribers(None))
    assert ksr.replies == [(480, "Temporarily Unavailable")]


def test_method_not_supported_by_the_contact_gets_405():
    ksr = run(SipMessage(headers=CREDS), lambda k: k.results.__setitem__("registrar.lookup", -2))
    assert ksr.replies == [(405, "Method Not Allowed")]


def test_location_error_gets_500_and_a_log_line():
    ksr = run(SipMessage(headers=CREDS), lambda k: k.results.__setitem__("registrar.lookup", -3))
    assert ksr.replies == [(500, "Server Internal Error")]
    assert "location lookup failed (-3)" in ksr.log_text("err")


def test_request_uri_without_user_gets_484():
    ksr = run(SipMessage(ruri="sip:127.0.0.1", headers=CREDS))
    assert ksr.replies == [(484, "Address Incomplete")]


def test_authenticated_call_to_a_foreign_domain_is_relayed():
    ksr = run(SipMessage(ruri="sip:bob@example.org", headers=CREDS))
    assert len(ksr.relayed) == 1 and ksr.relayed[0]["ruri"] == "sip:bob@example.org"


# --- exceptions -----------------------------------------------------------------------------

class Broken(Router):
    def route_location(self, msg):
        raise ValueError("boom")


def test_exception_in_a_route_is_answered_500_with_one_log_line():
    ksr = run(SipMessage(headers=CREDS, call_id="abc@192.0.2.10"), router_class=Broken)
    assert ksr.replies == [(500, "Server Internal Error")]
    errors = [t for lvl, t in ksr.logs if lvl == "err"]
    assert len(errors) == 1
    assert "call-id=abc@192.0.2.10" in errors[0] and "ValueError: boom" in errors[0]
    assert "route_location" in errors[0] and errors[0].count("\n") == 1


def test_exception_while_handling_an_ack_sends_no_reply():
    class BrokenAck(Router):
        def route_withindlg(self, msg):
            raise KeyError("x")
    ksr = run(SipMessage(method="ACK", to_tag="t"), router_class=BrokenAck)
    assert ksr.replies == [] and "KeyError" in ksr.log_text("err")


def test_exception_in_failure_route_is_answered():
    class BrokenFailure(Router):
        def failure_manage(self, msg):
            raise RuntimeError("bad")
    ksr = FakeKSR(SipMessage())
    make_router(ksr, router_class=BrokenFailure).ksr_failure_manage(None)
    assert ksr.replies == [(500, "Server Internal Error")]


# --- cost: each PV is read once per message ---------------------------------------------------

def test_each_pseudo_variable_is_read_once_per_message():
    def setup(k):
        k.locations["2001"] = ["sip:2001@192.0.2.20"]
    ksr = run(SipMessage(headers=CREDS), setup)
    reads = [args[0] for key, args in ksr.calls if key.startswith("pv.get")]
    assert len(reads) == len(set(reads)), reads


def test_a_registered_call_makes_no_subscriber_lookup():
    subs = FakeSubscribers()
    run(SipMessage(headers=CREDS), lambda k: k.locations.__setitem__("2001", ["sip:2001@192.0.2.20"]),
        subscribers=subs)
    assert subs.asked == []


# --- route[RELAY]: the branch route only when route[NATMANAGE] has work there ----------------

def one_contact(k):
    k.locations["2001"] = ["sip:2001@192.0.2.20:5060"]


def test_plain_call_to_one_contact_gets_no_branch_route():
    ksr = run(SipMessage(headers=CREDS), one_contact)
    assert len(ksr.relayed) == 1
    assert "branch_route" not in ksr.tm_routes
    assert ksr.tm_routes == {"onreply_route": "ksr_onreply_manage", "failure_route": "ksr_failure_manage"}


def test_call_from_a_nated_caller_gets_the_branch_route():
    def setup(k):
        one_contact(k)
        k.results["nathelper.nat_uac_test"] = 1
    ksr = run(SipMessage(headers=CREDS), setup)
    assert names.FLT_NATS in ksr.flags
    assert ksr.tm_routes["branch_route"] == "ksr_branch_manage"


def test_call_to_a_nated_contact_gets_the_branch_route():
    def setup(k):
        one_contact(k)
        k.bflags.add(names.FLB_NATB)          # what lookup() restores from the contact
    ksr = run(SipMessage(headers=CREDS), setup)
    assert ksr.tm_routes["branch_route"] == "ksr_branch_manage"


def test_forked_call_gets_the_branch_route():
    def setup(k):
        k.locations["2001"] = ["sip:2001@192.0.2.20:5060", "sip:2001@192.0.2.21:5060"]
    ksr = run(SipMessage(headers=CREDS), setup)
    assert len(ksr.relayed[0]["branches"]) == 1
    assert ksr.tm_routes["branch_route"] == "ksr_branch_manage"


@pytest.mark.parametrize("extra, armed", [(";nat=yes", True), ("", False)])
def test_in_dialog_bye_gets_the_branch_route_only_with_nat_yes(extra, armed):
    ksr = run(SipMessage(method="BYE", to_tag="t1", headers={"Route": signed_route(extra=extra)}))
    assert len(ksr.relayed) == 1
    assert ("branch_route" in ksr.tm_routes) is armed


@pytest.mark.parametrize("nated, in_dialog, route_nat, extra, callee, expected", [
    (False, False, False, 0, False, False),     # plain call: nothing to do in the branch
    (True, False, False, 0, False, True),
    (True, True, False, 0, False, True),
    (False, True, True, 0, False, True),
    (False, True, False, 3, True, False),       # in-dialog: only our Route's nat=yes counts
    (False, False, False, 1, False, True),      # forked: other branches' flags unknown here
    (False, False, False, 0, True, True),
    (False, False, True, 0, False, False),      # nat=yes means nothing on an initial request
])
def test_branch_route_needed(nated, in_dialog, route_nat, extra, callee, expected):
    from kemi.nat.work import branch_route_needed
    assert branch_route_needed(nated, in_dialog, route_nat, extra, callee) is expected


def test_a_subclass_with_its_own_branch_route_gets_it_on_every_call():
    class OwnBranch(Router):
        def branch_manage(self, msg):
            super().branch_manage(msg)
    ksr = run(SipMessage(headers=CREDS), one_contact, router_class=OwnBranch)
    assert ksr.tm_routes["branch_route"] == "ksr_branch_manage"
    ksr = run(SipMessage(method="BYE", to_tag="t1", headers={"Route": signed_route()}), router_class=OwnBranch)
    assert ksr.tm_routes["branch_route"] == "ksr_branch_manage"
