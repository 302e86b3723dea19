"""Records (issue 20): the decisions as plain Python, the part on the fake KSR."""
from __future__ import annotations

import json
import re

import pytest

from kemi import sip
from kemi.names import FLT_ACC, FLT_ACC_FAILED
from kemi.records import media, reason, schema, spool
from kemi.records.part import NoRecords, Records
from kemi.records.settings import agent_id, cfg_lines
from kemi.schema import SettingsError, SettingsProblems
from kemi.settings import parse_settings, render_kamailio_defines
from kemi.store.mysql import DatabaseUnavailable
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import make_router, signed_route

AVP = schema.avp
CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002"'}
RECORDS_ON = {"records": {"enabled": True, "spool_dir": "/var/spool/kemi-test"}}


# --- schema: one column list for acc, the spool and the view ----------------------------------


def test_db_extra_lists_every_extra_column_in_the_table_order():
    pairs = [p.split("=", 1) for p in schema.db_extra().split(";")]
    assert [c for c, _ in pairs] == [e.column for e in schema.EXTRAS]
    assert schema.COLUMNS[:8] == (*schema.ACC_COLUMNS, schema.TIME_ATTR)
    assert dict(pairs)["caller"] == "$avp(cdr_caller)" and dict(pairs)["cseq"] == "$cs"


def test_the_table_has_every_column_and_the_view_shows_every_view_column():
    table = schema.create_table_sql()
    for column in schema.COLUMNS:
        assert f"`{column}`" in table, column
    assert "UNIQUE KEY `transaction_idx` (`callid`(191), `from_tag`(64), `cseq`, `method`)" in table
    view = schema.create_view_sql()
    named = re.findall(r"\bAS (\w+)\s*(?:,|$)", view, re.M)
    assert tuple(named) == schema.VIEW_COLUMNS


def test_the_view_types_the_text_columns():
    assert schema.typed("i", "attempts") == "CAST(NULLIF(i.`attempts`, '') AS UNSIGNED)"
    assert schema.typed("b", "a_mos") == "CAST(NULLIF(b.`a_mos`, '') AS DECIMAL(3,1))"
    assert schema.typed("i", "caller") == "NULLIF(i.`caller`, '')"


def test_column_comments_are_quoted_for_sql():
    assert schema.sql_string("the BYE's sender") == "'the BYE''s sender'"


# --- reason: Q.850 causes and who ended a call ------------------------------------------------


@pytest.mark.parametrize("header, cause", [
    ('Q.850;cause=16;text="Normal call clearing"', 16),
    ("q.850 ; CAUSE = 17", 17),
    ('SIP;cause=487;text="Request terminated", Q.850;cause=31', 31),
    ('SIP;cause=200;text="Call completed elsewhere"', None),
    ('Q.850;text="cause=5, Q.850;cause=6";cause=19', 19),        # commas and ; inside quotes
    ("Q.850;cause=128", None),                                    # out of Q.850's range
    ("Q.850;cause=1x", None),
    ("Q.850", None),
    ("", None),
    (None, None),
])
def test_q850_cause(header, cause):
    assert reason.q850_cause(header) == cause


def test_reason_text_is_printable_and_fits_the_column():
    assert reason.reason_text("Q.850;cause=16\x00\x07x") == "Q.850;cause=16  x"
    assert len(reason.reason_text("x" * 400)) == reason.MAX_REASON_TEXT
    assert reason.reason_text("") is None and reason.reason_text(None) is None


@pytest.mark.parametrize("canceled, timed_out, who", [
    (True, False, "caller"), (True, True, "caller"), (False, True, "proxy"), (False, False, "callee")])
def test_who_ended_an_unanswered_call(canceled, timed_out, who):
    assert reason.ended_by_failure(canceled, timed_out) == who


# --- media: rtpengine's query answer (10.5 and 12.x shapes) -----------------------------------


def stream(ssrc, packets, octets, shape="10.5", rtp=True):
    out = {"flags": ["RTP" if rtp else "RTCP", "filled"], "stats": {"packets": packets, "bytes": octets, "errors": 0}}
    if shape == "10.5":
        out["SSRC"] = ssrc
    else:
        out["ingress SSRCs"] = [{"SSRC": ssrc, "packets": packets, "bytes": octets}]
        out["stats_out"] = {"packets": 0, "bytes": 0, "errors": 0}
    return out


