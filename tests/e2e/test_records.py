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

import math
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
HOLD_MS = 3600             # an answered call stays up this long (the audio pcap lasts 3 s)
CANCEL_AFTER_MS = 800      # the caller gives up after ringing this long
CLOCK_SLACK_S = 1.0        # a record's time may be this far outside the test's own clock
# ShortTimerRouter (tests/e2e/routers): a ringing phone is given up after 2.5 s (408)
RING_TIMEOUT_S = 2.5
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
        rows = wait_rows(lambda: cdrs(db, call.call_id), 1)
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
    assert CANCEL_AFTER_MS / 1000 - 0.05 <= float(cancelled["duration"]) <= CANCEL_AFTER_MS / 1000 + CLOCK_SLACK_S
    unanswered = by_name["unanswered"]
    assert unanswered["ended_by"] == "proxy", unanswered
    assert RING_TIMEOUT_S - 0.05 <= float(unanswered["duration"]) <= RING_TIMEOUT_S + CLOCK_SLACK_S, unanswered
    refused = by_name["not registered"]
    assert refused["ended_by"] == "proxy" and refused["dst_kind"] is None, refused
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
        rows = wait_rows(lambda: cdrs(db, call.call_id), 1)
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
    assert (cdr["src_side"], cdr["src_kind"], cdr["src"]) == ("public", "gateway", f"{PUBLIC_GATEWAYS[0]}:{source_port}")
    second = gateway_uri(PRIVATE_GATEWAYS[1])
    assert (cdr["dst_side"], cdr["dst_kind"], cdr["dst"], cdr["next_hop"]) == ("private", "gateway", second, second), cdr
    assert cdr["attempts"] == "2" and cdr["sip_code"] == "200" and cdr["ended_by"] == "caller", cdr
    assert cdr["q850_cause"] is None, cdr          # the first gateway's refusal is not this call's
    assert started - CLOCK_SLACK_S <= float(cdr["start_ts"]) <= float(cdr["answer_ts"]) <= float(cdr["end_ts"]) \
        <= ended + CLOCK_SLACK_S, cdr
    for party, audio in (("caller", caller_audio), ("callee", callee_audio)):
        assert audio.packets - 2 <= int(cdr[f"{party}_rtp_packets"]) <= audio.packets, (party, cdr)
        assert int(cdr[f"{party}_lost"]) == audio.lost and int(cdr[f"{party}_jitter_ms"]) == audio.jitter_ms, cdr
        assert 1.0 <= float(cdr[f"{party}_mos"]) <= 5.0, cdr
    print("\nSBC failover record:", {k: v for k, v in cdr.items() if v is not None})
