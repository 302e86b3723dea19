"""The one SIPp runner (kemi_tools/sipp.py): command lines, file names, what it reads back; and
the one scenario folder (kemi_tools/scenarios/) every user of SIPp names its files in."""
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.load import client, server
from kemi_tools.sipp import SCENARIOS, Sipp, SippResult, uri_host

ROOT = Path(__file__).resolve().parents[2]
# the scenarios the benchmark measures: a refusal must be able to fail the call (-set fail_refused 1)
STRICT = ("register.xml", "uac_call.xml", "trunk_call.xml")


def pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(zip(argv, argv[1:]))


def test_a_tests_sipp_traces_everything_a_bench_load_only_what_it_measures(tmp_path):
    test = Sipp("register.xml", tmp_path, "127.0.0.1", 11100, target="127.0.0.1:11000", trace_msg=True).argv()
    for flag in ("-trace_logs", "-trace_err", "-trace_msg", "-trace_stat", "-trace_rtt", "-timeout_error"):
        assert flag in test
    assert {("-m", "1"), ("-recv_timeout", "10000"), ("-timeout", "30s"), ("-key", "contact_host")} <= pairs(test)

    inf = tmp_path / "users.csv"
    load = client("uac_call.xml", "127.0.0.1:11000", inf, tmp_path, 11101, 300, 100, "0", "127.0.0.2",
                  sets={"hold_ms": 100}).argv()
    assert load[:4] == ["taskset", "-c", "0", "sipp"]
    assert {("-inf", str(inf)), ("-r", "100"), ("-m", "300"), ("-max_retrans", "0"), ("-recv_timeout", "2000"),
            ("-timeout", "18s"), ("fail_refused", "1"), ("hold_ms", "100")} <= pairs(load)
    for flag in ("-trace_logs", "-trace_msg", "-timeout_error"):
        assert flag not in load
    assert "-trace_rtt" in load


def test_a_server_takes_calls_until_stopped(tmp_path):
    argv = server("uas_callee.xml", tmp_path, 11102, "0").argv()
    for flag in ("-m", "-timeout", "-recv_timeout", "-trace_rtt", "-trace_logs"):
        assert flag not in argv
    netns = Sipp("gw_answer.xml", tmp_path, "198.51.100.10", 11103, calls=None, netns="ns1", cpus="1").argv()
    assert netns[:8] == ["ip", "netns", "exec", "ns1", "taskset", "-c", "1", "sipp"]


def test_contact_host_defaults_to_the_sipps_address():
    assert ("contact_host", "[2001:db8::7]") in pairs(Sipp("register.xml", Path("/x"), "2001:db8::7", 1).argv())
    given = Sipp("register.xml", Path("/x"), "127.0.0.1", 1, keys={"contact_host": "192.0.2.7"}).argv()
    assert ("contact_host", "192.0.2.7") in pairs(given) and ("contact_host", "127.0.0.1") not in pairs(given)
    assert uri_host("192.0.2.7") == "192.0.2.7"


def test_each_run_has_its_own_files(tmp_path):
    first = Sipp("register.xml", tmp_path, "127.0.0.1", 11104)
    assert first.tag == "register-11104"
    first.file(".out").write_text("")
    assert Sipp("register.xml", tmp_path, "127.0.0.1", 11104).tag == "register-11104-2"
    assert Sipp("uac_call.xml", tmp_path, "127.0.0.1", 11104, name="call").tag == "call-11104"


def test_a_port_is_picked_when_none_is_given(tmp_path):
    class Slot(Sipp):
        def pick_port(self) -> int:
            return 11999

    assert Slot("register.xml", tmp_path).local_port == 11999
    assert Sipp("register.xml", tmp_path).local_port > 0


def test_traced_messages_are_split_by_direction():
    sep = "----------------------------------------------- 2026-12-07 12:14:27.695311\n"
    trace = (f"{sep}UDP message sent (300 bytes):\n\nINVITE sip:x SIP/2.0\r\nVia: a\r\n\n"
             f"{sep}UDP message received [200] bytes :\n\nSIP/2.0 407 Proxy Authentication Required\r\n\n"
             f"{sep}UDP message received [100] bytes :\n\nBYE sip:y SIP/2.0\r\n")
    r = SippResult(0, ["final=200 call-id=1", "bye=200 call-id=1", "final=404 call-id=2"], messages=trace)
    assert r.finals == [200, 404] and r.values("bye") == ["200"]
    assert [m.split()[0] for m in r.received()] == ["SIP/2.0", "BYE"]
    assert r.traced("sent")[0].startswith("INVITE") and r.received_requests("BYE") == ["BYE sip:y SIP/2.0"]


def test_every_scenario_is_well_formed_and_the_strict_ones_can_fail_a_refusal():
    for path in SCENARIOS.glob("*.xml"):
        ET.parse(path)
    for name in STRICT:
        text = (SCENARIOS / name).read_text()
        assert re.search(r'<Global variables="[^"]*fail_refused', text), name
        assert '<nop test="fail_refused" next="fail"/>' in text and '<recv response="999" timeout="1"/>' in text, name
        assert 'start_rtd="1"' in text, name


def test_the_scenarios_install_with_kemi_tools():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["package-data"]["kemi_tools"] == ["scenarios/*.xml"]
    assert SCENARIOS == ROOT / "kemi_tools" / "scenarios"


def test_every_scenario_the_code_names_is_in_the_folder():
    named = set()
    for folder in ("tests/e2e", "tests/harness", "kemi_tools", "bench"):     # (unit tests only build argv)
        for path in (ROOT / folder).rglob("*.py"):
            named |= set(re.findall(r"""["']([a-z_]+\.xml)["']""", path.read_text()))
    named -= {"sipp.dtd"}
    assert named and named <= {p.name for p in SCENARIOS.glob("*.xml")}, named - {p.name for p in SCENARIOS.glob("*.xml")}
    assert not (ROOT / "fixtures" / "sipp").exists() and not (ROOT / "bench" / "sipp").exists()