def query_answer(shape="10.5", with_reports=True):
    tags = {
        "ft": {"tag": "ft", "medias": [
            {"type": "audio", "streams": [stream(4369, 150, 25800, shape), stream(4369, 15, 780, shape, rtp=False)]},
            {"type": "video", "streams": [stream(4371, 50, 22000, shape)]}]},
        "tt": {"tag": "tt", "medias": [
            {"type": "audio", "streams": [stream(8738, 148, 25456, shape), stream(8738, 15, 780, shape, rtp=False)]}]},
    }
    reports = {
        "4369": {"cumulative loss": 2, "average MOS": {"MOS": 42, "jitter": 5, "packet loss": 1, "samples": 3},
                 "lowest MOS": {"MOS": 41}, "highest MOS": {"MOS": 43}},
        "4371": {"cumulative loss": 1, "average MOS": {"MOS": 40, "jitter": 9, "samples": 2},
                 "lowest MOS": {"MOS": 39}},
        "8738": {"cumulative loss": 5, "average MOS": {"MOS": 0, "jitter": 10}, "lowest MOS": {"MOS": 0}},
    }
    return json.dumps({"created": 1, "tags": tags, "SSRC": reports if with_reports else {}, "result": "ok"})


@pytest.mark.parametrize("shape", ["10.5", "12.5"])
def test_media_figures_per_party(shape):
    a, b = media.call_media(query_answer(shape), "ft", "tt")
    # RTP streams only (RTCP not counted), audio and video summed
    assert (a.rtp_packets, a.rtp_bytes) == (200, 47800)
    # the party's own SSRCs' receiver reports: loss summed, jitter and MOS averaged, MOS in tenths
    assert (a.lost, a.jitter_ms, a.mos, a.mos_min) == (3, 7, 4.1, 3.9)
    # b reported (loss, jitter) but rtpengine had no MOS for it (0: no round trip yet)
    assert (b.rtp_packets, b.lost, b.jitter_ms, b.mos, b.mos_min) == (148, 5, 10, None, None)


def test_a_party_without_receiver_reports_has_packets_only():
    a, b = media.call_media(query_answer(with_reports=False), "ft", "tt")
    assert a == media.PartyMedia(200, 47800)
    assert a.columns("a") == {"a_rtp_packets": 200, "a_rtp_bytes": 47800}


@pytest.mark.parametrize("text", [None, "", "not json", "[]", json.dumps({"result": "error", "tags": {}}),
                                  json.dumps({"result": "ok"})])
def test_an_unusable_answer_gives_no_figures(text):
    assert media.call_media(text, "ft", "tt") is None


def test_an_unknown_tag_has_nothing():
    a, b = media.call_media(query_answer(), "nope", None)
    assert a == b == media.NO_MEDIA


# --- spool: db_flatstore lines back into rows -------------------------------------------------


def flatstore_line(**values) -> str:
    fields = {c: "" for c in schema.COLUMNS}
    fields.update(method="BYE", from_tag="ft", to_tag="tt", callid="c1", sip_code="200", sip_reason="OK",
                  time="1796646650", time_exact="1796646650.029663", cseq="3", node="0")
    fields.update(values)
    return "|".join(str(fields[c]) for c in schema.COLUMNS)


def test_a_spooled_line_is_the_row_acc_would_have_written():
    row = spool.parse_line(flatstore_line(reason_header="Q.850;cause=16%7Ctext") + "\n")
    values = dict(zip(schema.COLUMNS, row, strict=True))
    assert values["method"] == "BYE" and values["callid"] == "c1" and values["a_mos"] == ""
    assert values["reason_header"] == "Q.850;cause=16|text"            # flatstore's escaped delimiter
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", values["time"])  # DATETIME, from Unix seconds


@pytest.mark.parametrize("line, why", [
    ("BYE|ft|tt", "fields"),
    (flatstore_line(time="yesterday"), "Unix seconds"),
    (flatstore_line(time_exact="x"), "not a number"),
])
def test_a_line_that_is_no_record_is_refused(line, why):
    with pytest.raises(spool.BadLine, match=why):
        spool.parse_line(line)


