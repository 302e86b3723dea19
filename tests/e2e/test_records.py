"""Call records end to end (issue 20): real Kamailio with acc, MariaDB, rtpengine, SIPp phones.

Each call kind runs once, all of them at the same time on one Kamailio (registrar mode,
media anchored by the test's own rtpengine), and gets its CDR (the kemi_cdr view over the
kemi_acc rows) checked column by column against what the test did: who called whom, the
times against the test's own clock, the SIP code, the Q.850 cause the callee's Reason
header carried, who hung up, and the RTP packet counts against what each SIPp phone's pcap
sent. The phones' RTCP carries receiver reports (tests/harness/records.py), so rtpengine
has loss, jitter and MOS figures to give. Control: the same calls with records off leave
no row.
"""
from __future__ import annotations

import csv
import io
import math
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import media, stack
from harness.records import (acc_rows, cdrs, close_to, logged, wait_rows, write_call_audio)
from harness.sipp import Sipp, auth_row
from harness.stack import free_port

RING_MS = 600              # the callee rings this long before it answers
HOLD_MS = 4200             # an answered call stays up this long (the audio pcap lasts 3 s: 1.2 s to spare)
CANCEL_AFTER_MS = 800      # the caller gives up after ringing this long
CLOCK_SLACK_S = 1.0        # a record's time may be this far outside the test's own clock
# ShortTimerRouter (tests/e2e/routers): a ringing phone is given up after 2.5 s (408); tm's
# timers tick in steps (measured: the 408 came 48 ms before the 2.5 s were up)
RING_TIMEOUT_S = 2.5
TM_TIMER_STEP_S = 0.2
ROUTERS = str(stack.project_file("tests", "e2e", "routers"))


@pytest.fixture
def rtpengine(tmp_path):
    engine = media.TestRtpengine(tmp_path / "rtpengine").start()
    yield engine
    engine.stop()


def records_tables(engine=None, enabled: bool = True, **tables) -> dict:
    """[records] on (spool in the test's folder), the short ring timeout, media when given."""
    out = {"python": {"router": "short_timer_router:ShortTimerRouter", "path": [ROUTERS]}}
    if engine is not None:
        out.update(engine.media_settings())
    out.update(tables)
    out.setdefault("records", {})["enabled"] = enabled
    return out


@dataclass
class Call:
    """One call of the test: its phones, what it is meant to show, and what happened."""
    name: str
    caller: str
    callee: str
    uac: str
    uas: str | None            # None: nobody registered (the proxy answers)
    final: int
    workdir: Path
    sets: dict = field(default_factory=dict)
    uas_sets: dict = field(default_factory=dict)
    audio: tuple | None = None
    started: float = 0.0
    ended: float = 0.0
    caller_result: object = None
    callee_result: object = None

    @property
    def call_id(self) -> str:
        return logged(self.caller_result, "final").get("call-id", "")


def register(proxy, workdir: Path, user: str, port: int) -> None:
    reg = Sipp("register.xml", workdir, target=proxy.target, rows=[auth_row(user, stack.PASSWORD, stack.DOMAIN)],
               keys={"contact_port": port, "expires": 3600}).run()
    assert reg.finals == [200], reg.stdout[-2000:]


def run_call(proxy, call: Call) -> Call:
    """The callee (registered on its own port, own media port and pcap) and the caller."""
    caller_dir, callee_dir = call.workdir / "caller", call.workdir / "callee"
    caller_dir.mkdir(parents=True, exist_ok=True)
    callee_dir.mkdir(parents=True, exist_ok=True)
    call.audio = write_call_audio(caller_dir, callee_dir)
    uas = None
    if call.uas:
        port = free_port()
        register(proxy, callee_dir, call.callee, port)
        uas = Sipp(call.uas, callee_dir, local_port=port, timeout=30, sets=call.uas_sets,
                   extra=["-mp", str(media.phone_media_port())]).start()
    call.started = time.time()
    uac = Sipp(call.uac, caller_dir, target=proxy.target, local_port=free_port(), timeout=30,
               rows=[auth_row(call.caller, stack.PASSWORD, stack.DOMAIN, call.callee)], sets=call.sets,
               extra=["-mp", str(media.phone_media_port())])
    call.caller_result = uac.run()
    if uas:
        call.callee_result = uas.wait()
    call.ended = time.time()
    return call


