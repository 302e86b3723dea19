"""The benchmark's arithmetic: percentiles of SIPp's millisecond samples, rates, ratios."""
import math

from bench.load import RunResult, percentile
from bench.report import meets, ratio
from bench.run import median_ok, round_rate


def test_percentile_interpolates_within_the_millisecond():
    # SIPp logs whole milliseconds; 0 stands for [0, 0.5) ms here, 1 for [0.5, 1.5) ...
    assert percentile([0] * 50 + [1] * 50, 50) == 0.5
    assert percentile([0] * 99 + [10], 99) == 0.5
    assert 9.5 <= percentile([0] * 98 + [10] * 2, 99) <= 10.5
    assert math.isnan(percentile([], 50))


def test_a_point_is_clean_when_the_median_run_had_no_failure():
    ok = RunResult("native", 100, 200, successful=200)
    failed = RunResult("native", 100, 200, successful=199, failed=1)
    short = RunResult("native", 100, 200, successful=150)          # calls never made count too
    assert median_ok([ok, ok, failed])
    assert not median_ok([ok, failed, short])


def test_rates_are_rounded_to_readable_steps():
    assert round_rate(1234) == 1250
    assert round_rate(456) == 460
    assert round_rate(42) == 40


def test_ratios_and_targets():
    assert ratio(110, 100) == 1.1
    assert ratio(1, 0) is None and ratio(float("nan"), 1) is None
    assert meets("cpu_per_1000", 1.15) and not meets("cpu_per_1000", 1.16)
    assert meets("max_rate", 0.95) and not meets("max_rate", 0.94)
    assert meets("route_time_extra_us", None) is None


# --- bench/native_settings.py: what native.cfg gets from the settings ------------------------

def _settings(tables: dict):
    from kemi.settings import parse_settings
    return parse_settings(tables, source="test")


def test_native_settings_render_the_python_sides_values():
    import re
    from bench.native_settings import render
    from kemi.security.scanner import ScannerFilter

    s = _settings({"sip": {"listen": ["udp:127.0.0.1:5060", "udp:192.0.2.1:5060"]},
                   "security": {"route_secret": "s3cret-s3cret-s3cret", "scanner_user_agents": ["sip.vicious", "pplsip"]}})
    text = render(s)
    defines = dict(re.findall(r'^#!define (\S+) ?(.*)$', text, re.M))
    assert defines["ROUTE_SECRET"] == "\"s3cret-s3cret-s3cret\""
    assert "WITH_SECURITY" in defines and "WITH_SCANNER_UA" in defines
    # the regex (as Kamailio reads the string) matches what ScannerFilter matches, no more
    scanner_re = re.compile(defines["SCANNER_UA_RE"].strip('"').replace("\\\\", "\\"), re.I)
    own_re = re.compile(defines["OWN_ADDRESS_RE"].strip('"').replace("\\\\", "\\"))
    f = ScannerFilter(["sip.vicious", "pplsip"])
    for ua in ("sip.vicious 1.0", "SIP.VICIOUS", "sipXvicious", "PPLSIP", "Linphone"):
        assert bool(scanner_re.search(ua)) == f.matches(ua), ua
    assert own_re.search("192.0.2.1") and own_re.search("127.0.0.1")
    assert not own_re.search("127.0.0.10") and not own_re.search("192.0.2.11")


def test_native_settings_random_secret_per_render_when_none_is_set():
    from bench.native_settings import render
    s = _settings({})
    assert render(s) != render(s)          # a new ROUTE_SECRET each start, like RUN_SECRET


def test_native_settings_sbc_sides_most_specific_network_first():
    from bench.native_settings import render
    s = _settings({
        "sbc": {"enabled": True,
                "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["0.0.0.0/0"],
                           "gateways": ["sip:203.0.113.10:5060"]},
                "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24", "10.0.0.0/8"],
                            "gateways": ["sip:198.51.100.10:5060"]}},
        "media": {"enabled": False},
    })
    text = render(s)
    order = [line.split('"')[3] for line in text.splitlines() if "is_in_subnet" in line]
    assert order == ["198.51.100.0/24", "10.0.0.0/8", "0.0.0.0/0"]
    assert '#!define SBC_PRIVATE_SOCKETS_RE "^(private)$"' in text


def test_report_publishes_between_markers_only():
    from bench.report import MARK_END, MARK_START, replace_between_markers
    text = f"before\n{MARK_START}\nold table\n{MARK_END}\nafter\n"
    out = replace_between_markers(text, f"{MARK_START}\nnew\n{MARK_END}")
    assert out == f"before\n{MARK_START}\nnew\n{MARK_END}\nafter\n"
    import pytest
    with pytest.raises(ValueError):
        replace_between_markers("no markers here", "x")


