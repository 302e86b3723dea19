"""Metrics and the decision log on the fake KSR: each call site moves its counter, with its labels.

Every test checks the counter that must move AND that nothing else moved (ksr.metrics is the
whole set), so a counter incremented at the wrong place, twice, or with other labels fails.
"""
import pytest

from kemi.observe import decisions as dlog
from kemi.observe import metrics as m
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.settings.render import describe
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import TEST_ROUTE_SECRET, FakeDids, FakeSubscribers, make_router

from test_sbc_routes import PRIV_GW, PUB_GW, invite as sbc_invite, ksr_for
from kemi.names import AVP_EGRESS, AVP_GATEWAY_SET, AVP_INGRESS

METRICS_ON = {"metrics": {"enabled": True}, "media": {"enabled": False}}
CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002"'}
REG_CREDENTIALS = {"Authorization": 'Digest username="2001"'}
NONE = m.SIDE_NONE


def only(ksr) -> dict:
    """The counters that moved (non-zero), as {(name, labels): value}."""
    return {k: v for k, v in ksr.metrics.items() if v}


def routed(message, settings=None, subscribers=("2001", "2002"), **ksr_attrs):
    ksr = FakeKSR(message)
    for name, value in ksr_attrs.items():
        setattr(ksr, name, value)
    make_router(ksr, settings or METRICS_ON, FakeSubscribers(subscribers)).ksr_request_route(None)
    return ksr


def invite(ruri_user="2001", **kw):
    return SipMessage(method="INVITE", ruri=f"sip:{ruri_user}@127.0.0.1", headers=dict(CREDENTIALS), **kw)


# --- registrations ---------------------------------------------------------------------------


def register(**kw):
    return SipMessage(method="REGISTER", ruri="sip:127.0.0.1", from_uri="sip:2001@127.0.0.1",
                      to_uri="sip:2001@127.0.0.1", **kw)


def test_register_saved_counts_ok():
    ksr = routed(register(headers=REG_CREDENTIALS))
    assert ksr.called("registrar.save")
    assert only(ksr) == {(m.REGISTRATIONS.name, (m.REG_OK,)): 1}


def test_register_save_failing_counts_error():
    ksr = FakeKSR(register(headers=REG_CREDENTIALS))
    ksr.results["registrar.save"] = -1
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert only(ksr) == {(m.REGISTRATIONS.name, (m.REG_ERROR,)): 1}


@pytest.mark.parametrize("rc", [-2, -3])          # wrong password, unknown user
def test_register_with_wrong_credentials_counts_auth_failed(rc):
    ksr = FakeKSR(register(headers=REG_CREDENTIALS))
    ksr.results["auth_db.auth_check"] = rc
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert ksr.reply == (401, "Unauthorized")
    assert only(ksr) == {(m.REGISTRATIONS.name, (m.REG_AUTH_FAILED,)): 1}


@pytest.mark.parametrize("rc", [-5, -4, -6])       # no credentials, stale nonce, replayed nonce
def test_a_plain_challenge_counts_nothing(rc):
    ksr = FakeKSR(register())
    ksr.results["auth_db.auth_check"] = rc
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert ksr.reply == (401, "Unauthorized") and only(ksr) == {}


def test_register_with_somebody_elses_credentials_counts_refused():
    ksr = FakeKSR(register(headers=REG_CREDENTIALS))
    ksr.results["auth_db.auth_check"] = -8
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert ksr.reply[0] == 403
    assert only(ksr) == {(m.REGISTRATIONS.name, (m.REG_REFUSED,)): 1}


def test_register_for_a_foreign_domain_counts_refused():
    ksr = routed(SipMessage(method="REGISTER", ruri="sip:example.org", headers=REG_CREDENTIALS))
    assert ksr.reply == (403, "Forbidden - Not Relaying")
    assert only(ksr) == {(m.REGISTRATIONS.name, (m.REG_REFUSED,)): 1}


# --- calls -------------------------------------------------------------------------------------


def calls(decision, ingress=NONE, egress=NONE):
    return {(m.CALLS.name, (decision, ingress, egress)): 1}


def test_call_to_a_registered_contact():
    ksr = routed(invite(), locations={"2001": ["sip:2001@192.0.2.20:5060"]})
    assert ksr.relayed and only(ksr) == calls(m.CALL_CONTACT)