def test_a_spool_file_keeps_the_bad_lines_apart():
    content = spool.read_file("\n".join([flatstore_line(), "garbage", "", flatstore_line(cseq="4")]))
    assert len(content.rows) == 2 and [n for n, _, _ in content.bad] == [2]


def test_the_replay_statement_names_every_column():
    sql = spool.insert_sql()
    assert sql.startswith("INSERT IGNORE INTO `kemi_acc` (`method`")
    assert sql.count("%s") == len(schema.COLUMNS)


def test_writer_files_and_taken_names(tmp_path):
    (tmp_path / "kemi_acc_129.log").write_text("x\n")
    (tmp_path / "kemi_acc_130.log").write_text("")                      # nothing to take
    (tmp_path / "kemi_acc_131.1.replay").write_text("x\n")
    (tmp_path / "other_1.log").write_text("x\n")
    assert [p.name for p in spool.writer_files(tmp_path)] == ["kemi_acc_129.log"]
    assert spool.taken_name(tmp_path / "kemi_acc_129.log", "42").name == "kemi_acc_129.42.replay"
    assert [p.name for p in spool.taken_files(tmp_path)] == ["kemi_acc_131.1.replay"]


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("table, key", [
    ({"records": {"spool_dir": "spool"}}, "records.spool_dir"),
    ({"records": {"spool_dir": "/run/kemi/spool"}}, "records.spool_dir"),
    ({"records": {"spool_dir": '/var/"x'}}, "records.spool_dir"),
    ({"records": {"replay_interval": 0}}, "records.replay_interval"),
    ({"capture": {"address": "capture.example.com:9060"}}, "capture.address"),
    ({"capture": {"address": "192.0.2.50"}}, "capture.address"),
    ({"capture": {"address": "192.0.2.50:70000"}}, "capture.address"),
    ({"capture": {"address": "2001:db8::1:9060"}}, "capture.address"),
    ({"capture": {"agent_id": -1}}, "capture.agent_id"),
])
def test_bad_values_name_the_key(table, key):
    with pytest.raises((SettingsError, SettingsProblems)) as err:
        parse_settings(table)
    assert err.value.key == key and "; " in str(err.value)


def test_records_render_acc_through_db_cluster_then_the_spool():
    s = parse_settings({"records": {"enabled": True, "spool_dir": "/var/spool/r", "replay_interval": 5},
                        "database": {"url": "mysql://k:pw@192.0.2.21:3306/kamailio",
                                     "failover": ["192.0.2.22:3306", "192.0.2.23"]}})
    text = "\n".join(cfg_lines(s))
    assert "#!define WITH_RECORDS" in text and f"#!define FLT_ACC {FLT_ACC}" in text
    assert 'rec1=>mysql://k:pw@192.0.2.21:3306/kamailio' in text and 'rec3=>mysql://k:pw@192.0.2.23/kamailio' in text
    assert 'recspool=>flatstore:/var/spool/r' in text
    assert '#!define RECORDS_DB_CLUSTER "kemirecords=>rec1=9s9s;rec2=8s8s;rec3=7s7s;recspool=0s1s"' in text
    assert f'#!define RECORDS_DB_EXTRA "{schema.db_extra()}"' in text
    assert '"name=kemirecords;interval=5;mode=1;"' in text and "route=ksr_records_replay" in text
    assert "WITH_CAPTURE" not in text


def test_nothing_is_rendered_when_both_are_off():
    assert cfg_lines(parse_settings({})) == []
    assert "WITH_RECORDS" not in render_kamailio_defines(parse_settings({}))


def test_capture_renders_siptrace_hep_to_the_node():
    s = parse_settings({"capture": {"enabled": True, "address": "[2001:db8::50]:9060"}})
    text = "\n".join(cfg_lines(s))
    assert '#!define CAPTURE_URI "sip:[2001:db8::50]:9060"' in text and "#!define CAPTURE_HEP_VERSION 3" in text
    assert "#!define CAPTURE_AGENT_ID 1" in text


def test_the_capture_agent_id_is_the_cluster_node_unless_set():
    cluster = {"enabled": True, "nodes": ["192.0.2.1", "192.0.2.2"], "node": 2, "secret": "x" * 20}
    assert agent_id(parse_settings({"cluster": cluster, "capture": {"enabled": True}})) == 2
    assert agent_id(parse_settings({"cluster": cluster, "capture": {"agent_id": 9}})) == 9


