"""Call limits (kemi/limits/): the plain decisions, the settings, the call_limits table's cache,
and the parts on the fake KSR with both Kamailio API snapshots (5.6 and 6.0)."""
from __future__ import annotations

import pytest

from kemi.limits import calls, rate
from kemi.limits.calls import CALLEE, CALLER, GATEWAY, SIDE, TRUNK, CallEnds, Count, Defaults
from kemi.limits.part import CallLimits, CallRate, NoCallLimits, NoCallRate
from kemi.names import AVP_EGRESS, AVP_GATEWAY_SET, AVP_INGRESS, LIMIT_PROFILES
from kemi.observe.decisions import parse_line
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.store.limits import LOOKUP_SQL, CallLimitTable
from kemi.store.mysql import DatabaseUnavailable
from kemi.testing import FakeCallLimits, FakeKSR, FakeSubscribers, SipMessage, make_router
from kemi.testing.helpers import TEST_ROUTE_SECRET, FakeDids

VERSIONS = ["5.6", "6.0"]
DOMAIN = "sbc.example.test"
SBC = {
    "sip": {"domain": DOMAIN},
    "security": {"route_secret": TEST_ROUTE_SECRET},
    "media": {"enabled": False},
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                       "gateways": ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]},
            "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                        "gateways": ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]}},
}
PUB_GW = ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]
PRIV_GW = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}


def tables(base: dict, limits: dict, **more) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    out["limits"] = limits
    out.update(more)
    return out


@pytest.fixture(params=VERSIONS)
def version(request):
    return request.param


# --- decisions: which counts a call takes ------------------------------------------------------

@pytest.mark.parametrize("ends, expected", [
    (CallEnds(caller="2002", callee="2001"), [(CALLER, "2002"), (CALLEE, "2001")]),
    (CallEnds(caller="3001", ingress="private", to_trunk="public"),
     [(CALLER, "3001"), (SIDE, "private"), (TRUNK, "public")]),
    (CallEnds(ingress="public", from_gateway="203.0.113.10", to_trunk="private"),
     [(SIDE, "public"), (TRUNK, "public"), (GATEWAY, "203.0.113.10"), (TRUNK, "private")]),
    (CallEnds(ingress="public", from_gateway="203.0.113.10", callee="3001"),
     [(CALLEE, "3001"), (SIDE, "public"), (TRUNK, "public"), (GATEWAY, "203.0.113.10")]),
    # a subscriber's call to a foreign domain: the caller only (no SBC side)
    (CallEnds(caller="2002"), [(CALLER, "2002")]),
])
def test_the_counts_a_call_takes(ends, expected):
    assert [tuple(c) for c in calls.counts(ends)] == expected


def test_the_same_trunk_is_not_counted_twice():
    ends = CallEnds(ingress="public", from_gateway="203.0.113.10", to_trunk="public")
    assert [c for c in calls.counts(ends) if c.kind == TRUNK] == [Count(TRUNK, "public")]


def test_limit_of_a_count_the_table_wins_over_the_settings():
    defaults = Defaults(caller=2, trunk={"public": 30, "private": 0})
    rows = {("caller", "2001"): 5, ("trunk", "private"): 10, ("caller", "2003"): 0}
    def override(kind, key):
        return rows.get((kind, key))
    assert calls.limit_of(Count(CALLER, "2002"), defaults, override) == 2
    assert calls.limit_of(Count(CALLER, "2001"), defaults, override) == 5
    assert calls.limit_of(Count(CALLER, "2003"), defaults, override) == 0        # a row: no limit
    assert calls.limit_of(Count(TRUNK, "public"), defaults, override) == 30
    assert calls.limit_of(Count(TRUNK, "private"), defaults, override) == 10
    assert calls.limit_of(Count(GATEWAY, "198.51.100.10"), defaults, None) == 0


@pytest.mark.parametrize("size, limit, over", [(1, 0, False), (2, 2, False), (3, 2, True), (1, 1, False)])
def test_over_counts_this_call_too(size, limit, over):
    assert calls.over(size, limit) is over


