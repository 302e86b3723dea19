"""The WebSocket part on the fake KSR: the handshake shares xhttp's event route with /metrics,
Origin checks, WebSocket clients treated as behind NAT (Kamailio's own WebSocket routing)."""
from kemi import sip
from kemi.names import FLT_NATS
from kemi.nat.part import NAT_TEST_WEBSOCKET
from kemi.websocket.handshake import handshake_refusal, is_websocket_socket
from kemi.websocket.part import NoWebSocket, WebSocket
from kemi.settings import SettingsError, parse_settings
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router

import pytest

WS = {"websocket": {"enabled": True, "listen": ["ws:127.0.0.1:8080"]}}
WS_AND_METRICS = {**WS, "metrics": {"enabled": True}}
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
           "Sec-WebSocket-Version": "13", "Origin": "https://phone.example.com"}
HANDSHAKE = "websocket.handle_handshake"


def http(socket_name, headers=UPGRADE, settings=WS_AND_METRICS, url="/", method="GET"):
    ksr = FakeKSR(SipMessage(method=method, http_url=url, socket_name=socket_name, proto="tcp", headers=headers))
    make_router(ksr, settings).ksr_xhttp_event(None, "xhttp:request")
    return ksr


def test_an_upgrade_on_the_websocket_socket_gets_the_handshake():
    ksr = http("ws")
    assert ksr.called(HANDSHAKE) and ksr.http_replies == []
    assert ksr.called("set_reply_close") and ksr.called("set_reply_no_connect")


def test_metrics_still_served_on_the_metrics_socket_and_never_a_handshake_there():
    ksr = http("metrics", headers={}, url="/metrics")
    assert ksr.http_replies[0][0] == 200 and not ksr.called(HANDSHAKE)
    ksr = http("metrics")                                   # an upgrade on the metrics socket: 404
    assert ksr.http_replies[0][0] == 404 and not ksr.called(HANDSHAKE)


def test_plain_http_on_the_websocket_socket_gets_426():
    ksr = http("ws", headers={}, url="/metrics")
    assert ksr.http_replies == [(426, "Upgrade Required", "text/plain", "Upgrade Required\n")]
    assert not ksr.called(HANDSHAKE) and not ksr.called("xhttp_prom.dispatch")


def test_origins_are_checked_when_listed():
    allowed = {"websocket": {**WS["websocket"], "origins": ["https://phone.example.com"]}}
    assert http("ws", settings=allowed).called(HANDSHAKE)
    ksr = http("ws", headers={**UPGRADE, "Origin": "https://evil.example"}, settings=allowed)
    assert ksr.http_replies[0][0] == 403 and not ksr.called(HANDSHAKE)
    assert "evil.example" in ksr.log_text("notice")


def test_a_failed_handshake_is_logged_once():
    ksr = FakeKSR(SipMessage(method="GET", http_url="/", socket_name="wss", proto="tls", headers=UPGRADE))
    ksr.results[HANDSHAKE] = -1                              # the module answered (400) itself
    make_router(ksr, WS).ksr_xhttp_event(None, "xhttp:request")
    assert ksr.http_replies == [] and ksr.log_text("notice").count("handshake failed") == 1


def test_websocket_off_has_no_websocket_part_and_no_handshake():
    router = make_router(FakeKSR(), {})
    assert isinstance(router.websocket, NoWebSocket)
    assert isinstance(make_router(FakeKSR(), WS).websocket, WebSocket)
    ksr = http("ws", settings={})
    assert not ksr.called(HANDSHAKE) and ksr.http_replies[0][0] == 404


def test_the_decisions():
    assert is_websocket_socket("ws") and is_websocket_socket("wss-2") and not is_websocket_socket("metrics")
    assert not is_websocket_socket("")
    assert handshake_refusal("GET", "WebSocket", "keep-alive, Upgrade", "", ()) is None
    assert handshake_refusal("POST", "websocket", "Upgrade", "", ())[0] == 426
    assert handshake_refusal("GET", "websocket", "Upgrade", "https://a", ("https://b",))[0] == 403