def test_call_to_nobody_is_not_found():
    ksr = routed(invite("2999"))
    assert ksr.reply == (404, "Not Found") and only(ksr) == calls(m.CALL_NOT_FOUND)


def test_call_to_an_unregistered_subscriber_is_unavailable():
    ksr = routed(invite("2001"))
    assert ksr.reply == (480, "Temporarily Unavailable") and only(ksr) == calls(m.CALL_UNAVAILABLE)


def test_failed_lookup_is_error():
    ksr = FakeKSR(invite())
    ksr.results["registrar.lookup"] = -3
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert ksr.reply[0] == 500 and only(ksr) == calls(m.CALL_ERROR)


def test_call_to_a_foreign_domain():
    ksr = routed(SipMessage(method="INVITE", ruri="sip:bob@example.org", headers=dict(CREDENTIALS)))
    assert ksr.relayed and only(ksr) == calls(m.CALL_FOREIGN_DOMAIN)


def test_call_without_user_is_rejected():
    ksr = routed(SipMessage(method="INVITE", ruri="sip:127.0.0.1", headers=dict(CREDENTIALS)))
    assert ksr.reply[0] == 484 and only(ksr) == calls(m.CALL_REJECTED)


def test_call_with_wrong_password_is_auth_failed():
    ksr = FakeKSR(invite())
    ksr.results["auth_db.auth_check"] = -2
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert ksr.reply[0] == 407 and only(ksr) == calls(m.CALL_AUTH_FAILED)


def test_only_invites_are_calls():
    """A MESSAGE to nobody gets its 404 but is not a call (the decision log still has it)."""
    ksr = routed(SipMessage(method="MESSAGE", ruri="sip:2999@127.0.0.1", headers=dict(CREDENTIALS)))
    assert ksr.reply == (404, "Not Found") and only(ksr) == {}


def test_metrics_off_never_calls_xhttp_prom():
    ksr = routed(invite("2999"), settings={"media": {"enabled": False}})
    assert ksr.reply == (404, "Not Found")
    assert not any(key.startswith("xhttp") for key, _ in ksr.calls)


# --- SBC: directions, gateways, failover, 503 ----------------------------------------------------

SBC_SETTINGS = parse_settings({
    "sip": {"domain": "sbc.example.test"}, "security": {"route_secret": TEST_ROUTE_SECRET},
    "media": {"enabled": False}, "metrics": {"enabled": True},
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"], "gateways": PUB_GW},
            "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                        "gateways": PRIV_GW}},
})


def sbc_routed(message, ksr=None):
    ksr = ksr or ksr_for(message)
    make_router(ksr, SBC_SETTINGS, FakeSubscribers(("3001",)), dids=FakeDids()).ksr_request_route(None)
    return ksr


def test_public_gateway_to_private_gateway_is_labelled_with_both_sides():
    ksr = sbc_routed(sbc_invite("203.0.113.10", "public"))
    assert ksr.relayed[0]["du"] == PRIV_GW[0]
    assert only(ksr) == {**calls(m.CALL_GATEWAY, "public", "private"),
                         (m.GATEWAY_ATTEMPTS.name, (PRIV_GW[0],)): 1}


def test_private_to_public_direction():
    ksr = sbc_routed(sbc_invite("198.51.100.11", "private", host="198.51.100.1"))
    assert only(ksr) == {**calls(m.CALL_GATEWAY, "private", "public"),
                         (m.GATEWAY_ATTEMPTS.name, (PUB_GW[0],)): 1}


def test_no_active_gateway_is_no_gateway_and_a_503():
    message = sbc_invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.inactive_gateways = set(PRIV_GW)
    sbc_routed(message, ksr)
    assert ksr.reply[0] == 503
    assert only(ksr) == {**calls(m.CALL_NO_GATEWAY, "public", "private"),
                         (m.REPLIES_503.name, (m.UNAVAILABLE_NO_GATEWAY,)): 1}


def test_unknown_source_on_the_sbc_is_rejected():
    ksr = sbc_routed(sbc_invite("192.0.2.66", "public"))
    assert ksr.reply == (403, "Forbidden")
    assert only(ksr) == calls(m.CALL_REJECTED, NONE, NONE)