def run_calls(proxy, calls: list[Call]) -> list[Call]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda c: run_call(proxy, c), calls))


def the_calls(db, workdir: Path, prefix: str) -> list[Call]:
    """Every kind of call, each between its own two extensions (PREFIX0n)."""
    users = [f"{prefix}{n:02d}" for n in range(12)]
    for user in users:
        db.add_subscriber(user)
    answered = {"hold_ms": HOLD_MS}
    return [
        Call("answered, caller hangs up", users[0], users[1], "records_uac.xml", "records_uas.xml", 200,
             workdir / "answered", sets=answered, uas_sets={"ring_ms": RING_MS}),
        Call("answered, callee hangs up", users[2], users[3], "records_uac_callee_ends.xml", "records_uas_bye.xml",
             200, workdir / "callee-ends", uas_sets={"ring_ms": RING_MS, "hold_ms": HOLD_MS}),
        Call("busy", users[4], users[5], "records_uac.xml", "records_uas_busy.xml", 486, workdir / "busy",
             sets=answered),
        Call("cancelled", users[6], users[7], "uac_cancel.xml", "uas_ring_cancelled.xml", 487, workdir / "cancelled",
             sets={"hold_ms": CANCEL_AFTER_MS}),
        Call("unanswered", users[8], users[9], "records_uac.xml", "uas_ring_cancelled.xml", 408,
             workdir / "unanswered", sets=answered),
        Call("not registered", users[10], users[11], "records_uac.xml", None, 480, workdir / "refused", sets=answered),
    ]


def kemi_cdr(proxy, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "kemi", "cdr", "--settings", str(proxy.settings_file), *args],
                          capture_output=True, text=True, timeout=60, cwd=stack.project_file())
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def check_common(call: Call, cdr: dict) -> None:
    """What every record shows: who, when, the answer."""
    assert cdr["caller"] == call.caller and cdr["callee_dialed"] == call.callee, cdr
    assert cdr["src_kind"] == "extension" and cdr["src"] == call.caller, cdr
    assert int(cdr["sip_code"]) == call.final, cdr
    start, end = float(cdr["start_ts"]), float(cdr["end_ts"])
    assert call.started - CLOCK_SLACK_S <= start <= end <= call.ended + CLOCK_SLACK_S, (call.started, cdr, call.ended)
    assert close_to(cdr["duration"], end - start, 0.002), cdr