def register_over_ws(settings):
    ksr = FakeKSR(SipMessage(method="REGISTER", ruri="sip:127.0.0.1", proto="ws", socket_name="ws",
                             headers={"Authorization": 'Digest username="2002"'}))
    ksr.results["auth_db.auth_check"] = 1
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if tests & NAT_TEST_WEBSOCKET else -1
    make_router(ksr, settings).ksr_request_route(None)
    return ksr


def test_websocket_clients_are_handled_as_behind_nat():
    ksr = register_over_ws(WS)
    assert ksr.calls_to("nathelper.nat_uac_test") == [(sip.NAT_TESTS | NAT_TEST_WEBSOCKET,)]
    assert ksr.called("nathelper.fix_nated_register") and FLT_NATS in ksr.flags
    assert ksr.called("registrar.save")
    # control: without [websocket] the NAT test is the registrar's own (19) and finds nothing
    ksr = register_over_ws({})
    assert ksr.calls_to("nathelper.nat_uac_test") == [(sip.NAT_TESTS,)]
    assert not ksr.called("nathelper.fix_nated_register")


def test_a_websocket_client_is_authenticated_like_any_other():
    ksr = FakeKSR(SipMessage(method="REGISTER", ruri="sip:127.0.0.1", proto="wss", socket_name="wss"))
    make_router(ksr, WS).ksr_request_route(None)
    assert ksr.replies == [(401, "Unauthorized")] and not ksr.called("registrar.save")


@pytest.mark.parametrize("raw, key, fix", [
    ({"websocket": {"enabled": True, "listen": ["http:127.0.0.1:80"]}}, "websocket.listen", "ws:ADDRESS:PORT"),
    ({"websocket": {"enabled": True, "listen": ["wss:127.0.0.1:8443"]}}, "websocket.listen", "tls.enabled = true"),
    ({"websocket": {"enabled": True, "listen": ["ws:127.0.0.1:5060"]}, "sip": {"listen": ["tcp:127.0.0.1:5060"]}},
     "websocket.listen", "its own port"),
    ({"websocket": {"enabled": True, "origins": ["phone.example.com"]}}, "websocket.origins", "scheme://host"),
    ({"websocket": {"enabled": True, "listen": []}}, "websocket.listen", "wss:127.0.0.1:8443"),
])
def test_websocket_settings_errors(raw, key, fix):
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert any(p.key == key and fix in str(p) for p in err.value.problems), str(err.value)


def test_websocket_sockets_are_named_and_rendered():
    from kemi.settings import render_kamailio_defines
    s = parse_settings({"websocket": {"enabled": True, "listen": ["ws:127.0.0.1:8080", "ws:127.0.0.2:8080"]}})
    text = render_kamailio_defines(s)
    assert 'listen=tcp:127.0.0.1:8080 name "ws"' in text and 'listen=tcp:127.0.0.2:8080 name "ws-2"' in text
    assert "#!define WITH_WEBSOCKET" in text and "#!define WITH_XHTTP" in text and "#!define WITH_TCP" in text
    assert "WITH_WEBSOCKET" not in render_kamailio_defines(parse_settings({}))


def test_the_screen_and_the_metrics_see_websocket_clients_like_any_other():
    from kemi.observe import metrics as m
    settings = {**WS, "metrics": {"enabled": True}}
    scanner = FakeKSR(SipMessage(method="REGISTER", ruri="sip:127.0.0.1", proto="wss", socket_name="wss",
                                 source=("192.0.2.66", 40000), headers={"User-Agent": "friendly-scanner"}))
    make_router(scanner, settings).ksr_request_route(None)
    assert scanner.replies == [] and not scanner.called("registrar.save") and ("ipban", "192.0.2.66") in scanner.htable
    ksr = FakeKSR(SipMessage(method="REGISTER", ruri="sip:127.0.0.1", from_uri="sip:2001@127.0.0.1",
                             to_uri="sip:2001@127.0.0.1", proto="wss", socket_name="wss",
                             headers={"Authorization": 'Digest username="2001"'}))
    ksr.results["auth_db.auth_check"] = 1
    make_router(ksr, settings).ksr_request_route(None)
    assert ksr.metrics.get((m.REGISTRATIONS.name, (m.REG_OK,))) == 1
