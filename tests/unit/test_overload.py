"""[overload]: new requests refused early (pipelimit's 503 + Retry-After) while Kamailio's
socket queues back up; what passes anyway; the settings and the cfg lines (fake KSR)."""
import pytest

from kemi.names import OVERLOAD_PIPE
from kemi.overload import admission
from kemi.overload.part import NoOverload, Overload
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.testing import FakeKSR, SipMessage, make_router, signed_route

ON = {"overload": {"enabled": True, "queue_limit": 32768, "retry_after": 7}}
CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}
REG_CREDS = {"Authorization": 'Digest username="2001", realm="127.0.0.1"'}
OVER, UNDER = admission.OVER_LIMIT, 1


def run(message: SipMessage, check: int, settings=ON, setup=None) -> FakeKSR:
    ksr = FakeKSR(message)
    ksr.results["pipelimit.pl_check_limit"] = check
    if setup:
        setup(ksr)
    make_router(ksr, settings).ksr_request_route(None)
    return ksr


def refused(ksr: FakeKSR) -> bool:
    return ksr.calls_to("pipelimit.pl_drop_retry") == [(7,)]


# --- the decisions -----------------------------------------------------------------------

def test_only_over_the_limit_refuses():
    assert admission.over_limit(-1)
    assert not admission.over_limit(1) and not admission.over_limit(2)
    # -2: the pipe could not be made (shared memory full): fail open, never refuse everything
    assert not admission.over_limit(-2)


def test_one_log_line_per_interval():
    assert admission.log_due(100.0, None)
    assert not admission.log_due(100.0 + admission.LOG_EVERY_S - 0.1, 100.0)
    assert admission.log_due(100.0 + admission.LOG_EVERY_S, 100.0)


# --- the part, on the request path ---------------------------------------------------------

@pytest.mark.parametrize("method", ["INVITE", "REGISTER", "SUBSCRIBE", "MESSAGE", "OPTIONS"])
def test_a_new_request_is_refused_while_overloaded_before_any_costly_step(method):
    ruri = "sip:2001@127.0.0.1"
    ksr = run(SipMessage(method=method, ruri=ruri), OVER)
    assert ksr.calls_to("pipelimit.pl_check_limit") == [(OVERLOAD_PIPE, "NETWORK", 32768)]
    assert refused(ksr)
    assert ksr.replies == []                  # pipelimit answers itself (stateless 503), nothing else does
    for costly in ("auth_db.auth_check", "auth.auth_challenge", "registrar.save", "registrar.lookup",
                   "tm.t_relay", "rtpengine.rtpengine_offer"):
        assert not ksr.called(costly), costly
    assert not ksr.relayed
    assert "kemi: overload:" in ksr.log_text("warn")


def test_under_the_limit_the_request_goes_on():
    ksr = run(SipMessage(method="INVITE"), UNDER)
    assert ksr.called("pipelimit.pl_check_limit") and not ksr.called("pipelimit.pl_drop_retry")
    assert ksr.replies == [(407, "Proxy Authentication Required")]


@pytest.mark.parametrize("method, headers", [("INVITE", CREDS), ("REGISTER", REG_CREDS)])
def test_the_challenged_half_is_finished_while_overloaded(method, headers):
    ksr = run(SipMessage(method=method, headers=headers), OVER,
              setup=lambda k: k.results.__setitem__("auth_db.auth_check", 1))
    assert not ksr.called("pipelimit.pl_drop_retry")
    assert ksr.called("auth_db.auth_check")


def test_the_pipe_failing_admits():
    ksr = run(SipMessage(method="INVITE"), -2)
    assert not ksr.called("pipelimit.pl_drop_retry")
    assert ksr.replies == [(407, "Proxy Authentication Required")]


@pytest.mark.parametrize("message", [
    SipMessage(method="BYE", to_tag="t1", headers={"Route": signed_route()}),
    SipMessage(method="ACK", to_tag="t1", headers={"Route": signed_route()}),
    SipMessage(method="INVITE", to_tag="t1", headers={"Route": signed_route()}),   # re-INVITE
    SipMessage(method="CANCEL"),
    SipMessage(method="OPTIONS", ruri="sip:127.0.0.1:5060"),                    # keepalive / health check
], ids=["bye", "ack", "reinvite", "cancel", "keepalive"])
def test_calls_up_and_keepalives_are_never_refused(message):
    ksr = run(message, OVER, setup=lambda k: k.results.__setitem__("tm.t_check_trans", 1))
    assert not ksr.called("pipelimit.pl_check_limit")
    assert not ksr.called("pipelimit.pl_drop_retry")


def test_a_retransmission_is_absorbed_before_the_check():
    ksr = run(SipMessage(method="INVITE"), OVER, setup=lambda k: k.results.__setitem__("tmx.t_precheck_trans", 1))
    assert not ksr.called("pipelimit.pl_check_limit")


def test_a_banned_source_is_dropped_before_the_check():
    ksr = run(SipMessage(method="INVITE", source=("192.0.2.66", 5060)), OVER,
              setup=lambda k: k.htable.__setitem__(("ipban", "192.0.2.66"), 1))
    assert not ksr.called("pipelimit.pl_check_limit")


def test_refusals_are_counted_and_logged_once_per_interval():
    ksr = FakeKSR(SipMessage(method="INVITE"))
    ksr.results["pipelimit.pl_check_limit"] = OVER
    router = make_router(ksr, {**ON, "metrics": {"enabled": True}})
    for _ in range(5):
        router.ksr_request_route(None)
    assert len(ksr.calls_to("pipelimit.pl_drop_retry")) == 5
    assert ksr.counter("kemi_replies_503_total", "overload") == 5
    assert ksr.log_text("warn").count("kemi: overload:") == 1