@pytest.mark.parametrize("calls_up, limit, full", [(0, 1, False), (1, 1, True), (5, 0, False)])
def test_a_gateway_is_full_before_it_is_counted(calls_up, limit, full):
    assert calls.full(calls_up, limit) is full


def test_a_user_is_busy_a_trunk_is_unavailable():
    busy = calls.refusal(Count(CALLER, "2001"), 2, 2, retry_after=5)
    assert busy.reply == (486, "Busy Here - caller call limit") and busy.retry_after is None
    assert busy.describe() == "caller 2001 has 2 calls (limit 2), answered 486"
    for kind in (TRUNK, GATEWAY, SIDE):
        full = calls.refusal(Count(kind, "x"), 3, 3, retry_after=7)
        assert full.reply == (503, f"Service Unavailable - {kind} call limit") and full.retry_after == 7


@pytest.mark.parametrize("uri, host", [("sip:198.51.100.10:5060", "198.51.100.10"),
                                       ("sip:gw@198.51.100.10;transport=tcp", "198.51.100.10"),
                                       ("sip:[2001:db8:0::1]:5060", "2001:db8::1"), ("", "")])
def test_gateway_address_of_a_uri(uri, host):
    assert calls.uri_host(uri) == host


# --- decisions: call rate ---------------------------------------------------------------------

def test_rate_pipes_of_a_gateway_and_of_anybody_else():
    kw = dict(source_cps=5, gateway_cps=10, trunk_cps={"public": 20, "private": 0})
    assert rate.pipes("203.0.113.10", "public", **kw) == (
        rate.Pipe("gw:203.0.113.10", 10, rate.RATE_GATEWAY), rate.Pipe("trunk:public", 20, rate.RATE_TRUNK))
    assert rate.pipes("198.51.100.10", "private", **kw) == (rate.Pipe("gw:198.51.100.10", 10, rate.RATE_GATEWAY),)
    assert rate.pipes("192.0.2.7", None, **kw) == (rate.Pipe("src:192.0.2.7", 5, rate.RATE_SOURCE),)
    assert rate.pipes("192.0.2.7", None, **{**kw, "source_cps": 0}) == ()


def test_rate_reply_and_one_log_line_per_pipe_and_window():
    assert rate.over_rate_reply(rate.Pipe("gw:x", 1, rate.RATE_GATEWAY)) == \
        (503, "Service Unavailable - call rate limit (gateway)")
    logged: dict = {}
    assert [rate.should_log(logged, "gw:a", w) for w in (7, 7, 7, 8)] == [True, False, False, True]
    assert rate.should_log(logged, "gw:b", 8)


# --- settings ---------------------------------------------------------------------------------

def problems(raw: dict) -> list[str]:
    try:
        parse_settings(raw)
    except SettingsError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize("limits, key, fix", [
    ({"caller_calls": -1}, "limits.caller_calls", "use 0 to 1000000"),
    ({"keepalive_interval": 10}, "limits.keepalive_interval", "the dialog module's minimum is 30"),
    ({"emergency": ["112", "sip:x"]}, "limits.emergency", "digits"),
    ({"call_timeout": 1}, "limits.call_timeout", "use 2 to 604800"),
    ({"retry_after": 0}, "limits.retry_after", "use 1 to 3600"),
    ({"trunk_cps": {"public": -2}}, "limits.trunk_cps.public", "use 0 (no limit)"),
])
def test_bad_values_name_the_key_and_the_fix(limits, key, fix):
    found = problems(tables(SBC, limits))
    assert len(found) == 1 and f"setting '{key}'" in found[0] and fix in found[0], found


@pytest.mark.parametrize("key, value", [("gateway_calls", 2), ("gateway_cps", 5), ("trunk_calls", {"public": 2}),
                                        ("side_calls", {"private": 1}), ("trunk_cps", {"public": 9})])
def test_sbc_limits_need_the_sbc(key, value):
    found = problems({"limits": {key: value}})
    assert len(found) == 1 and "sbc.enabled is false" in found[0] and f"limits.{key}" in found[0], found