def failed_gateway(code, rest):
    message = sbc_invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr._ds_current, ksr._ds_rest = PRIV_GW[0], list(rest)
    ksr.t_reply_code = code
    ksr.results["tm.t_is_canceled"] = -1
    make_router(ksr, SBC_SETTINGS, FakeSubscribers(), dids=FakeDids()).ksr_failure_manage(None)
    return ksr


def test_failover_counts_the_failed_gateway_and_the_next_attempt():
    ksr = failed_gateway(503, rest=[PRIV_GW[1]])
    assert ksr.relayed[0]["du"] == PRIV_GW[1]
    assert only(ksr) == {(m.GATEWAY_FAILOVERS.name, (PRIV_GW[0],)): 1,
                         (m.GATEWAY_ATTEMPTS.name, (PRIV_GW[1],)): 1}


def test_last_gateway_failing_is_a_503():
    ksr = failed_gateway(408, rest=[])
    assert ksr.reply[0] == 503
    assert only(ksr) == {(m.GATEWAY_FAILOVERS.name, (PRIV_GW[0],)): 1,
                         (m.REPLIES_503.name, (m.UNAVAILABLE_GATEWAYS_FAILED,)): 1}


def test_callee_answer_is_no_failover():
    ksr = failed_gateway(486, rest=[PRIV_GW[1]])
    assert only(ksr) == {}


# --- rtpengine ----------------------------------------------------------------------------------

SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
MEDIA_METRICS = {"metrics": {"enabled": True}}


def sdp_invite():
    return SipMessage(method="INVITE", headers={**CREDENTIALS, "Content-Type": "application/sdp"}, body=SDP)


def test_rtpengine_not_answering_the_offer():
    ksr = routed(sdp_invite(), MEDIA_METRICS, rtpengine_up=False, locations={"2001": ["sip:2001@192.0.2.20"]})
    assert ksr.reply[0] == 503
    assert only(ksr) == {(m.RTPENGINE_ERRORS.name, (m.RTP_OFFER, m.RTP_NO_ANSWER)): 1,
                         (m.REPLIES_503.name, (m.UNAVAILABLE_RTPENGINE,)): 1,
                         **calls(m.CALL_CONTACT)}        # the routing decision was made; media failed


def test_rtpengine_refusing_the_offer():
    ksr = routed(sdp_invite(), MEDIA_METRICS, rtpengine_refuses=True, locations={"2001": ["sip:2001@192.0.2.20"]})
    assert ksr.reply[0] == 488
    assert only(ksr) == {(m.RTPENGINE_ERRORS.name, (m.RTP_OFFER, m.RTP_REFUSED)): 1, **calls(m.CALL_CONTACT)}


def test_rtpengine_delete_failing():
    from kemi.testing.helpers import signed_route
    bye = SipMessage(method="BYE", to_tag="t", headers={"Route": signed_route()})
    ksr = routed(bye, MEDIA_METRICS)                  # no session known: delete fails
    assert ksr.relayed
    assert only(ksr) == {(m.RTPENGINE_ERRORS.name, (m.RTP_DELETE, m.RTP_FAILED)): 1}


def test_rtpengine_answer_failing_in_the_reply():
    ksr = FakeKSR(SipMessage(method="INVITE", status=200, headers={"Content-Type": "application/sdp"}, body=SDP))
    ksr.flags.add(8)                                  # FLT_SDP_OFFER: the INVITE was offered
    make_router(ksr, MEDIA_METRICS).ksr_onreply_manage(None)
    assert only(ksr) == {(m.RTPENGINE_ERRORS.name, (m.RTP_ANSWER, m.RTP_FAILED)): 1}


# --- security ----------------------------------------------------------------------------------


def screened(ua="Yealink", banned=False, pike=1):
    ksr = FakeKSR(SipMessage(method="INVITE", headers={"User-Agent": ua}))
    if banned:
        ksr.htable[("ipban", "192.0.2.10")] = 1
    ksr.results["pike.pike_check_req"] = pike
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    return ksr