def test_off_by_default_and_then_absent():
    ksr = FakeKSR(SipMessage(method="INVITE"))
    router = make_router(ksr)
    assert isinstance(router.overload, NoOverload)
    router.ksr_request_route(None)
    assert not any(key.startswith("pipelimit.") for key, _ in ksr.calls)
    assert isinstance(make_router(FakeKSR(), ON).overload, Overload)


# --- settings and the rendered cfg ------------------------------------------------------------

def test_cfg_lines_only_when_enabled():
    assert "WITH_OVERLOAD" not in render_kamailio_defines(parse_settings({}))
    cfg = render_kamailio_defines(parse_settings(ON))
    for line in ("#!define WITH_OVERLOAD", f'#!define OVERLOAD_PIPE "{OVERLOAD_PIPE}"',
                 "#!define OVERLOAD_QUEUE_LIMIT 32768", "#!define OVERLOAD_RETRY_AFTER 7",
                 "#!define WITH_PIPELIMIT", "#!define PL_INTERVAL 1"):
        assert line in cfg.splitlines(), line


@pytest.mark.parametrize("key, value", [("queue_limit", 100), ("queue_limit", 1 << 30), ("retry_after", 0),
                                        ("retry_after", 86400)])
def test_out_of_range_values_are_refused_with_the_key(key, value):
    with pytest.raises(SettingsError, match=f"overload.{key}"):
        parse_settings({"overload": {"enabled": True, key: value}})


def test_with_the_call_rate_pipelimit_is_loaded_once_with_one_timer():
    """Both features use pipelimit, which has one timer: its define is guarded, so the rendered
    settings hold it twice and Kamailio's preprocessor takes it once (kamailio-common.cfg)."""
    cfg = render_kamailio_defines(parse_settings({**ON, "limits": {"source_cps": 5}}))
    assert cfg.count("#!ifndef WITH_PIPELIMIT") == 2 and cfg.count("#!define PL_INTERVAL 1") == 2
    assert "#!define WITH_OVERLOAD" in cfg and "#!define WITH_CALL_RATE_LIMITS" in cfg


# --- the health socket (overload.health_listen) -------------------------------------------------

HEALTH = {"overload": {"health_listen": "127.0.0.1:5099"}}


def test_the_health_socket_answers_options_with_its_own_worker_and_routes_nothing():
    ksr = FakeKSR(SipMessage(method="OPTIONS", ruri="sip:2001@127.0.0.1", socket_name="health"))
    make_router(ksr, {**HEALTH, "overload": {**HEALTH["overload"], **ON["overload"]}}).ksr_request_route(None)
    assert ksr.replies == [(200, "OK")]
    # before anything else: no overload check, no screening, no relaying, even for a user's URI
    assert not ksr.called("pipelimit.pl_check_limit") and not ksr.called("maxfwd.process_maxfwd")
    assert not ksr.relayed


@pytest.mark.parametrize("method", ["INVITE", "REGISTER", "MESSAGE"])
def test_anything_but_options_on_the_health_socket_is_dropped_counted_and_logged_once(method):
    ksr = FakeKSR(SipMessage(method=method, socket_name="health"))
    router = make_router(ksr, {**HEALTH, "metrics": {"enabled": True}})
    for _ in range(3):
        router.ksr_request_route(None)
    assert ksr.replies == [] and not ksr.relayed and not ksr.called("auth.auth_challenge")
    assert ksr.counter("kemi_dropped_requests_total", "health_socket") == 3
    assert ksr.log_text("info").count("only OPTIONS are answered on the health socket") == 1


def test_control_on_another_socket_an_options_goes_the_usual_way():
    ksr = FakeKSR(SipMessage(method="OPTIONS", ruri="sip:2001@127.0.0.1"))
    make_router(ksr, HEALTH).ksr_request_route(None)
    assert ksr.called("maxfwd.process_maxfwd")              # routed: the request path ran


def test_the_health_socket_is_absent_by_default_and_rendered_with_one_worker_when_set():
    from kemi.overload.part import HealthSocket, NoHealthSocket
    assert isinstance(make_router(FakeKSR()).health, NoHealthSocket)
    assert isinstance(make_router(FakeKSR(), HEALTH).health, HealthSocket)
    assert "health" not in render_kamailio_defines(parse_settings({}))
    lines = render_kamailio_defines(parse_settings(HEALTH)).splitlines()
    at = lines.index('listen=udp:127.0.0.1:5099 name "health"')
    assert lines[at - 1] == "socket_workers=1"          # applies to the next listen= only
    sip_listen = lines.index("listen=udp:127.0.0.1:5060")
    assert sip_listen < at - 1                           # the SIP sockets keep sip.children


@pytest.mark.parametrize("value, words", [
    ("localhost:5099", "is not ADDRESS:PORT"), ("127.0.0.1", "is not ADDRESS:PORT"),
    ("127.0.0.1:70000", "out of range"), ("0.0.0.0:5099", "every address"),
    ("127.0.0.1:5060", "is also the SIP socket"), ("::1:5099", "is not ADDRESS:PORT")])
def test_a_wrong_health_listen_is_refused_with_the_key_and_the_fix(value, words):
    with pytest.raises(SettingsError, match="overload.health_listen") as err:
        parse_settings({"overload": {"health_listen": value}})
    assert words in str(err.value)