# --- the part on the fake KSR -----------------------------------------------------------------


def invite(**kw) -> SipMessage:
    return SipMessage(method="INVITE", headers=dict(CREDENTIALS), **kw)


def routed(message, settings=RECORDS_ON, **results):
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.results.update(results)
    router = make_router(ksr, settings)
    router.ksr_request_route(None)
    return ksr, router


def test_records_off_is_no_records_and_no_flag():
    ksr, router = routed(invite(), settings={"media": {"enabled": False}})
    assert isinstance(router.records, NoRecords)
    assert FLT_ACC not in ksr.flags and not any(k.startswith("$avp(cdr_") for k in ksr.pvs)
    assert "failure_route" not in ksr.tm_routes          # nothing else wanted it


def test_a_relayed_call_carries_its_flags_and_columns():
    ksr, router = routed(invite(), settings={**RECORDS_ON, "media": {"enabled": False}},
                         **{"kx.get_ouri": "sip:2001@127.0.0.1"})
    assert isinstance(router.records, Records)
    assert {FLT_ACC, FLT_ACC_FAILED} <= ksr.flags and len(ksr.relayed) == 1
    p = ksr.pvs
    assert (p[AVP("caller")], p[AVP("dialed")], p[AVP("src_kind")], p[AVP("src")]) == \
        ("2002", "2001", "extension", "2002")
    assert (p[AVP("routed")], p[AVP("dst_kind")], p[AVP("dst")], p[AVP("attempts")]) == \
        ("sip:2001@192.0.2.20:5060", "extension", "2001", 1)
    assert float(p[AVP("rtime")]) > 1.7e9
    assert ksr.tm_routes["failure_route"] == "ksr_failure_manage"        # records want the failure route


def test_a_call_to_a_foreign_domain_is_recorded_with_the_domain():
    ksr, _ = routed(invite(ruri="sip:bob@example.net"), **{"kx.get_ouri": "sip:bob@example.net"})
    assert (ksr.pvs[AVP("dst_kind")], ksr.pvs[AVP("dst")]) == ("domain", "example.net")


def test_an_unauthenticated_invite_is_no_call_yet():
    ksr, _ = routed(SipMessage(method="INVITE"), **{"auth_db.auth_check": -1})
    assert ksr.replies == [(407, "Proxy Authentication Required")] or ksr.called("auth.auth_challenge")
    assert FLT_ACC not in ksr.flags and not ksr.called("acc.acc_db_request")


def in_dialog(method, headers=None, **kw):
    return SipMessage(method=method, to_tag="to-tag-1", headers={"Route": signed_route(), **(headers or {})}, **kw)


def test_a_bye_gets_its_row_with_the_q850_cause():
    ksr, _ = routed(in_dialog("BYE", {"Reason": 'Q.850;cause=16;text="Normal call clearing"'}),
                    settings={**RECORDS_ON, "media": {"enabled": False}})
    assert {FLT_ACC, FLT_ACC_FAILED} <= ksr.flags and len(ksr.relayed) == 1
    assert ksr.pvs[AVP("q850")] == 16 and ksr.pvs[AVP("reason")] == 'Q.850;cause=16;text="Normal call clearing"'
    assert not ksr.called("rtpengine.rtpengine_query_v")                # media off: nothing to ask


def test_a_cancel_gets_its_row():
    ksr, _ = routed(SipMessage(method="CANCEL", headers={"Reason": "SIP;cause=200"}),
                    **{"tm.t_check_trans": 1})
    assert FLT_ACC in ksr.flags and ksr.pvs[AVP("q850")] is None and ksr.pvs[AVP("reason")] == "SIP;cause=200"


def test_an_anchored_bye_asks_rtpengine_for_the_figures_before_deleting():
    message = in_dialog("BYE", from_tag="tt")        # sent by the callee: a = its tag
    ksr = FakeKSR(message)
    ksr.rtpengine_sessions.add(message.call_id)
    ksr.pvs["$var(kemi_rtpstats)"] = query_answer()
    router = make_router(ksr, {**RECORDS_ON, "media": {"enabled": True}})
    router.ksr_request_route(None)
    order = [k for k, _ in ksr.calls if k in ("rtpengine.rtpengine_query_v", "rtpengine.rtpengine_delete0")]
    assert order == ["rtpengine.rtpengine_query_v", "rtpengine.rtpengine_delete0"]
    assert ksr.calls_to("rtpengine.rtpengine_query_v") == [("j", "$var(kemi_rtpstats)")]
    p = ksr.pvs
    # a = "tt" (the BYE's From tag), b = "to-tag-1": not in rtpengine's answer, nothing set
    assert (p[AVP("a_rtp_packets")], p[AVP("a_lost")], p[AVP("a_jitter_ms")]) == (148, 5, 10)
    assert AVP("a_mos") not in p and AVP("b_rtp_packets") not in p
    assert len(ksr.relayed) == 1