def test_scanner_is_banned_and_dropped():
    assert only(screened(ua="friendly-scanner")) == {(m.BANS.name, (m.BAN_SCANNER,)): 1,
                                                     (m.DROPPED.name, (m.DROP_SCANNER,)): 1}


def test_flood_is_banned_and_dropped():
    assert only(screened(pike=-2)) == {(m.BANS.name, (m.BAN_FLOOD,)): 1, (m.DROPPED.name, (m.DROP_FLOOD,)): 1}


def test_banned_source_is_dropped():
    assert only(screened(banned=True)) == {(m.DROPPED.name, (m.DROP_BANNED,)): 1}


def test_password_guessing_ban():
    ksr = FakeKSR(invite())
    ksr.results["auth_db.auth_check"] = -2
    ksr.htable[("authfail", "192.0.2.10")] = 4        # the 5th failure bans (default limit)
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    assert only(ksr) == {(m.BANS.name, (m.BAN_PASSWORD_GUESSING,)): 1, **calls(m.CALL_AUTH_FAILED)}


# --- the HTTP endpoint --------------------------------------------------------------------------


def http(url, socket_name="metrics", settings=None):
    ksr = FakeKSR(SipMessage(method="GET", http_url=url, socket_name=socket_name, proto="tcp"))
    ksr.metrics[(m.CALLS.name, (m.CALL_CONTACT, NONE, NONE))] = 3
    make_router(ksr, settings or METRICS_ON).ksr_xhttp_event(None, "xhttp:request")
    return ksr


def test_metrics_are_served_on_the_metrics_socket():
    ksr = http("/metrics")
    code, _reason, ctype, body = ksr.http_replies[0]
    assert (code, ctype) == (200, "text/plain; version=0.0.4") and "kamailio_kemi_calls_total" in body


@pytest.mark.parametrize("url, socket_name", [("/", "metrics"), ("/metrics/x", "metrics"),
                                              ("/metrics", ""), ("/metrics", "public")])
def test_anything_else_is_404(url, socket_name):
    ksr = http(url, socket_name)
    assert ksr.http_replies == [(404, "Not Found", "text/plain", "Not Found\n")]
    assert not ksr.called("xhttp_prom.dispatch")


def test_sip_on_the_metrics_socket_is_dropped():
    ksr = routed(SipMessage(method="OPTIONS", ruri="sip:127.0.0.1", socket_name="metrics", proto="tcp"))
    assert ksr.replies == [] and not ksr.relayed
    assert only(ksr) == {(m.DROPPED.name, (m.DROP_METRICS_SOCKET,)): 1}
    control = routed(SipMessage(method="OPTIONS", ruri="sip:127.0.0.1", proto="tcp"))
    assert control.replies == [(200, "OK")]


def test_an_exception_in_the_http_route_is_a_500_not_a_traceback():
    ksr = FakeKSR(SipMessage(method="GET", http_url="/metrics", socket_name="metrics"))
    ksr.results["xhttp_prom.check_uri"] = lambda k: 1 / 0
    make_router(ksr, METRICS_ON).ksr_xhttp_event(None, "xhttp:request")
    assert ksr.http_replies[-1][0] == 500 and "ZeroDivisionError" in ksr.log_text("err")


def test_initial_series_are_created_at_zero_once():
    ksr = FakeKSR()
    router = make_router(ksr, METRICS_ON)
    router.child_init(0)
    assert ksr.metrics == {}
    router.child_init(1)
    assert ksr.metrics == {(c.name, labels): 0 for c, labels in m.INITIAL_SERIES}


# --- the decision log -----------------------------------------------------------------------------


def test_decision_log_is_off_by_default_and_costs_one_read():
    ksr = routed(invite("2999"))
    assert "decision" not in ksr.log_text()
    assert ksr.calls_to("pv.gete").count((dlog.DECISION_LOG_PV,)) == 1


def test_decision_log_line_when_switched_on():
    ksr = FakeKSR(invite("2999", call_id="abc 1@192.0.2.10"))
    ksr.cfg_vars["kemi_log.decisions"] = 1
    make_router(ksr, METRICS_ON).ksr_request_route(None)
    lines = [t for lvl, t in ksr.logs if t.startswith(dlog.LINE_PREFIX)]
    assert len(lines) == 1 and lines[0].endswith("\n")
    assert dlog.parse_line(lines[0]) == {
        "event": "call", "decision": "not_found", "code": "404", "method": "INVITE",
        "call_id": "abc 1@192.0.2.10", "source": "192.0.2.10:5060", "ingress": "none", "egress": "none",
        "target": "sip:2999@127.0.0.1"}
    assert ("info", lines[0]) in ksr.logs