def check_answered(call: Call, cdr: dict, media_anchored: bool) -> None:
    answer, end = float(cdr["answer_ts"]), float(cdr["end_ts"])
    # the callee rang RING_MS, the call stayed up about HOLD_MS after the answer
    assert RING_MS / 1000 - 0.05 <= answer - float(cdr["start_ts"]) <= RING_MS / 1000 + CLOCK_SLACK_S, cdr
    talk = end - answer
    assert HOLD_MS / 1000 - 0.05 <= talk <= HOLD_MS / 1000 + CLOCK_SLACK_S, cdr
    assert int(cdr["billable_seconds"]) == math.ceil(talk), cdr
    assert cdr["dst_kind"] == "extension" and cdr["dst"] == call.callee, cdr
    assert cdr["callee_routed"].startswith(f"sip:{call.callee}@127.0.0.1:"), cdr
    assert cdr["attempts"] == "1", cdr
    caller_audio, callee_audio = call.audio
    if not media_anchored:
        assert all(cdr[f"{p}_{n}"] is None for p in ("caller", "callee") for n in ("rtp_packets", "mos")), cdr
        return
    # RTP as each SIPp pcap sent it (loopback loses nothing; allow a packet in flight at the BYE)
    for party, audio in (("caller", caller_audio), ("callee", callee_audio)):
        packets, octets = int(cdr[f"{party}_rtp_packets"]), int(cdr[f"{party}_rtp_bytes"])
        assert audio.packets - 2 <= packets <= audio.packets, (party, audio.packets, cdr)
        assert octets == packets * (audio.rtp_bytes // audio.packets), (party, cdr)
        # what the party's own RTCP receiver reports said (rtpengine keeps the last loss, the
        # average jitter) and the MOS rtpengine made of them
        assert int(cdr[f"{party}_lost"]) == audio.lost, (party, cdr)
        assert int(cdr[f"{party}_jitter_ms"]) == audio.jitter_ms, (party, cdr)
        mos, low = float(cdr[f"{party}_mos"]), float(cdr[f"{party}_mos_min"])
        assert 1.0 <= low <= mos <= 5.0, (party, cdr)


def test_every_kind_of_call_gets_one_record_with_every_column(db, kamailio_factory, rtpengine, tmp_path):
    proxy = kamailio_factory(records_tables(rtpengine))
    calls = run_calls(proxy, the_calls(db, tmp_path, "81"))
    for call in calls:
        assert call.caller_result.finals == [call.final], f"{call.name}: {call.caller_result.stdout[-2000:]}"
        rows = wait_rows(lambda call=call: cdrs(db, call.call_id), 1)
        assert len(rows) == 1, f"{call.name}: {rows} {acc_rows(db, call.call_id)}"
        cdr = rows[0]
        check_common(call, cdr)
        if call.final == 200:
            check_answered(call, cdr, media_anchored=True)
        else:
            assert cdr["answer_time"] is None and cdr["billable_seconds"] == "0", cdr
    by_name = {c.name: cdrs(db, c.call_id)[0] for c in calls}
    assert by_name["answered, caller hangs up"]["ended_by"] == "caller"
    assert by_name["answered, caller hangs up"]["q850_cause"] is None
    ended = by_name["answered, callee hangs up"]
    assert ended["ended_by"] == "callee" and ended["q850_cause"] == "16", ended
    assert ended["reason_header"] == 'Q.850;cause=16;text="Normal call clearing"', ended
    busy = by_name["busy"]
    assert busy["ended_by"] == "callee" and busy["q850_cause"] == "17" and busy["sip_reason"] == "Busy Here", busy
    cancelled = by_name["cancelled"]
    assert cancelled["ended_by"] == "caller", cancelled
    cancel_rows = [r for r in acc_rows(db, cancelled["call_id"]) if r["method"] == "CANCEL"]
    assert len(cancel_rows) == 1 and cancel_rows[0]["from_tag"] == cancelled["from_tag"], \
        acc_rows(db, cancelled["call_id"])
    assert CANCEL_AFTER_MS / 1000 - 0.05 <= float(cancelled["duration"]) <= CANCEL_AFTER_MS / 1000 + CLOCK_SLACK_S
    unanswered = by_name["unanswered"]
    assert unanswered["ended_by"] == "proxy", unanswered
    assert RING_TIMEOUT_S - TM_TIMER_STEP_S <= float(unanswered["duration"]) <= RING_TIMEOUT_S + CLOCK_SLACK_S, \
        unanswered
    refused = by_name["not registered"]
    assert refused["ended_by"] == "proxy" and refused["dst_kind"] is None, refused
    # the records without SQL: python3 -m kemi cdr, on the proxy's settings
    busy_call = next(c for c in calls if c.name == "busy")
    exported = kemi_cdr(proxy, "--user", busy_call.callee, "--csv")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["call_id"], r["sip_code"], r["q850_cause"], r["ended_by"]) for r in rows] == \
        [(busy_call.call_id, "486", "17", "callee")], exported
    table = kemi_cdr(proxy, "--since", "10m", "--limit", "0")
    assert all(c.call_id in table for c in calls), table
    print(table)
    print("\nrecords:", {name: {k: v for k, v in cdr.items() if v is not None} for name, cdr in by_name.items()})