def test_no_limit_renders_nothing():
    cfg = render_kamailio_defines(parse_settings({}))
    assert "WITH_DIALOG" not in cfg and "WITH_CALL_LIMITS" not in cfg and "WITH_CALL_RATE_LIMITS" not in cfg
    assert "kemi_limit" not in render_kamailio_defines(parse_settings({"metrics": {"enabled": True}}))


def test_a_limit_renders_the_dialog_module_and_its_profiles():
    cfg = render_kamailio_defines(parse_settings({"limits": {"caller_calls": 3, "keepalive_interval": 60,
                                                             "call_timeout": 7200}}))
    assert "#!ifndef WITH_DIALOG\n#!define WITH_DIALOG\n#!endif\n#!define WITH_CALL_LIMITS\n" in cfg
    assert f'#!define DLG_PROFILES "{";".join(LIMIT_PROFILES.values())}"' in cfg
    assert "#!define DLG_CALL_TIMEOUT 7200" in cfg and "#!define DLG_KA_INTERVAL 60" in cfg
    assert "WITH_SHARED_CALL_LIMITS" not in cfg and "WITH_CALL_RATE_LIMITS" not in cfg


def test_the_table_alone_turns_counting_on():
    assert parse_settings({"limits": {"from_database": True}}).limits.calls_on


def test_a_rate_renders_pipelimit_and_the_metrics():
    cfg = render_kamailio_defines(parse_settings({"limits": {"source_cps": 5}, "metrics": {"enabled": True}}))
    assert "#!define WITH_PIPELIMIT\n#!define PL_INTERVAL 1\n#!endif\n#!define WITH_CALL_RATE_LIMITS\n" in cfg
    assert "WITH_CALL_LIMITS" not in cfg
    assert 'modparam("xhttp_prom", "prom_counter", "name=kemi_limit_refusals_total; label=limit;")' in cfg
    assert 'modparam("xhttp_prom", "prom_gauge", "name=kemi_limit_calls; label=limit:key;")' in cfg


@pytest.mark.parametrize("shared", [True, False])
def test_a_cluster_replicates_dialogs_unless_each_node_counts_its_own(shared):
    cluster = {"enabled": True, "nodes": ["192.0.2.11", "192.0.2.12", "192.0.2.13"], "node": 2,
               "secret": "0123456789abcdef0123"}
    cfg = render_kamailio_defines(parse_settings({"cluster": cluster, "security": {"route_secret": ""},
                                                  "limits": {"caller_calls": 2, "shared": shared}}))
    assert ("#!define WITH_SHARED_CALL_LIMITS\n#!define DLG_H_ID_STEP 4" in cfg) is shared


# --- the call_limits table ------------------------------------------------------------------

class FakeDb:
    def __init__(self, rows=None):
        self.rows, self.queries, self.down = dict(rows or {}), [], False

    def query_one(self, sql, params):
        self.queries.append((sql, params))
        if self.down:
            raise DatabaseUnavailable("down")
        value = self.rows.get(params)
        return None if value is None else (value,)

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_table_is_asked_once_per_ttl_rows_and_misses_alike():
    db, clock = FakeDb({("caller", "2001"): 3}), Clock()
    table = CallLimitTable(db, ttl=5, size=100, clock=clock)
    assert [table.limit("caller", "2001"), table.limit("caller", "2001"), table.limit("caller", "2009")] == [3, 3, None]
    assert table.limit("caller", "2009") is None and len(db.queries) == 2
    assert db.queries[0] == (LOOKUP_SQL, ("caller", "2001"))            # parameterised
    db.rows[("caller", "2001")] = 1
    clock.now += 4.9
    assert table.limit("caller", "2001") == 3                           # within the TTL: cached
    clock.now += 0.2
    assert table.limit("caller", "2001") == 1                           # after it: the new value