def test_a_record_that_fails_never_stops_the_bye():
    message = in_dialog("BYE")
    ksr = FakeKSR(message)

    def broken(*_):
        raise RuntimeError("rtpengine module exploded")
    ksr.results["rtpengine.rtpengine_query_v"] = broken
    router = make_router(ksr, {**RECORDS_ON, "media": {"enabled": True}})
    router.ksr_request_route(None)
    assert len(ksr.relayed) == 1 and ksr.replies == []
    assert "kemi: records: on_relay failed, the call goes on" in ksr.log_text("err")


@pytest.mark.parametrize("canceled, timed_out, reply_reason, ended, cause", [
    (False, False, "Q.850;cause=17", "callee", 17),
    (False, True, None, "proxy", None),
    (True, False, None, "caller", None),
])
def test_the_failure_route_records_why(canceled, timed_out, reply_reason, ended, cause):
    ksr = FakeKSR(invite())
    ksr.results.update({"tm.t_is_canceled": 1 if canceled else -1, "tm.t_branch_timeout": 1 if timed_out else -1})
    if reply_reason:
        ksr.pvs["$T_rpl($hdr(Reason))"] = reply_reason
    make_router(ksr, RECORDS_ON).ksr_failure_manage(None)
    assert ksr.pvs[AVP("ended")] == ended and ksr.pvs.get(AVP("q850")) == cause


def test_a_failover_names_the_next_gateway_and_forgets_the_first_ones_refusal():
    from tests.unit.test_sbc_routes import PRIV_GW, SETTINGS, ksr_for
    from kemi.names import AVP_EGRESS, AVP_GATEWAY_SET, AVP_INGRESS
    from dataclasses import replace
    from kemi.records.settings import RecordsSettings

    settings = replace(SETTINGS, records=RecordsSettings(enabled=True, spool_dir="/var/spool/kemi-test"))
    ksr = ksr_for(SipMessage(method="INVITE", source=("203.0.113.10", 5060), socket_name="public"))
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2, AVP("attempts"): 1,
                    "$T_rpl($hdr(Reason))": "Q.850;cause=34"})
    ksr._ds_current, ksr._ds_rest = PRIV_GW[0], [PRIV_GW[1]]
    ksr.t_reply_code = 503
    ksr.results.update({"tm.t_is_canceled": -1, "tm.t_branch_timeout": -1})
    make_router(ksr, settings).ksr_failure_manage(None)
    assert ksr.relayed[0]["du"] == PRIV_GW[1]
    p = ksr.pvs
    assert (p[AVP("dst")], p[AVP("hop")], p[AVP("attempts")]) == (PRIV_GW[1], PRIV_GW[1], 2)
    assert p[AVP("q850")] is None and p[AVP("ended")] is None


def test_a_call_refused_here_without_a_transaction_is_written_by_acc_db_request():
    ksr = FakeKSR(invite())
    router = make_router(ksr, RECORDS_ON)
    ksr.results["registrar.lookup"] = -1          # no contact: the routing answers itself
    ksr.results["tm.t_newtran"] = 1
    ksr.flags.add(FLT_ACC)
    router.reply(sip.Reply(488, "Not Acceptable Here"))
    assert ksr.calls_to("acc.acc_db_request") == [("488 Not Acceptable Here", "kemi_acc")]
    assert ksr.pvs[AVP("ended")] == "proxy"


def test_a_refusal_with_a_transaction_is_left_to_acc():
    ksr = FakeKSR(invite())
    router = make_router(ksr, RECORDS_ON)
    ksr.flags.add(FLT_ACC)
    ksr.pvs["$T(id_index)"] = 7                 # the registrar answers statefully
    router.reply(sip.TEMPORARILY_UNAVAILABLE)
    assert not ksr.called("acc.acc_db_request") and ksr.pvs[AVP("ended")] == "proxy"