def test_without_media_the_record_has_no_media_figures_and_records_off_write_nothing(db, kamailio_factory, tmp_path):
    """records on, media off: the same columns, no media figures (the RTP went phone to phone).
    The control: records off, the same calls: not one row, and Kamailio loaded no acc."""
    users = iter(f"82{n:02d}" for n in range(20))
    for user in [f"82{n:02d}" for n in range(20)]:
        db.add_subscriber(user)
    plain = kamailio_factory(records_tables(), name="records-no-media")
    control = kamailio_factory(records_tables(enabled=False), name="records-off")

    def calls(name: str) -> list[Call]:
        return [Call(f"{name} answered", next(users), next(users), "records_uac.xml", "records_uas.xml", 200,
                     tmp_path / name / "answered", sets={"hold_ms": HOLD_MS}, uas_sets={"ring_ms": RING_MS}),
                Call(f"{name} busy", next(users), next(users), "records_uac.xml", "records_uas_busy.xml", 486,
                     tmp_path / name / "busy", sets={"hold_ms": HOLD_MS}),
                Call(f"{name} not registered", next(users), next(users), "records_uac.xml", None, 480,
                     tmp_path / name / "refused", sets={"hold_ms": HOLD_MS})]

    with ThreadPoolExecutor(2) as pool:
        recorded, unrecorded = pool.map(lambda args: run_calls(*args),
                                        [(plain, calls("plain")), (control, calls("control"))])
    for call in recorded + unrecorded:
        assert call.caller_result.finals == [call.final], f"{call.name}: {call.caller_result.stdout[-2000:]}"
    for call in recorded:
        rows = wait_rows(lambda call=call: cdrs(db, call.call_id), 1)
        assert len(rows) == 1, (call.name, rows)
        check_common(call, rows[0])
        if call.final == 200:
            check_answered(call, rows[0], media_anchored=False)
    time.sleep(1)           # acc writes as the transaction ends: any row would be there by now
    for call in unrecorded:
        assert acc_rows(db, call.call_id) == [], call.name
    assert "acc" not in control.kamcmd("core.modules").split() and "acc" in plain.kamcmd("core.modules").split()


# --- the SBC: a trunk call failed over to the second gateway, media anchored on both NICs -----


@pytest.fixture
def sbc_net(db, tmp_path):
    from harness import netns
    from harness.sbc import SbcNetwork
    assert netns.supported(), "the SBC tests need root and `ip netns`"
    net = SbcNetwork(tmp_path / "sbc")
    yield net
    problems = net.close()
    assert not problems, problems


def test_sbc_call_failed_over_to_the_second_gateway_has_one_record(db, sbc_net, tmp_path):
    from harness.sbc import GATEWAY_PORT, PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, TOLERATE_LATE_REPLIES, gateway_uri
    from harness.sbc_media import SbcRtpengine, sbc_media_tables

    rtpe = SbcRtpengine(sbc_net.sbc_ns, tmp_path / "rtpengine").start()
    try:
        # the private set in priority order (algorithm 8): the refusing gateway 1 first, every time
        gateways = tmp_path / "dispatcher.list"
        gateways.write_text(f"1 {gateway_uri(PUBLIC_GATEWAYS[0])} 0 0\n"
                            f"2 {gateway_uri(PRIVATE_GATEWAYS[0])} 0 10\n2 {gateway_uri(PRIVATE_GATEWAYS[1])} 0 5\n")
        tables = stack.merge(sbc_media_tables(rtpe), {
            "records": {"enabled": True, "spool_dir": str(tmp_path / "spool")},
            "sbc": {"gateways_from": "file", "list_file": str(gateways)},
            "sbc.public": {"gateways": []}, "sbc.private": {"gateways": [], "algorithm": 8}})
        k = sbc_net.start_kamailio(tables)
        caller_dir, callee_dir = tmp_path / "caller", tmp_path / "callee"
        caller_audio, callee_audio = write_call_audio(caller_dir, callee_dir)
        sbc_net.gateway(sbc_net.private, 0, scenario="gw_reject.xml")
        port = media.phone_media_port()
        callee = Sipp("records_uas.xml", callee_dir, netns=sbc_net.private.ns.name, local_ip=PRIVATE_GATEWAYS[1],
                      local_port=GATEWAY_PORT, timeout=30, sets={"ring_ms": RING_MS},
                      extra=[*TOLERATE_LATE_REPLIES, "-mp", str(port), "-mi", PRIVATE_GATEWAYS[1]]).start()
        sbc_net.sipps.append(callee)
        started = time.time()
        source_port = free_port()
        caller = Sipp("records_trunk_uac.xml", caller_dir, netns=sbc_net.public.ns.name, local_ip=PUBLIC_GATEWAYS[0],
                      target=sbc_net.public.target, local_port=source_port, timeout=30,
                      rows=[f"15559990001;15550100;{sbc_net.public.sbc_address}"], sets={"hold_ms": HOLD_MS},
                      extra=[*TOLERATE_LATE_REPLIES, "-mp", str(media.phone_media_port()), "-mi", PUBLIC_GATEWAYS[0]])
        sbc_net.sipps.append(caller)
        result = caller.run()
        callee.wait()
        ended = time.time()
    finally:
        rtpe.stop()
    assert result.finals == [200], result.stdout[-3000:]
    assert f"gateway {gateway_uri(PRIVATE_GATEWAYS[0])} answered 503, trying {gateway_uri(PRIVATE_GATEWAYS[1])}" \
        in k.log()
    call_id = logged(result, "final")["call-id"]
    rows = wait_rows(lambda: cdrs(db, call_id), 1)
    assert len(rows) == 1, rows
    cdr = rows[0]
    assert cdr["caller"] == "15559990001" and cdr["callee_dialed"] == "15550100", cdr
    assert (cdr["src_side"], cdr["src_kind"], cdr["src"]) == \
        ("public", "gateway", f"{PUBLIC_GATEWAYS[0]}:{source_port}"), cdr
    second = gateway_uri(PRIVATE_GATEWAYS[1])
    assert (cdr["dst_side"], cdr["dst_kind"], cdr["dst"], cdr["next_hop"]) == \
        ("private", "gateway", second, second), cdr
    assert cdr["attempts"] == "2" and cdr["sip_code"] == "200" and cdr["ended_by"] == "caller", cdr
    assert cdr["q850_cause"] is None, cdr          # the first gateway's refusal is not this call's
    assert started - CLOCK_SLACK_S <= float(cdr["start_ts"]) <= float(cdr["answer_ts"]) <= float(cdr["end_ts"]) \
        <= ended + CLOCK_SLACK_S, cdr
    for party, audio in (("caller", caller_audio), ("callee", callee_audio)):
        assert audio.packets - 2 <= int(cdr[f"{party}_rtp_packets"]) <= audio.packets, (party, cdr)
        assert int(cdr[f"{party}_lost"]) == audio.lost and int(cdr[f"{party}_jitter_ms"]) == audio.jitter_ms, cdr
        assert 1.0 <= float(cdr[f"{party}_mos"]) <= 5.0, cdr
    print("\nSBC failover record:", {k: v for k, v in cdr.items() if v is not None})


