"""Issue 25 in plain values: whose media address rtpengine learns (kemi/media/learning.py), the
flags every offer and answer carries for it, the daemon's options, and the relay's per-source
packet limit (kemi_tools/stack/relay_guard.py). The attacks themselves: tests/e2e/test_media_attacks.py."""
import subprocess

import pytest

from kemi import sip
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.media.learning import LEARN_ALL, LEARN_NAT, LEARN_NONE, learning_flags
from kemi.settings import DEFAULT_MEDIA_PROFILE, MediaInterface, RtpengineDaemon, parse_settings
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router
from kemi_tools.stack import relay_guard, rtpengine

SEED = "replace-origin replace-session-connection"
SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
OFFER_CALL = "rtpengine.rtpengine_offer"


@pytest.mark.parametrize("policy, nat, expected", [
    # the default: a party not behind NAT is never learned, one behind NAT is (its port may differ)
    (LEARN_NAT, False, ("endpoint-learning-off", "strict-source")),
    (LEARN_NAT, True, ("endpoint-learning-heuristic", "strict-source")),
    # nobody learned
    (LEARN_NONE, False, ("endpoint-learning-off", "strict-source")),
    (LEARN_NONE, True, ("endpoint-learning-off", "strict-source")),
    # rtpengine's own default for everybody: nothing added (kemi before issue 25)
    (LEARN_ALL, False, ()),
    (LEARN_ALL, True, ()),
])
def test_learning_flags(policy, nat, expected):
    assert learning_flags(policy, nat) == expected


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown endpoint learning"):
        learning_flags("heuristic", True)


@pytest.mark.parametrize("op, kw, expected", [
    (OFFER, {}, f"{SEED} trust-address endpoint-learning-off strict-source"),
    (ANSWER, {"nat": True}, f"{SEED} SIP-source-address endpoint-learning-heuristic strict-source"),
    (OFFER, {"nat": True, "learning": LEARN_NONE}, f"{SEED} SIP-source-address endpoint-learning-off strict-source"),
    (OFFER, {"learning": LEARN_ALL}, f"{SEED} trust-address"),
    (ANSWER, {"nat": True, "learning": LEARN_ALL}, f"{SEED} SIP-source-address"),
    (DELETE, {"nat": True}, ""),                        # a delete carries no SDP flags
])
def test_every_offer_and_answer_says_whose_address_is_learned(op, kw, expected):
    assert build_flags(op, DEFAULT_MEDIA_PROFILE, **kw) == expected


def offered(learning: str, behind_nat: bool) -> list:
    ksr = FakeKSR(SipMessage(method="INVITE", body=SDP, headers={
        "Content-Type": "application/sdp", "Proxy-Authorization": 'Digest username="2002"'}))
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results["nathelper.nat_uac_test"] = lambda k, tests: 1 if behind_nat and tests == sip.NAT_TESTS else -1
    make_router(ksr, {"media": {"enabled": True, "rtpengine": {"endpoint_learning": learning}}}).ksr_request_route(None)
    return ksr.calls_to(OFFER_CALL)


def test_the_routes_use_the_setting():
    assert offered("nat", False) == [(f"{SEED} trust-address endpoint-learning-off strict-source",)]
    assert offered("nat", True) == [(f"{SEED} SIP-source-address endpoint-learning-heuristic strict-source",)]
    assert offered("none", True) == [(f"{SEED} SIP-source-address endpoint-learning-off strict-source",)]
    assert offered("all", True) == [(f"{SEED} SIP-source-address",)]


def test_the_default_is_nat():
    assert parse_settings({}).media.rtpengine.endpoint_learning == LEARN_NAT


# --- the daemon --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, option", [("nat", "off"), ("none", "off"), ("all", "delayed")])
def test_the_daemon_learns_nothing_unless_told(policy, option):
    d = parse_settings({"media": {"rtpengine": {"endpoint_learning": policy}}}).media.rtpengine
    assert f"--endpoint-learning={option}" in rtpengine.argv(d)


