"""kemi/security decisions and its part (Screen), with the fake KSR (no Kamailio)."""
from __future__ import annotations

import pytest

from kemi import sip
from kemi.names import AUTH_FAILURE_TABLE, BAN_TABLE
from kemi.security import ban, uri
from kemi.security.scanner import ScannerFilter, is_scanner
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router

DEFAULT_SCANNERS = parse_settings({}).security.scanner_user_agents


# --- scanner ----------------------------------------------------------------------------

@pytest.mark.parametrize("agent", ["friendly-scanner", "Friendly-Scanner", "sipvicious 0.3.8", "sipcli/v1.8",
                                   "VaxSIPUserAgent/3.1", "pplsip", "x (SIPVicious) y"])
def test_scanner_agents_match_case_insensitively(agent):
    assert is_scanner(agent, DEFAULT_SCANNERS)


@pytest.mark.parametrize("agent", ["", "Yealink SIP-T46S 66.86", "Linphone/5.2", "kemi-test-phone", "friendly"])
def test_phones_are_not_scanners(agent):
    assert not is_scanner(agent, DEFAULT_SCANNERS)


def test_an_empty_list_disables_the_filter():
    flt = ScannerFilter([" ", ""])
    assert not flt and not flt.matches("friendly-scanner")


# --- ban decisions ----------------------------------------------------------------------

def test_only_wrong_password_and_unknown_user_count_as_guesses():
    assert ban.is_failed_guess(sip.AUTH_INVALID_PASSWORD) and ban.is_failed_guess(sip.AUTH_INVALID_USER)
    for rc in (-1, -4, -5, -6, sip.AUTH_USER_MISMATCH, 1):
        assert not ban.is_failed_guess(rc)


@pytest.mark.parametrize("failures,limit,banned", [(4, 5, False), (5, 5, True), (9, 5, True), (100, 0, False)])
def test_ban_after_failures(failures, limit, banned):
    assert ban.should_ban_after_failures(failures, limit) is banned


def test_pike_answers():
    assert ban.is_flooding(-1) and ban.is_flooding(-2)
    assert not ban.is_flooding(1)


def test_own_addresses_are_the_listen_addresses_only():
    own = ban.own_addresses(["127.0.0.2", "[::1]"])
    assert ban.is_own_address("127.0.0.2", own) and ban.is_own_address("::1", own)
    assert not ban.is_own_address("127.0.0.1", own)
    assert not ban.is_own_address("not-an-ip", own)


# --- URI checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("user,bad", [("2001", False), ("2001%27--", False), ("a%20b", False), ("2001%00", True),
                                      ("%0d%0a", True), ("%ff", True), ("%zz", True), ("2001%", True), ("%2", True)])
def test_bad_escapes(user, bad):
    assert uri.has_bad_escape(user) is bad


def test_unroutable_users():
    assert uri.unroutable_user("2001", 64) is None
    assert uri.unroutable_user("2001%00", 64)[0] == sip.BAD_REQUEST
    assert uri.unroutable_user("9" * 65, 64)[0] == sip.NOT_FOUND


@pytest.mark.parametrize("ruri,unsupported", [("sip:a@b", False), ("SIPS:a@b", False), ("tel:+49301234", False),
                                              ("soap.beep://192.0.2.103:3002", True), ("mailto:a@b", True),
                                              ("<sip:a@b>", False), ("", False)])
def test_unsupported_schemes(ruri, unsupported):
    assert uri.has_unsupported_scheme(ruri) is unsupported


def test_request_line_uri_and_extensions():
    assert uri.request_line_uri("OPTIONS nobody:x SIP/2.0") == "nobody:x"
    assert uri.request_line_uri("garbage") == ""
    assert uri.unsupported_extensions(" a, b ,a,") == "a, b"
    assert uri.unsupported_extensions("") == ""


# --- settings -------------------------------------------------------------------------------

def test_security_settings_render_into_pike_and_htable_defines():
    s = parse_settings({"security": {"flood_interval": 3, "flood_requests": 40, "ban_time": 900,
                                     "auth_failure_window": 120}})
    text = render_kamailio_defines(s)
    assert "#!define PIKE_SAMPLING_TIME 3\n" in text and "#!define PIKE_REQS_DENSITY 40\n" in text
    assert f'#!define HTABLE_BAN "{BAN_TABLE}=>size=10;autoexpire=900;"' in text
    assert f'{AUTH_FAILURE_TABLE}=>size=10;autoexpire=120;initval=0;' in text
    assert "WITH_TLS" not in text


