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