def test_while_the_database_is_down_the_last_value_stays():
    db, clock = FakeDb({("trunk", "public"): 30}), Clock()
    table = CallLimitTable(db, ttl=1, size=100, clock=clock)
    assert table.limit("trunk", "public") == 30
    db.down = True
    clock.now += 10
    assert table.limit("trunk", "public") == 30                         # stale, still in force
    assert table.limit("trunk", "private") is None                      # never read: the settings decide
    db.down = False
    del db.rows[("trunk", "public")]
    assert table.limit("trunk", "public") is None


def test_the_cache_keeps_at_most_size_names():
    db = FakeDb()
    table = CallLimitTable(db, ttl=60, size=2, clock=Clock())
    for name in ("a", "b", "c", "a"):
        table.limit("caller", name)
    assert len(db.queries) == 4                                         # "a" was evicted by "c"
    assert table.limit("caller", "x" * 65) is None and len(db.queries) == 4


# --- the parts on the fake KSR -----------------------------------------------------------------

def registrar_call(version, limits: dict, preload=(), user="2001", **kw):
    """2002 (authenticated) calls `user`, who is registered."""
    ksr = FakeKSR(SipMessage(method="INVITE", ruri=f"sip:{user}@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations[user] = [f"sip:{user}@192.0.2.20:5060"]
    ksr.dialog_profiles.update(preload)
    router = make_router(ksr, {"limits": limits, "media": {"enabled": False}, **kw})
    router.ksr_request_route(None)
    return ksr, router


def test_parts_are_absent_without_a_limit(version):
    ksr, router = registrar_call(version, {})
    assert type(router.limits) is NoCallLimits and type(router.rate) is NoCallRate
    assert ksr.relayed and not any(k.startswith(("dialog.", "pipelimit.")) for k, _ in ksr.calls)


def test_a_call_under_the_limits_is_counted_and_relayed(version):
    ksr, router = registrar_call(version, {"caller_calls": 2, "callee_calls": 1})
    assert type(router.limits) is CallLimits and ksr.relayed and ksr.replies == []
    assert ksr.dialog_links == [("kemi_caller", "2002"), ("kemi_callee", "2001")]
    assert ksr.called("dialog.dlg_manage") and not ksr.called("dialog.dlg_set_property")


def test_a_caller_over_the_limit_is_busy(version):
    ksr, _ = registrar_call(version, {"caller_calls": 2}, preload={("kemi_caller", "2002"): 2},
                            metrics={"enabled": True})
    assert ksr.replies == [(486, "Busy Here - caller call limit")] and not ksr.relayed
    assert ksr.called("tm.t_newtran") and not ksr.called("hdr.append_to_reply")
    assert "caller 2002 has 2 calls (limit 2), answered 486, refused" in ksr.log_text("notice")
    assert ksr.counter("kemi_limit_refusals_total", "caller") == 1
    assert ksr.counter("kemi_calls_total", "limited", "none", "none") == 1


def test_a_callee_over_the_limit_is_busy(version):
    ksr, _ = registrar_call(version, {"callee_calls": 1}, preload={("kemi_callee", "2001"): 1})
    assert ksr.replies == [(486, "Busy Here - callee call limit")] and not ksr.relayed


def test_the_decision_log_names_the_limit(version):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.dialog_profiles[("kemi_callee", "2001")] = 1
    ksr.cfg_vars["kemi_log.decisions"] = 1
    make_router(ksr, {"limits": {"callee_calls": 1}, "media": {"enabled": False}}).ksr_request_route(None)
    line = next(t for _, t in ksr.logs if "kemi: decision" in t)
    fields = parse_line(line)
    assert (fields["event"], fields["decision"], fields["limit"], fields["key"], fields["code"]) == \
        ("call", "limited", "callee", "2001", "486")


def test_an_emergency_number_passes_every_limit(version):
    ksr, _ = registrar_call(version, {"caller_calls": 1, "callee_calls": 1, "emergency": ["112"]}, user="112",
                            preload={("kemi_caller", "2002"): 5, ("kemi_callee", "112"): 5})
    assert ksr.relayed and ksr.replies == []
    assert ("kemi_caller", "2002") in ksr.dialog_links                     # counted all the same


def test_the_table_overrides_the_setting(version):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.dialog_profiles[("kemi_caller", "2002")] = 1
    table = FakeCallLimits({("caller", "2002"): 2})
    make_router(ksr, {"limits": {"caller_calls": 1, "from_database": True}, "media": {"enabled": False}},
                call_limits=table).ksr_request_route(None)
    assert ksr.relayed and ("caller", "2002") in table.asked


def test_the_table_is_not_asked_without_from_database(version):
    table = FakeCallLimits({("caller", "2002"): 9})
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.dialog_profiles[("kemi_caller", "2002")] = 1
    make_router(ksr, {"limits": {"caller_calls": 1}, "media": {"enabled": False}}, call_limits=table) \
        .ksr_request_route(None)
    assert ksr.replies == [(486, "Busy Here - caller call limit")] and table.asked == []


@pytest.mark.parametrize("failing", [("dialog.dlg_manage", "dialog.is_known_dlg"), ("dialog.set_dlg_profile",),
                                     ("dialog.get_profile_size",)])
def test_counters_that_fail_refuse_the_call(version, failing):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    for function in failing:
        ksr.results[function] = -1
    make_router(ksr, {"limits": {"caller_calls": 5}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.replies == [(503, "Service Unavailable - call limits unavailable")] and not ksr.relayed
    errors = [t for level, t in ksr.logs if level == "err"]
    assert len(errors) == 1 and "call counting failed" in errors[0]


def test_a_dialog_another_feature_made_is_counted(version):
    """dlg_manage() refuses a second dialog for one request: the one there is counted."""
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.dialog_links = []                                # made earlier in this request
    make_router(ksr, {"limits": {"caller_calls": 5}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.relayed and ksr.dialog_links == [("kemi_caller", "2002"), ("kemi_callee", "2001")]
    assert ksr.calls_to("dialog.dlg_manage") == [()] and ksr.called("dialog.is_known_dlg")


def test_keepalives_are_asked_for_every_call(version):
    ksr, _ = registrar_call(version, {"caller_calls": 5, "keepalive_interval": 30})
    assert ksr.dialog_properties == ["ka-src", "ka-dst"] and ksr.relayed


def test_non_invites_are_not_counted(version):
    ksr = FakeKSR(SipMessage(method="MESSAGE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    make_router(ksr, {"limits": {"caller_calls": 1}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.relayed and not ksr.called("dialog.dlg_manage")


# --- SBC: sides, trunks, gateways ---------------------------------------------------------------

def sbc_ksr(version, source, socket, ruri_user="15550100", host="203.0.113.1", **kw):
    message = SipMessage(method="INVITE", ruri=f"sip:{ruri_user}@{host}", source=(source, 5060),
                         socket_name=socket, received_on=f"udp:{host}:5060", **kw)
    ksr = FakeKSR(message, local_addresses=("203.0.113.1", "198.51.100.1"),
                  local_domains=("203.0.113.1", "198.51.100.1", DOMAIN), kamailio=version)
    ksr.gateways = {1: list(PUB_GW), 2: list(PRIV_GW)}
    ksr.gateway_sockets = {**{u: "public" for u in PUB_GW}, **{u: "private" for u in PRIV_GW}}
    return ksr


def sbc_route(ksr, limits, table=None, **more):
    router = make_router(ksr, tables(SBC, limits, **more), FakeSubscribers(("3001",)), dids=FakeDids(),
                         call_limits=table)
    router.ksr_request_route(None)
    return router


def test_a_gateway_call_counts_side_trunks_and_gateways(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    sbc_route(ksr, {"trunk_calls": {"public": 10}})
    assert ksr.relayed
    assert ksr.dialog_links == [("kemi_side", "public"), ("kemi_trunk", "public"), ("kemi_gateway", "203.0.113.10"),
                          ("kemi_trunk", "private"), ("kemi_gateway", "198.51.100.10")]


def test_a_full_trunk_gets_503_with_retry_after(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    ksr.dialog_profiles[("kemi_trunk", "public")] = 2
    sbc_route(ksr, {"trunk_calls": {"public": 2}, "retry_after": 9}, metrics={"enabled": True})
    assert ksr.replies == [(503, "Service Unavailable - trunk call limit")] and not ksr.relayed
    assert ksr.calls_to("hdr.append_to_reply") == [("Retry-After: 9\r\n",)]
    assert ksr.counter("kemi_replies_503_total", "call_limit") == 1


def test_a_full_gateway_is_skipped_for_the_next_one(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    ksr.dialog_profiles[("kemi_gateway", "198.51.100.10")] = 1
    sbc_route(ksr, {"gateway_calls": 1})
    assert ksr.relayed and ksr.relayed[0]["du"] == PRIV_GW[1]
    assert ("kemi_gateway", "198.51.100.10") not in ksr.dialog_links           # looked at, never counted
    assert ("kemi_gateway", "198.51.100.11") in ksr.dialog_links
    assert "gateway 198.51.100.10 has 1 calls (limit 1), trying sip:198.51.100.11:5060" in ksr.log_text("info")


def test_every_gateway_full_is_503_naming_the_gateway_limit(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    table = FakeCallLimits({("gateway", "198.51.100.10"): 1, ("gateway", "198.51.100.11"): 1})
    ksr.dialog_profiles.update({("kemi_gateway", "198.51.100.10"): 1, ("kemi_gateway", "198.51.100.11"): 1})
    sbc_route(ksr, {"from_database": True}, table)
    assert ksr.replies == [(503, "Service Unavailable - gateway call limit")] and not ksr.relayed


def test_an_emergency_call_keeps_the_first_gateway(version):
    ksr = sbc_ksr(version, "198.51.100.30", "private", ruri_user="112", host=DOMAIN,
                  from_uri=f"sip:3001@{DOMAIN}", headers=dict(CREDS))
    ksr.dialog_profiles.update({("kemi_gateway", "203.0.113.10"): 1, ("kemi_caller", "3001"): 1,
                                ("kemi_trunk", "public"): 4, ("kemi_side", "private"): 4})
    sbc_route(ksr, {"gateway_calls": 1, "caller_calls": 1, "trunk_calls": {"public": 1},
                    "side_calls": {"private": 1}, "emergency": ["112"]}, FakeSubscribers(("3001",)))
    assert ksr.relayed and ksr.relayed[0]["du"] == PUB_GW[0] and ksr.replies == []


def test_a_subscriber_call_counts_its_caller_and_side(version):
    ksr = sbc_ksr(version, "198.51.100.30", "private", ruri_user="0049301234", host=DOMAIN,
                  from_uri=f"sip:3001@{DOMAIN}", headers=dict(CREDS))
    sbc_route(ksr, {"side_calls": {"private": 3}})
    assert ksr.dialog_links == [("kemi_caller", "3001"), ("kemi_side", "private"), ("kemi_trunk", "public"),
                          ("kemi_gateway", "203.0.113.10")]


def test_failover_moves_the_gateway_count(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    router = sbc_route(ksr, {"gateway_calls": 1})
    assert ksr.dialog_links[-1] == ("kemi_gateway", "198.51.100.10")
    # the failure route after gateway 1 answered 503
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr.t_reply_code = 503
    ksr.results["tm.t_is_canceled"] = -1
    ksr.relayed.clear()
    router.ksr_failure_manage(None)
    assert ksr.relayed and ksr.relayed[0]["du"] == PRIV_GW[1]
    assert ("kemi_gateway", "198.51.100.10") not in ksr.dialog_links
    assert ksr.dialog_links[-1] == ("kemi_gateway", "198.51.100.11")


def test_failover_to_a_full_gateway_is_no_gateway_left(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    router = sbc_route(ksr, {"gateway_calls": 1})
    ksr.dialog_profiles[("kemi_gateway", "198.51.100.11")] = 1            # taken meanwhile
    ksr.pvs.update({AVP_INGRESS: "public", AVP_EGRESS: "private", AVP_GATEWAY_SET: 2})
    ksr.t_reply_code, ksr.results["tm.t_is_canceled"] = 503, -1
    ksr.relayed.clear()
    router.ksr_failure_manage(None)
    assert not ksr.relayed
    assert ksr.replies == [(503, "Service Unavailable - no gateway left in set 2 (private)")]


def test_gauges_are_set_when_metrics_are_asked(version):
    ksr = FakeKSR(SipMessage(http_url="/metrics", socket_name="metrics"), kamailio=version)
    ksr.dialog_profiles.update({("kemi_trunk", "public"): 2, ("kemi_trunk", "private"): 1,
                                ("kemi_caller", "3001"): 1})
    router = make_router(ksr, tables(SBC, {"trunk_calls": {"public": 5}}, metrics={"enabled": True}))
    router.ksr_xhttp_event(None)
    # xhttp_prom takes a gauge's value as a string
    assert ksr.gauges[("kemi_limit_calls", ("trunk", "all"))] == "3"
    assert ksr.gauges[("kemi_limit_calls", ("trunk", "public"))] == "2"
    assert ksr.gauges[("kemi_limit_calls", ("trunk", "private"))] == "1"
    assert ksr.gauges[("kemi_limit_calls", ("caller", "all"))] == "1"
    assert ksr.http_replies[-1][0] == 200


# --- call rate on the fake KSR -------------------------------------------------------------------

def test_a_gateway_over_its_rate_gets_503_and_nothing_is_banned(version):
    ksr = sbc_ksr(version, "203.0.113.10", "public")
    router = make_router(ksr, tables(SBC, {"gateway_cps": 2}), FakeSubscribers(), dids=FakeDids())
    outcomes = []
    for i in range(3):                  # three INVITEs in one window, the same Kamailio worker
        ksr.message = sbc_ksr(version, "203.0.113.10", "public", call_id=f"c{i}@x").message
        ksr.replies.clear(), ksr.relayed.clear()
        router.ksr_request_route(None)
        outcomes.append(ksr.replies[-1] if ksr.replies else "relayed")
    assert type(router.rate) is CallRate
    assert outcomes == ["relayed", "relayed", (503, "Service Unavailable - call rate limit (gateway)")]
    assert ksr.calls_to("hdr.append_to_reply") == [("Retry-After: 1\r\n",)]
    assert ksr.calls_to("pipelimit.pl_check_limit")[-1] == ("gw:203.0.113.10", "TAILDROP", 2)
    assert ksr.htable == {} and "is over 2 INVITEs per second" in ksr.log_text("notice")


def test_the_rate_counts_after_authentication(version):
    """A challenged INVITE (no credentials yet) is not a call: no pipe is asked."""
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1"), kamailio=version)
    make_router(ksr, {"limits": {"source_cps": 1}}).ksr_request_route(None)
    assert ksr.replies == [(407, "Proxy Authentication Required")] and not ksr.called("pipelimit.pl_check_limit")


def test_an_authenticated_source_over_its_rate(version):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.pipes["src:192.0.2.10"] = 4
    make_router(ksr, {"limits": {"source_cps": 4}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.replies == [(503, "Service Unavailable - call rate limit (source)")]


def test_an_emergency_number_passes_the_rate(version):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:911@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.locations["911"] = ["sip:911@192.0.2.20:5060"]
    ksr.pipes["src:192.0.2.10"] = 99
    make_router(ksr, {"limits": {"source_cps": 1}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.relayed and not ksr.called("pipelimit.pl_check_limit")


def test_pipelimit_failing_refuses_the_call(version):
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", headers=dict(CREDS)), kamailio=version)
    ksr.results["pipelimit.pl_check_limit"] = -2
    make_router(ksr, {"limits": {"source_cps": 4}, "media": {"enabled": False}}).ksr_request_route(None)
    assert ksr.replies == [(503, "Service Unavailable - call limits unavailable")] and not ksr.relayed
    assert "pl_check src:192.0.2.10 failed (-2)" in ksr.log_text("err")