@pytest.mark.parametrize("table,problem", [
    ({"security": {"ban_time": 0}}, "security.ban_time"),
    ({"security": {"flood_requests": 1}}, "security.flood_requests"),
    ({"security": {"flood_requests": 65_536}}, "security.flood_requests"),   # pike's 16 bits would wrap
    ({"security": {"auth_failure_limit": -1}}, "security.auth_failure_limit"),
    ({"security": {"scanner_user_agents": ["ok", "\n"]}}, "security.scanner_user_agents"),
    ({"security": {"enabled": "yes"}}, "security.enabled"),
    ({"security": {"bantime": 5}}, "security.bantime"),
    ({"sip": {"listen": ["tls:127.0.0.1:5061"]}}, "sip.listen"),
    ({"tls": {"enabled": True}}, "tls.enabled"),
])
def test_bad_security_settings_name_the_key(table, problem):
    with pytest.raises(SettingsError) as err:
        parse_settings(table)
    assert err.value.key == problem


def test_tls_needs_existing_pem_files(tmp_path):
    listen = {"listen": ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]}
    with pytest.raises(SettingsError) as err:
        parse_settings({"sip": listen, "tls": {"enabled": True, "certificate": str(tmp_path / "no.pem"),
                                               "private_key": str(tmp_path / "no.key")}})
    assert err.value.key == "tls.certificate"
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    s = parse_settings({"sip": listen, "tls": {"enabled": True, "certificate": str(tmp_path / "c.pem"),
                                               "private_key": str(tmp_path / "k.pem")}})
    text = render_kamailio_defines(s)
    assert "#!define WITH_TLS\n" in text and f'#!define TLS_CERTIFICATE "{tmp_path / "c.pem"}"' in text
    assert "listen=tls:127.0.0.1:5061" in text and "WITH_TLS_CLIENT_CA" not in text


# --- the route glue -------------------------------------------------------------------------

def request(method="INVITE", ua="Yealink SIP-T46S", source=("192.0.2.10", 5060), **headers):
    return SipMessage(method=method, ruri="sip:2001@127.0.0.1", headers={"User-Agent": ua, **headers},
                      source=source)


def test_scanner_is_dropped_silently_and_banned():
    ksr = FakeKSR(request(ua="friendly-scanner"))
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [] and not ksr.called("tm.t_relay")
    assert ksr.htable == {(BAN_TABLE, "192.0.2.10"): 1}
    assert "banned 192.0.2.10 for 600s: scanner user agent" in ksr.log_text("notice")


def test_banned_source_is_dropped_without_a_log_line():
    ksr = FakeKSR(request())
    ksr.htable[(BAN_TABLE, "192.0.2.10")] = 1
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [] and ksr.logs == []
    assert not ksr.called("pike.pike_check_req")


def test_flood_bans_the_source():
    ksr = FakeKSR(request())
    ksr.results["pike.pike_check_req"] = -2
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [] and (BAN_TABLE, "192.0.2.10") in ksr.htable


def test_own_address_is_never_banned_but_scanners_still_dropped():
    ksr = FakeKSR(request(ua="sipvicious", source=("127.0.0.1", 5060)))
    ksr.results["pike.pike_check_req"] = -1
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [] and ksr.htable == {}


def test_security_switched_off_changes_nothing():
    ksr = FakeKSR(request(ua="friendly-scanner"))
    ksr.results["pike.pike_check_req"] = -1
    make_router(ksr, {"security": {"enabled": False}}).ksr_request_route(None)
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert not ksr.called("pike.pike_check_req") and ksr.htable == {}


def test_failed_guesses_are_counted_then_the_source_is_banned():
    ksr = FakeKSR(request("REGISTER", Authorization="Digest ..."))
    ksr.results["auth_db.auth_check"] = sip.AUTH_INVALID_PASSWORD
    router = make_router(ksr, {"security": {"auth_failure_limit": 3}})
    for _ in range(3):
        router.ksr_request_route(None)
    assert ksr.replies == [(401, "Unauthorized")] * 2          # the third guess gets no answer
    assert ksr.htable == {(BAN_TABLE, "192.0.2.10"): 1}
    assert "failed digest attempts" in ksr.log_text("notice")


def test_missing_credentials_are_not_guesses():
    ksr = FakeKSR(request("REGISTER"))
    router = make_router(ksr, {"security": {"auth_failure_limit": 1}})
    router.ksr_request_route(None)
    assert ksr.replies == [(401, "Unauthorized")] and ksr.htable == {}


def test_unknown_scheme_gets_416_and_proxy_require_420():
    ksr = FakeKSR(SipMessage(method="OPTIONS", ruri="mailto:a@example.com"))
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [sip.UNSUPPORTED_URI_SCHEME]
    ksr = FakeKSR(request(**{"Proxy-Require": "foo, bar"}))
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [sip.BAD_EXTENSION]
    assert ksr.calls_to("hdr.append_to_reply") == [("Unsupported: foo, bar\r\n",)]