def test_targets_summary_counts_and_names_misses():
    from bench.report import targets_summary
    s = {"name": "call", "ratios": {"max_rate": 1.0, "cpu_per_1000": 1.3, "p99_server_us": 1.0},
         "route_time_extra_us": 20.0,
         "targets_met": {"max_rate": True, "cpu_per_1000": False, "p99_server_us": True, "route_time_extra_us": False}}
    text = targets_summary({"scenarios": [s]})
    assert "| CPU per call ≤ 1.15 | 0 of 1 | call 1.30 |" in text
    assert "| route time ≤ +15 µs per request (low rate) | 0 of 1 | call +20 |" in text
    assert "| highest clean rate ≥ 0.95 | 1 of 1 | - |" in text


# --- response times by capture (kemi_tools/capture.py): the pairing of packets ---------------

def test_capture_pairs_each_message_with_the_first_packet_kamailio_sent_for_it():
    from kemi_tools.capture import SipPacket, SipTimes
    first, second, ack = (b"c1", b"1", b"INVITE"), (b"c1", b"2", b"INVITE"), (b"c1", b"1", b"ACK")
    times = SipTimes(5060)
    times.packets = [
        SipPacket(1_000_000, True, first, 0), SipPacket(1_050_000, False, first, 407),     # answered: 50 µs
        SipPacket(4_000_000, True, ack, 0),                                               # absorbed: no pair
        SipPacket(2_000_000, True, second, 0), SipPacket(2_020_000, False, second, 100),  # 100 Trying: 20 µs
        SipPacket(2_030_000, False, second, 0),                                           # relayed: not again
        SipPacket(3_000_000, True, second, 200), SipPacket(3_010_000, False, second, 200),  # reply relayed: 10 µs
    ]
    assert times.response_times_us() == [50.0, 20.0, 10.0]


def test_sip_messages_are_keyed_by_call_id_and_cseq():
    from kemi_tools.capture import parse_sip
    assert parse_sip(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nCSeq: 2 INVITE\r\n\r\nv=0") == ((b"x", b"2", b"INVITE"), 0)
    assert parse_sip(b"SIP/2.0 407 Proxy Auth\r\ni: x\r\nCSeq: 1 INVITE\r\n\r\n") == ((b"x", b"1", b"INVITE"), 407)
    assert parse_sip(b"\x80\x00 RTP, not SIP") is None


def test_entries_per_call_from_a_runs_counters():
    from bench.run import entries_per_call
    run = RunResult("python", 100, 300, successful=300, entries={"request_route": 1200, "onreply_manage": 600})
    assert entries_per_call(run) == {"onreply_manage": 2.0, "request_route": 4.0, "total": 6.0}
    assert entries_per_call(RunResult("python", 100, 300)) == {}


def test_overload_rates_are_the_higher_clean_rate_of_the_two_routings(tmp_path):
    from bench.overload import clean_rates
    bench_json = tmp_path / "bench.json"
    bench_json.write_text('{"scenarios": [{"name": "call", "max_rate": {"native": 1300, "python": 1550}},'
                          ' {"name": "register-db1", "max_rate": {"native": 2900, "python": 2400}},'
                          ' {"name": "never-measured", "max_rate": {}}]}')
    assert clean_rates(bench_json) == {"call": 1550.0, "register-db1": 2900.0}


def test_an_overload_run_sorts_every_attempt_into_one_outcome():
    from bench.overload import OverloadRun, markdown
    run = OverloadRun("call", "python", True, 3.0, 4650, 10.0, created=1000, served=600, refused=350, other=10,
                      unanswered=40, sip_options="3/4 answered", recovered_s=1.5)
    s = run.summary()
    assert s["goodput"] == 60.0 and s["unanswered_share"] == 0.04 and s["offered_rate"] == 100.0
    assert run.served + run.refused + run.other + run.unanswered == run.created
    table = markdown({"machine": {"pinning": {"kamailio": "1", "sipp": "0"}, "children": 4, "seconds": 10,
                                  "max_retrans": 4, "answer_wait_s": 8, "rates_from": "bench.json",
                                  "clean_rates": {"call": 1550}, "elapsed_s": 1}, "runs": [s]})
    assert "| call | python | on | 100/s (3x) | 1,000 | 600 (60) | 350 | 10 | 40 (4.0%) |" in table