def test_max_recv_iters_only_where_rtpengine_has_it(monkeypatch):
    d = RtpengineDaemon()
    option = f"{rtpengine.RECV_ITERS_OPTION}={rtpengine.RECV_ITERS}"
    monkeypatch.setattr(rtpengine, "supports", lambda name: True)
    assert option in rtpengine.argv(d)
    monkeypatch.setattr(rtpengine, "supports", lambda name: False)
    assert not any(a.startswith(rtpengine.RECV_ITERS_OPTION) for a in rtpengine.argv(d))


def test_supports_reads_rtpengine_help(monkeypatch):
    rtpengine.supports.cache_clear()
    help_text = "  --max-recv-iters=INT     Maximum continuous reading cycles in UDP poller loop.\n"
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: subprocess.CompletedProcess(a, 0, help_text, ""))
    assert rtpengine.supports("--max-recv-iters") and not rtpengine.supports("--max-sessions")
    rtpengine.supports.cache_clear()


# --- the packet limit in front of the relay ports -------------------------------------------------


def test_the_ruleset_limits_each_source_per_relay_port():
    d = RtpengineDaemon(interfaces=(MediaInterface("public", "203.0.113.1"), MediaInterface("private", "198.51.100.1"),
                                    MediaInterface("v6", "2001:db8::1")), port_min=30000, port_max=40000)
    script = relay_guard.ruleset(d)
    # replaced as a whole: created if missing, deleted, created again
    assert script.startswith("table inet kemi_relay\ndelete table inet kemi_relay\ntable inet kemi_relay {\n")
    limit = "limit rate over 1000/second burst 100 packets"
    assert (f"ip daddr {{ 198.51.100.1, 203.0.113.1 }} udp dport 30000-40000 update @flows4 "
            f"{{ ip saddr . udp dport {limit} }} counter drop") in script
    assert (f"ip6 daddr {{ 2001:db8::1 }} udp dport 30000-40000 update @flows6 "
            f"{{ ip6 saddr . udp dport {limit} }} counter drop") in script
    assert "type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10s; size 65536;" in script
    assert "type filter hook input priority -10; policy accept;" in script


def test_one_family_only_gets_one_rule():
    script = relay_guard.ruleset(RtpengineDaemon())             # the default: 127.0.0.1
    assert "flows4" in script and "flows6" not in script and "ip6" not in script


def test_apply_and_remove_run_nft(monkeypatch):
    ran = []

    def run(argv, **kw):
        ran.append((argv, kw.get("input")))
        return subprocess.CompletedProcess(argv, 0, "", "")
    relay_guard.apply(RtpengineDaemon(), run=run)
    relay_guard.remove(run=run)
    assert ran[0] == (["nft", "-f", "-"], relay_guard.ruleset(RtpengineDaemon()))
    assert ran[1] == (["nft", "delete", "table", "inet", "kemi_relay"], None)


def test_a_failed_load_says_what_it_needs():
    def run(argv, **kw):
        return subprocess.CompletedProcess(argv, 1, "", "Error: Could not process rule: Operation not permitted")
    with pytest.raises(relay_guard.GuardError, match="Operation not permitted.*CAP_NET_ADMIN"):
        relay_guard.apply(RtpengineDaemon(), run=run)


def test_dropped_reads_the_counters():
    listing = ("table inet kemi_relay {\n  chain input {\n    ip daddr 127.0.0.1 udp dport 30000-40000 update @flows4 "
               "{ ip saddr . udp dport limit rate over 1000/second burst 100 packets } counter packets 1234 bytes 9 drop\n"
               "    ip6 daddr ::1 ... counter packets 6 bytes 1 drop\n  }\n}\n")
    assert relay_guard.dropped(run=lambda argv, **kw: subprocess.CompletedProcess(argv, 0, listing, "")) == 1240
    assert relay_guard.dropped(run=lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "No such file")) == 0
