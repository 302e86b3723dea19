"""The SIPp kit's plain parts: parsing the command line, counting results, SIPp's command line."""
from collections import Counter
from pathlib import Path

import pytest

from kemi_tools.kit.__main__ import main, options_from, parser
from kemi_tools.kit.runner import (SCENARIO_FILES, KitError, Target, User, outcome, parse_target, parse_users,
                                   percentile, summary)
from kemi_tools.sipp import SCENARIOS, Sipp, auth_row


def test_users_are_user_colon_password():
    assert parse_users("2001:123456, 2002:p:w") == [User("2001", "123456"), User("2002", "p:w")]


@pytest.mark.parametrize("text", ["2001", "2001:", ":pw", "", " , "])
def test_a_user_without_password_is_refused(text):
    with pytest.raises(KitError, match="USER:PASSWORD"):
        parse_users(text)


@pytest.mark.parametrize("text, target", [
    ("192.0.2.10:5070", Target("192.0.2.10", 5070)), ("192.0.2.10", Target("192.0.2.10", 5060)),
    ("pbx.example.com", Target("pbx.example.com", 5060)), ("[::1]:5062", Target("::1", 5062)),
    ("[2001:db8::1]", Target("2001:db8::1", 5060)),
])
def test_targets(text, target):
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["192.0.2.10:x", "192.0.2.10:70000", ":5060", "[::1]:x"])
def test_bad_targets_are_refused(text):
    with pytest.raises(KitError, match="HOST"):
        parse_target(text)


def test_outcome_counts_answers_and_silence():
    r = outcome("registrations", 5, ["200", "200", "401"], ["200", "200"], "x", [1.0])
    assert (r.ok, r.failed, r.success) == (2, 3, False)
    assert r.failures == Counter({"answered 401": 1, "no final answer (timeout or unexpected message)": 2})


def test_a_call_answered_but_not_ended_is_a_failure():
    r = outcome("calls", 2, ["200", "200"], ["200"], "x", [])
    assert r.ok == 1 and r.failures == Counter({"answered 200 but did not complete (BYE)": 1})


def test_all_ok_is_success_and_nothing_expected_is_not():
    assert outcome("pings", 3, ["200"] * 3, ["200"] * 3, "x", []).success
    assert not outcome("pings", 0, [], [], "x", []).success


def test_percentiles_and_summary():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile([7.0], 95)) == (50, 95, 7)
    text = "\n".join(summary(outcome("calls", 4, ["200"] * 4, ["200"] * 4, "setup", [4.0, 8.0, 4.0, 4.0])))
    assert "calls: 4 ok, 0 failed (of 4)" in text
    assert "response time ms (setup, n=4): min 4  p50 4  p95 8  max 8" in text


def test_options_defaults(monkeypatch):
    args = parser().parse_args(["register", "--target", "127.0.0.1:5080", "--users", "a:b,c:d"])
    opts = options_from(args)
    assert (opts.count, opts.domain, opts.local_ip, opts.rate) == (2, "127.0.0.1", "127.0.0.1", 5)
    assert opts.port != opts.callee_port and opts.run_timeout == 31.1


def test_call_and_register_need_users():
    with pytest.raises(KitError):
        options_from(parser().parse_args(["call", "--target", "127.0.0.1"]))
    assert options_from(parser().parse_args(["options", "--target", "127.0.0.1"])).users == []


def test_usage_errors_exit_2(capsys):
    assert main(["register", "--target", "127.0.0.1", "--users", "nopassword"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_sipp_command_line(tmp_path):
    s = Sipp("call.xml", tmp_path, "127.0.0.1", 14100, target="127.0.0.1:14000",
             rows=[auth_row("2002", "pw", "example.com", "2001")], sets={"hold_ms": 100},
             calls=20, rate=5, timeout=34, recv_timeout=5)
    argv = s.argv()
    assert argv[:2] == ["sipp", "127.0.0.1:14000"]
    for pair in (["-sf", str(SCENARIOS / "call.xml")], ["-p", "14100"], ["-m", "20"], ["-r", "5"],
                 ["-timeout", "34s"], ["-recv_timeout", "5000"], ["-set", "hold_ms", "100"], ["-rtt_freq", "1"]):
        assert any(argv[i:i + len(pair)] == pair for i in range(len(argv))), pair
    assert (tmp_path / "call-14100.csv").read_text() == \
        "SEQUENTIAL\n2002;example.com;[authentication username=2002 password=pw];2001\n"


def test_the_kit_ships_its_scenarios():
    assert set(SCENARIO_FILES) == {"register", "call", "callee", "options"}
    assert set(SCENARIO_FILES.values()) <= {p.name for p in SCENARIOS.glob("*.xml")}
    for role, name in SCENARIO_FILES.items():
        if role != "callee":
            text = (SCENARIOS / name).read_text()
            assert 'start_rtd="1"' in text and 'rtd="1"' in text, name


def test_sipp_trouble_is_reported_only_when_sipp_itself_failed():
    from kemi_tools.kit.runner import sipp_trouble
    from kemi_tools.sipp import SippResult

    normal = SippResult(1, [], [], {}, "", errors=["Aborting call on unexpected message"])
    assert sipp_trouble("the calling", normal) == []
    broken = SippResult(254, [], [], {}, "", errors=["Unable to bind main socket, errno = 98 (Address already in use)"])
    assert sipp_trouble("the calling", broken) == [
        "the calling SIPp exited with status 254: Unable to bind main socket, errno = 98 (Address already in use)"]
    killed = SippResult(-9, [], [], {}, "", killed=True)
    assert sipp_trouble("the callee", killed) == ["the callee SIPp was killed after its timeout"]


def test_sipp_error_lines_lose_their_timestamps():
    from kemi_tools.sipp import ERROR_STAMP_RE

    line = "2026-11-22\t15:45:36.149886\t1795362336.149886: Unable to bind main socket"
    assert ERROR_STAMP_RE.sub("", line) == "Unable to bind main socket"