@pytest.mark.parametrize("reply, flagged", [(sip.Reply(407, "Proxy Authentication Required"), True),
                                             (sip.OK_KEEPALIVE, True), (sip.FORBIDDEN, False)])
def test_answers_that_are_no_call_outcome_write_nothing(reply, flagged):
    ksr = FakeKSR(invite())
    router = make_router(ksr, RECORDS_ON)
    if flagged:
        ksr.flags.add(FLT_ACC)
    router.reply(reply)
    assert not ksr.called("acc.acc_db_request") and AVP("ended") not in ksr.pvs


def test_the_whole_refused_call_through_the_routes():
    """A subscriber who is not registered: 480, answered statefully (t_newtran): acc's row."""
    ksr, _ = routed(invite(ruri="sip:2002@127.0.0.1"))      # a subscriber, not registered
    assert ksr.replies == [(480, "Temporarily Unavailable")]
    assert ksr.pvs[AVP("ended")] == "proxy" and FLT_ACC in ksr.flags


# --- the replay ----------------------------------------------------------------------------


class FakeDatabase:
    def __init__(self, up=True):
        self.up, self.inserted = up, []

    def execute_many(self, sql, rows):
        if not self.up:
            raise DatabaseUnavailable("cannot connect to MySQL: refused")
        self.inserted += rows
        return len(rows)


def replay_part(tmp_path, database):
    ksr = FakeKSR()
    settings = parse_settings({"records": {"enabled": True, "spool_dir": str(tmp_path)}})
    clock = iter(range(1000, 2000)).__next__
    part = Records(ksr, settings, is_trusted=lambda m: False, to_gateway=lambda m: False, media_stats=None,
                   database=database, clock=clock)
    return ksr, part


def test_the_replay_takes_a_writers_file_and_inserts_it_on_the_next_tick(tmp_path):
    db = FakeDatabase()
    ksr, part = replay_part(tmp_path, db)
    (tmp_path / "kemi_acc_129.log").write_text(flatstore_line() + "\n" + flatstore_line(cseq="4") + "\n")
    assert part.replay() == 0                            # first tick: taken, not yet inserted
    assert not (tmp_path / "kemi_acc_129.log").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["kemi_acc_129.1000000000.replay"]
    assert ksr.calls_to("jsonrpcs.exec") == [('{"jsonrpc": "2.0", "method": "flatstore.k_rotate", "id": 1}',)]
    assert part.replay() == 2 and len(db.inserted) == 2  # next tick: in the table, the file gone
    assert list(tmp_path.iterdir()) == []
    assert "replayed 2 records" in ksr.log_text("notice")


def test_while_the_database_is_down_the_taken_file_waits(tmp_path):
    db = FakeDatabase(up=False)
    ksr, part = replay_part(tmp_path, db)
    taken = tmp_path / "kemi_acc_7.1.replay"
    taken.write_text(flatstore_line() + "\n")
    assert part.replay() == 0 and taken.exists()
    assert "not replayed yet" in ksr.log_text("warn")
    db.up = True
    assert part.replay() == 1 and not taken.exists()


def test_lines_that_are_no_record_are_kept_aside_and_logged(tmp_path):
    db = FakeDatabase()
    ksr, part = replay_part(tmp_path, db)
    (tmp_path / "kemi_acc_7.1.replay").write_text(flatstore_line() + "\nBYE|half a line\n")
    assert part.replay() == 1
    assert (tmp_path / "kemi_acc_7.1.bad").read_text() == "BYE|half a line\n"
    assert "line 2 is not a record" in ksr.log_text("err")


def test_the_router_replays_from_its_timer_callback_and_never_raises(tmp_path):
    ksr = FakeKSR()
    router = make_router(ksr, {"records": {"enabled": True, "spool_dir": str(tmp_path / "missing")}})
    router.records.database = FakeDatabase()
    assert router.ksr_records_replay(None, "timer") == 1
    router.records.replay = lambda: (_ for _ in ()).throw(OSError("disk gone"))
    assert router.ksr_records_replay(None) == 1 and "spool replay failed: OSError: disk gone" in ksr.log_text("err")