# --- what operators do: restart Kamailio mid-call, stop the database ------------------------

ROUTE_SECRET = "kemi-records-test-route-secret-0123456789"


def start_call(proxy, workdir: Path, caller: str, callee: str, hold_ms: int, ring_ms: int = 100) -> tuple[Sipp, Sipp]:
    """A call that rings ring_ms, then stays up hold_ms: (caller SIPp, callee SIPp), both running."""
    caller_dir, callee_dir = workdir / "caller", workdir / "callee"
    write_call_audio(caller_dir, callee_dir)
    port = free_port()
    register(proxy, callee_dir, callee, port)
    uas = Sipp("records_uas.xml", callee_dir, local_port=port, timeout=40, sets={"ring_ms": ring_ms},
               extra=["-mp", str(media.phone_media_port())]).start()
    uac = Sipp("records_uac.xml", caller_dir, target=proxy.target, local_port=free_port(), timeout=40,
               rows=[auth_row(caller, stack.PASSWORD, stack.DOMAIN, callee)], sets={"hold_ms": hold_ms},
               extra=["-mp", str(media.phone_media_port())]).start()
    return uac, uas


def answered_call_ids(db, callers: list[str], timeout: float = 10.0) -> dict[str, str]:
    """caller -> Call-ID, once every caller's call has its INVITE row (answered)."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(callers) and time.monotonic() < deadline:
        for row in db.query("SELECT caller, callid FROM kemi_acc WHERE method = 'INVITE' AND sip_code = '200';"):
            if row[0] in callers:
                found[row[0]] = row[1]
        time.sleep(0.2)
    return found


def test_a_call_up_across_a_kamailio_restart_keeps_its_record(db, kamailio_factory, rtpengine, tmp_path):
    """Nothing of a call's record lives in Kamailio's memory: the INVITE's row is in MySQL when
    the call is answered, the BYE's is written by the Kamailio running when it comes. With
    security.route_secret set, the BYE after the restart passes (its Record-Route signature
    is still valid) and the record is whole, media figures included (rtpengine kept the
    session). The control: without a route secret (a random one per start), the BYE after
    the restart is refused (403) and the record never gets its end. Not recoverable either: a
    call still ringing when Kamailio stops: its transaction is gone, the restarted Kamailio
    drops the callee's 200 (it matches no transaction), the call fails and has no record."""
    for user in ("8301", "8302", "8303", "8304", "8305", "8306"):
        db.add_subscriber(user)
    kept = kamailio_factory(records_tables(rtpengine, security={"route_secret": ROUTE_SECRET}), name="secret")
    lost = kamailio_factory(records_tables(rtpengine), name="random-secret")
    calls = {"kept": start_call(kept, tmp_path / "kept", "8301", "8302", hold_ms=7000),
             "lost": start_call(lost, tmp_path / "lost", "8303", "8304", hold_ms=7000),
             "ringing": start_call(kept, tmp_path / "ringing", "8305", "8306", hold_ms=1000, ring_ms=4500)}
    call_ids = answered_call_ids(db, ["8301", "8303"])
    assert set(call_ids) == {"8301", "8303"}, call_ids
    restarted = time.time()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: k.restart(), (kept, lost)))
    caller, callee = (sipp.wait() for sipp in calls["kept"])
    assert caller.finals == [200] and caller.values("bye") == ["200"], caller.stdout[-2000:]
    cdr, = wait_rows(lambda: cdrs(db, call_ids["8301"]), 1)
    assert cdr["sip_code"] == "200" and cdr["ended_by"] == "caller", cdr
    assert float(cdr["answer_ts"]) < restarted < float(cdr["end_ts"]), (restarted, cdr)
    assert 140 <= int(cdr["caller_rtp_packets"]) <= 150 and cdr["callee_mos"] is not None, cdr
    # the control: the BYE was refused after the restart, the record has no end
    caller = calls["lost"][0].wait()
    calls["lost"][1].stop()                 # its callee never gets the BYE
    assert caller.finals == [200] and caller.values("bye") == [], caller.stdout[-2000:]
    cdr, = cdrs(db, call_ids["8303"])
    assert cdr["sip_code"] == "200" and cdr["end_time"] is None and cdr["billable_seconds"] is None, cdr
    # a call ringing across the restart: it never gets its 200 and leaves no row
    ringing = calls["ringing"][0].wait()
    calls["ringing"][1].stop()
    from harness.capture import sipp_trace
    ringing_id = sipp_trace(ringing.messages)[0].call_id
    assert ringing.finals == [] and ringing.rc != 0, ringing.stdout[-2000:]
    assert acc_rows(db, ringing_id) == [] and cdrs(db, ringing_id) == []
    print(f"\nrestart: record kept {cdrs(db, call_ids['8301'])[0]['duration']} s; without a route secret: "
          f"no end; ringing across it: no call, no record")