def test_stray_reply_is_dropped():
    ksr = FakeKSR(SipMessage(status=200, reason="OK"))
    make_router(ksr).ksr_reply_route(None)
    assert ksr.dropped
    ksr = FakeKSR(SipMessage(status=200, reason="OK"))
    ksr.results["tm.t_check_trans"] = 1
    make_router(ksr).ksr_reply_route(None)
    assert not ksr.dropped


def _undecodable(spec):
    def pv_gete(ksr, name):
        if name == spec:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        if name == "$(ci{s.encode.hexa})":
            return b"bad\xffid".hex()
        return ksr._m_pv__gete(name)
    return pv_gete


def test_non_utf8_user_agent_is_answered_400_with_one_line():
    ksr = FakeKSR(request())
    ksr.results["pv.gete"] = _undecodable("$ua")
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [sip.BAD_REQUEST]
    assert len(ksr.logs) == 1 and "$ua is not UTF-8" in ksr.logs[0][1]


def test_non_utf8_call_id_is_logged_escaped():
    ksr = FakeKSR(request())
    ksr.results["pv.gete"] = _undecodable("$ci")
    router = make_router(ksr)
    router.handler_failed("request_route", __import__("kemi.message", fromlist=["Message"]).Message(ksr),
                          RuntimeError("boom\x00"), answer=True)
    line = ksr.log_text("err")
    assert "call-id=bad\\xffid" in line and "\x00" not in line and line.count("\n") == 1
    assert ksr.replies == [sip.SERVER_ERROR]


def test_bad_escape_in_ruri_user_gets_400_not_500():
    ksr = FakeKSR(SipMessage(ruri="sip:2001%00@127.0.0.1", headers={"Proxy-Authorization": "Digest ..."}))
    make_router(ksr).ksr_request_route(None)
    assert ksr.replies == [sip.BAD_REQUEST]
    assert not ksr.called("registrar.lookup")


# --- signed Record-Route ---------------------------------------------------------------------

def test_dialog_forming_requests_get_a_signed_record_route():
    from kemi.security import dialog
    ksr = FakeKSR(SipMessage(ruri="sip:2001@127.0.0.1", headers={"Proxy-Authorization": "Digest ..."}))
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    router = make_router(ksr, {"security": {"route_secret": "s" * 32}})
    router.ksr_request_route(None)
    assert ksr.calls_to("rr.add_rr_param") == [(dialog.rr_param("s" * 32, "call-1@192.0.2.10"),)]
    assert ksr.relayed


def _in_dialog(route: str) -> FakeKSR:
    return FakeKSR(SipMessage(method="BYE", ruri="sip:bob@192.0.2.99", to_tag="t1",
                              headers={"Route": route}))


def test_in_dialog_request_with_our_signature_is_relayed():
    from kemi.security import dialog
    secret = "s" * 32
    ksr = _in_dialog(f"<sip:127.0.0.1;lr{dialog.rr_param(secret, 'call-1@192.0.2.10')}>")
    make_router(ksr, {"security": {"route_secret": secret}}).ksr_request_route(None)
    assert ksr.relayed and ksr.replies == []


@pytest.mark.parametrize("route", ["<sip:127.0.0.1;lr>", "<sip:127.0.0.1;lr;kd=00000000000000000000>"])
def test_forged_route_is_refused_not_relayed(route):
    ksr = _in_dialog(route)
    make_router(ksr, {"security": {"route_secret": "s" * 32}}).ksr_request_route(None)
    assert not ksr.relayed and ksr.replies == [sip.FORBIDDEN]
    assert "did not sign" in ksr.log_text("notice")


def test_tokens_depend_on_secret_and_call_id():
    from kemi.security import dialog
    a = dialog.route_token("s" * 32, "c1")
    assert a == dialog.route_token("s" * 32, "c1") and len(a) == dialog.TOKEN_HEX_DIGITS
    assert a != dialog.route_token("t" * 32, "c1") and a != dialog.route_token("s" * 32, "c2")


def test_short_route_secret_is_refused():
    with pytest.raises(SettingsError) as err:
        parse_settings({"security": {"route_secret": "short"}})
    assert err.value.key == "security.route_secret"


def test_route_token_is_the_hmac_of_the_call_id_for_every_secret_also_after_the_key_cache_fills():
    import hashlib
    import hmac
    from kemi.security import dialog

    def reference(secret, call_id):
        return hmac.new(secret.encode(), call_id.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()[:dialog.TOKEN_HEX_DIGITS]
    secrets = [f"secret-{i}" for i in range(dialog._KEYED_MAX + 3)]
    for _ in range(2):                        # the second round after the cache was cleared
        for secret in secrets:
            for call_id in ("c1", "1-2@127.0.0.1", "\udcffraw"):
                assert dialog.route_token(secret, call_id) == reference(secret, call_id)
    assert len(dialog._KEYED) <= dialog._KEYED_MAX