def test_decision_level_notice():
    ksr = FakeKSR(invite("2999"))
    ksr.cfg_vars["kemi_log.decisions"] = 1
    make_router(ksr, {**METRICS_ON, "logging": {"decision_level": "notice"}}).ksr_request_route(None)
    assert dlog.LINE_PREFIX in ksr.log_text("notice") and dlog.LINE_PREFIX not in ksr.log_text("info")


def test_failover_decision_names_the_gateway():
    message = sbc_invite("203.0.113.10", "public")
    ksr = ksr_for(message)
    ksr.cfg_vars["kemi_log.decisions"] = 1
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr._ds_current, ksr._ds_rest = PRIV_GW[0], [PRIV_GW[1]]
    ksr.t_reply_code = 503
    ksr.results["tm.t_is_canceled"] = -1
    make_router(ksr, SBC_SETTINGS, FakeSubscribers(), dids=FakeDids()).ksr_failure_manage(None)
    line = dlog.parse_line(ksr.log_text("info"))
    assert (line["event"], line["target"], line["code"]) == ("failover", PRIV_GW[0], "503")


@pytest.mark.parametrize("value", ['a"b', "a b", "a\\b", "a\nb", ""])
def test_log_values_are_quoted_so_a_line_stays_one_line(value):
    line = dlog.decision_line("call", {"call_id": value, "code": 404})
    assert line.count("\n") == 1 and line.endswith("code=404\n")
    if "\n" not in value:
        assert dlog.parse_line(line)["call_id"] == value


# --- settings ----------------------------------------------------------------------------------------


def test_metrics_render_socket_defines_and_one_declaration_per_counter():
    text = render_kamailio_defines(parse_settings({"metrics": {"enabled": True, "listen": "127.0.0.1:9191"}}))
    assert 'listen=tcp:127.0.0.1:9191 name "metrics"' in text
    assert "#!define WITH_METRICS" in text and text.count("#!define WITH_TCP") == 1
    for counter in m.COUNTERS:
        assert f'"prom_counter", "name={counter.name};' in text
    # the cfg variable comes before every listen= (a line after listen= is read as an address)
    assert text.index("kemi_log.decisions = 0") < text.index("listen=")


def test_metrics_off_renders_no_endpoint():
    text = render_kamailio_defines(parse_settings({}))
    assert "WITH_METRICS" not in text and "tcp:" not in text and "kemi_log.decisions = 0" in text


def test_decision_log_on_at_start():
    assert "kemi_log.decisions = 1" in render_kamailio_defines(parse_settings({"logging": {"decisions": True}}))


def test_check_prints_the_metrics_listen():
    assert "metrics.listen = '127.0.0.1:9090'" in describe(parse_settings({}))


@pytest.mark.parametrize("raw, key", [
    ({"metrics": {"listen": "localhost:9090"}}, "metrics.listen"),
    ({"metrics": {"listen": "127.0.0.1"}}, "metrics.listen"),
    ({"metrics": {"listen": "127.0.0.1:70000"}}, "metrics.listen"),
    ({"metrics": {"listen": "::1:9090"}}, "metrics.listen"),
    ({"metrics": {"listen": "0.0.0.0:9090"}}, "metrics.listen"),
    ({"metrics": {"enabled": True, "listen": "127.0.0.1:5060"}}, "metrics.listen"),
    ({"metrics": {"core_stats": "all; rm -rf"}}, "metrics.core_stats"),
    ({"metrics": {"enabled": "yes"}}, "metrics.enabled"),
    ({"logging": {"decision_level": "debug"}}, "logging.decision_level"),
])
def test_bad_observability_settings_name_the_key(raw, key):
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert err.value.key == key


def test_ipv6_metrics_listen():
    s = parse_settings({"metrics": {"enabled": True, "listen": "[::1]:9090"}})
    assert s.metrics.socket == "tcp:[::1]:9090"