OWN_DB_PORT = stack.PORT_BASE + 97          # TCP, inside this slot's range
OWN_DB_NAME = "kemi_records_fault"
OWN_DB_URL = f"mysql://kemi_rec:kemi_rec_pw@127.0.0.1:{OWN_DB_PORT}/{OWN_DB_NAME}"
OWN_DB_RO_URL = f"mysql://kemi_rec_ro:kemi_rec_ro@127.0.0.1:{OWN_DB_PORT}/{OWN_DB_NAME}"
REPLAY_INTERVAL_S = 1


class OwnDb:
    """The test's private MariaDB seen as the harness's TestDatabase (query)."""

    def __init__(self, server):
        self.server = server

    def query(self, sql: str) -> list[list[str]]:
        out = self.server.sql(sql, OWN_DB_NAME)
        return [line.split("\t") for line in out.splitlines() if line]


def test_records_of_calls_ending_while_mariadb_is_down_reach_the_table_when_it_is_back(kamailio_factory, tmp_path):
    """MariaDB stopped while three calls are up: the calls go on and end (their BYEs are
    answered), acc's rows for those BYEs cannot reach MySQL and go to the spool (db_cluster
    falls back to db_flatstore), and the replay puts them into the table once MariaDB is back:
    every call's record is whole, nothing twice. The control that the fault was real: while
    the database is down it answers nothing and the BYE rows are in the spool, not the table."""
    from harness.own_mariadb import OwnMariaDB
    from kemi.records.spool import TAKEN_SUFFIX
    from kemi.settings import parse_settings
    from kemi_tools.stack import mariadb

    server = OwnMariaDB(OWN_DB_PORT, "kemi-records").install().start()
    try:
        mariadb.provision(parse_settings({"database": {"url": OWN_DB_URL, "ro_url": OWN_DB_RO_URL}}),
                          socket=server.socket)
        users = [f"84{n:02d}" for n in range(6)]
        server.sql("INSERT INTO subscriber (username, domain, password) VALUES "
                   + ", ".join(f"('{u}', '{stack.DOMAIN}', '{stack.PASSWORD}')" for u in users) + ";", OWN_DB_NAME)
        spool_dir = tmp_path / "spool"
        proxy = kamailio_factory(records_tables(database={"url": OWN_DB_URL, "ro_url": OWN_DB_RO_URL},
                                                records={"spool_dir": str(spool_dir),
                                                         "replay_interval": REPLAY_INTERVAL_S}))
        db = OwnDb(server)
        calls = [start_call(proxy, tmp_path / f"call{n}", users[2 * n], users[2 * n + 1], hold_ms=6000)
                 for n in range(3)]
        call_ids = answered_call_ids(db, users[0::2])
        assert len(call_ids) == 3, call_ids
        server.stop()
        stopped = time.monotonic()
        results = [(uac.wait(), uas.wait()) for uac, uas in calls]
        for caller, callee in results:                  # the calls went on and ended normally
            assert caller.finals == [200] and caller.values("bye") == ["200"], caller.stdout[-2000:]
            assert callee.rc == 0, callee.stdout[-2000:]
        assert not server.is_up()                       # the control: it really was down ...
        spooled = "".join(p.read_text() for p in spool_dir.glob("kemi_acc_*"))
        for call_id in call_ids.values():               # ... and the BYEs' rows waited in the spool
            assert "BYE|" in spooled and call_id in spooled, spooled
        down_for = time.monotonic() - stopped
        server.start()
        back = time.monotonic()
        for call_id in call_ids.values():
            rows = wait_rows(lambda call_id=call_id: [r for r in acc_rows(db, call_id) if r["method"] == "BYE"], 1,
                             timeout=3 * REPLAY_INTERVAL_S + 10)
            assert len(rows) == 1, (call_id, acc_rows(db, call_id))
        took = time.monotonic() - back
        for call_id in call_ids.values():
            cdr, = cdrs(db, call_id)
            assert cdr["sip_code"] == "200" and cdr["ended_by"] == "caller" and cdr["end_time"] is not None, cdr
            assert len(acc_rows(db, call_id)) == 2, acc_rows(db, call_id)      # INVITE and BYE, once each
        leftover = [p.name for p in spool_dir.iterdir() if p.stat().st_size > 0]
        assert leftover == [], leftover
        assert not list(spool_dir.glob(f"*{TAKEN_SUFFIX}"))
        replayed = sum(int(n) for n in re.findall(r"kemi: records: replayed (\d+) records", proxy.log()))
        assert replayed == 3, proxy.log()[-3000:]
        print(f"\nMariaDB down {down_for:.1f} s; the spooled BYE rows were in the table {took:.1f} s after it was back")
    finally:
        server.remove()


# --- HEP capture: every SIP message of a call, both NICs, at a real capture node ------------

CAPTURE_PORT = stack.PORT_BASE + 96
TIME_TOLERANCE_S = 1.0       # between a phone's trace and the proxy's HEP timestamp (loaded machine)


def test_every_message_of_a_call_through_the_sbc_is_at_the_capture_node(db, sbc_net, tmp_path):
    """HEPv3 from siptrace to a real capture node (Kamailio + sipcapture storing into MySQL, in
    the SBC's namespace): every message the caller (a public gateway) and the callee (a
    private gateway) sent is there as received by the SBC, every message they received is
    there as sent by it, each with the right source and destination (the SBC's public or
    private NIC) and a timestamp matching the phones' own traces; both legs under the one
    Call-ID. The control: the same call with capture off puts nothing there."""
    from harness.capture import CaptureNode, sipp_trace
    from harness.sbc import (GATEWAY_PORT, PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, SBC_PORT, SBC_PRIVATE, SBC_PUBLIC,
                             gateway_uri)

    def spawn(argv, log, name, cwd):
        return sbc_net.sbc_ns.spawn(argv, log, name=name, cwd=cwd)

    node = CaptureNode(tmp_path / "capture", CAPTURE_PORT).start(spawn)
    try:
        def call(capture: bool):
            k = sbc_net.start_kamailio({"sbc": {"probing_interval": 0},
                                        "sbc.private": {"gateways": [gateway_uri(PRIVATE_GATEWAYS[0])]},
                                        "capture": {"enabled": capture, "address": node.address, "agent_id": 7}})
            gateway = sbc_net.gateway(sbc_net.private, 0)
            caller = sbc_net.trunk_call(sbc_net.public, "15550100", hold_ms=300).wait()
            caller_port = int(re.search(rf"Via: SIP/2.0/UDP {re.escape(PUBLIC_GATEWAYS[0])}:(\d+)", caller.messages)[1])
            sbc_net.stop_sipp(gateway)
            callee = gateway.wait()
            sbc_net.reset(tmp_path / ("capture-on" if capture else "capture-off"))
            assert caller.finals == [200] and caller.values("bye") == ["200"], caller.stdout[-2000:]
            return k, caller, callee, caller_port

        _, caller, callee, caller_port = call(capture=True)
        call_id = caller.values("final") and logged(caller, "final")["call-id"]
        phones = {  # the phone's address, the SBC address it talks to, its trace
            "caller": ((PUBLIC_GATEWAYS[0], caller_port), (SBC_PUBLIC, SBC_PORT), sipp_trace(caller.messages)),
            "callee": ((PRIVATE_GATEWAYS[0], GATEWAY_PORT), (SBC_PRIVATE, SBC_PORT), sipp_trace(callee.messages)),
        }
        expected = []
        for who, (phone, sbc_address, trace) in phones.items():
            for t in trace:
                if t.call_id == call_id:
                    source, destination = (phone, sbc_address) if t.sent else (sbc_address, phone)
                    expected.append((who, t, source, destination))
        captured = node.wait_messages(call_id, len(expected))
        assert len(captured) == len(expected), (
            f"{len(captured)} messages captured, the phones traced {len(expected)}:\n"
            + "\n".join(f"  captured {c.source}->{c.destination} {c.first_line}" for c in captured)
            + "\n" + "\n".join(f"  traced {w} {s}->{d} {t.first_line}" for w, t, s, d in expected))
        unmatched = list(captured)
        for who, t, source, destination in expected:
            match = next((c for c in unmatched if c.first_line == t.first_line and c.cseq == t.cseq
                          and c.source == source and c.destination == destination), None)
            assert match is not None, f"{who} {'sent' if t.sent else 'received'} {t.first_line!r} ({t.cseq}) " \
                                      f"{source}->{destination}: not at the capture node"
            unmatched.remove(match)
            # the SBC received it after the phone sent it / sent it before the phone received it
            lag = match.at - t.at if t.sent else t.at - match.at
            assert -0.05 <= lag <= TIME_TOLERANCE_S, (who, t.first_line, t.at, match.at)
            assert match.node == "kemi-test-capture:7", match.node        # the capture agent id sent
        assert unmatched == []
        legs = {(c.source, c.destination) for c in captured}
        assert {((PUBLIC_GATEWAYS[0], caller_port), (SBC_PUBLIC, SBC_PORT)),
                ((SBC_PRIVATE, SBC_PORT), (PRIVATE_GATEWAYS[0], GATEWAY_PORT))} <= legs
        print(f"\ncapture: {len(captured)} messages of call {call_id}, both NICs, e.g. "
              f"{[(c.source, c.destination, c.first_line[:20]) for c in captured[:4]]}, node {captured[0].node!r}")

        # the control: capture off, the same call: nothing at the capture node
        before = len(node.messages())
        _, caller, _, _ = call(capture=False)
        time.sleep(1)
        assert node.messages(logged(caller, "final")["call-id"]) == []
        assert len(node.messages()) == before
    finally:
        node.stop()
