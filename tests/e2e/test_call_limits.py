"""Call limits at the SBC's border, end to end (kemi/limits/, docs/sbc.md "Call limits"): real
Kamailio with the dialog module and pipelimit in the SBC namespace, SIPp gateways on both sides,
trunks and phones (tests/harness/ua.py) on documentation addresses.

Each kind of limit is reached exactly (N calls up, the N+1st refused, one released, the next
one accepted), released by BYE, CANCEL, a failure reply, the dialog timeout and a dead party's
unanswered keepalive; the call rate is refused over the limit without a ban; emergency numbers
pass at the limit; the call_limits table changes a limit live; counters that fail refuse the
call. Each mechanism has its control (the limit off, the table off, no emergency number, ...).
"""
from __future__ import annotations

import re
import sys
import time

import pytest

from harness import netns, stack
from harness.sbc import (DOMAIN, GATEWAY_PORT, PHONE, PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, SBC_PORT, SBC_PRIVATE,
                         SBC_PUBLIC, SbcNetwork, wait_until)
from harness.records import cdrs, wait_rows
from harness.sipp import Sipp
from harness.ua import UA, retry_after, wait_for_request

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not netns.supported(), reason="needs root and ip netns")]

PUBLIC = (SBC_PUBLIC, SBC_PORT)
PRIVATE = (SBC_PRIVATE, SBC_PORT)
METRICS_PORT = stack.PORT_BASE + 65
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def network(db, tmp_path_factory):
    assert netns.supported(), "the call-limit tests need root and `ip netns`"
    net = SbcNetwork(tmp_path_factory.mktemp("limits"))
    yield net
    problems = net.close()
    assert not problems, problems
    if FIGURES:
        print("\ncall limits figures:", FIGURES)


@pytest.fixture
def sbc(network, tmp_path):
    network.reset(tmp_path)
    uas: list[UA] = []
    network.uas = uas
    yield network
    for ua in uas:
        ua.close()
    network.reset(tmp_path)


def ua(net, side, address: str, **kw) -> UA:
    agent = UA(side.ns, address, PUBLIC if side is net.public else PRIVATE, domain=DOMAIN, **kw)
    net.uas.append(agent)
    return agent


def start(net, limits: dict, **more) -> object:
    tables = {"limits": limits, **more}
    return net.start_kamailio(tables)


def restart(net, name: str, limits: dict, **more) -> object:
    """Another Kamailio (a control) after this test's first: the first one and its SIPps stopped
    (a second Kamailio on the same port would share its traffic)."""
    net.reset(net.workdir / name)
    return start(net, limits, **more)


def profile_size(k, kind: str, key: str) -> int:
    out = k.kamcmd("dlg.profile_get_size", f"kemi_{kind}", key)
    m = re.fullmatch(r"\s*(\d+)\s*", out)          # kamcmd prints the number alone
    assert m, out
    return int(m.group(1))


def long_gateway(net, side, index: int, scenario: str) -> Sipp:
    """A SIPp gateway whose calls may stay up a minute (the harness's SIPp gives up waiting for a
    message after 10 s: -recv_timeout, the last one given wins)."""
    sipp = Sipp(scenario, net.workdir / "sipp", local_ip=side.gateways[index], local_port=GATEWAY_PORT,
                calls=None, timeout=600, netns=side.ns.name, extra=["-recv_timeout", "120s"]).start()
    net.sipps.append(sipp)
    return sipp


def limited_lines(k) -> list[str]:
    return [line for line in k.log().splitlines() if "kemi: limits:" in line]


# --- trunk (each side), released by BYE --------------------------------------------------------

@pytest.mark.parametrize("limit", [2, 0], ids=["limit-2", "control-no-limit"])
def test_public_trunk_limit_reached_exactly_and_bye_releases(sbc, limit):
    k = start(sbc, {"trunk_calls": {"public": limit}})
    for i in range(2):
        sbc.gateway(sbc.private, i)
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    first, second = trunk.call("15550100"), trunk.call("15550101")
    assert (first.code, second.code) == (200, 200), (first, second)
    third = trunk.call("15550102")
    if limit == 0:
        assert third.code == 200                     # control: no limit, the third call goes through
        assert not limited_lines(k)
        return
    assert (third.code, third.reason) == (503, "Service Unavailable - trunk call limit"), third
    assert retry_after(third) == "5"
    assert profile_size(k, "trunk", "public") == 2
    lines = limited_lines(k)
    assert len(lines) == 1 and "trunk public has 2 calls (limit 2), answered 503" in lines[0], lines
    assert trunk.bye(first) == 200
    wait_until(lambda: profile_size(k, "trunk", "public") == 1, 5, "the BYE to release its count")
    fourth = trunk.call("15550103")
    assert fourth.code == 200, fourth
    assert trunk.bye(second) == 200 and trunk.bye(fourth) == 200
    wait_until(lambda: profile_size(k, "trunk", "public") == 0, 5, "every count released")


def answered_by(call) -> str:
    """The address in the 200's Contact (which gateway or phone answered)."""
    m = re.search(r"@([^:;>]+)", call.headers.get("Contact", ""))
    return m.group(1) if m else ""


def test_private_trunk_limit_and_cancel_releases(sbc):
    """Calls TO the private gateway set count in its trunk; a CANCELled call (487) is released."""
    k = start(sbc, {"trunk_calls": {"private": 1}})
    for i in range(2):
        sbc.gateway(sbc.private, i, scenario="gw_ring.xml")
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    ringing = trunk.invite("15550100")
    assert 180 in ringing.provisional and ringing.code is None, ringing
    refused = trunk.call("15550101")
    assert (refused.code, refused.reason) == (503, "Service Unavailable - trunk call limit"), refused
    assert profile_size(k, "trunk", "private") == 1
    assert trunk.cancel(ringing).code == 487
    wait_until(lambda: profile_size(k, "trunk", "private") == 0, 5, "the CANCEL to release the count")
    again = trunk.invite("15550102")
    assert 180 in again.provisional and again.code is None, again
    assert trunk.cancel(again).code == 487


def test_gateway_limits_from_the_table_skip_a_full_gateway(sbc, db):
    """Per-gateway limits (rows of call_limits): a full gateway is skipped for the next one of
    its set; all full: 503; a BYE releases. Control: the same rows with from_database off."""
    db.query("DELETE FROM call_limits;")
    db.query("INSERT INTO call_limits (kind, name, max_calls) VALUES " +
             ", ".join(f"('gateway', '{a}', 1)" for a in PRIVATE_GATEWAYS) + ";")
    try:
        k = start(sbc, {"from_database": True, "cache_ttl": 1})
        for i in range(2):
            sbc.gateway(sbc.private, i)
        trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
        first, second = trunk.call("15550100"), trunk.call("15550101")
        assert (first.code, second.code) == (200, 200)
        assert {answered_by(first), answered_by(second)} == set(PRIVATE_GATEWAYS)   # round-robin
        assert trunk.bye(second) == 200
        # round-robin picks the first call's gateway again: it is full, the other one takes it
        third = trunk.call("15550102")
        assert third.code == 200 and answered_by(third) == answered_by(second), third
        assert f"kemi: limits: gateway {answered_by(first)} has 1 calls (limit 1), trying" in k.log()
        fourth = trunk.call("15550103")
        assert (fourth.code, fourth.reason) == (503, "Service Unavailable - gateway call limit"), fourth
        assert retry_after(fourth) == "5"
        assert trunk.bye(first) == 200
        fifth = trunk.call("15550104")
        assert fifth.code == 200 and answered_by(fifth) == answered_by(first)
        for call in (third, fifth):
            assert trunk.bye(call) == 200
        # control: the table is read only with limits.from_database
        k = restart(sbc, "control", {"from_database": False, "caller_calls": 100})
        for i in range(2):
            sbc.gateway(sbc.private, i)
        trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[1])
        calls = [trunk.call(f"1555011{i}") for i in range(3)]
        assert [c.code for c in calls] == [200, 200, 200]
        for call in calls:
            trunk.bye(call)
    finally:
        db.query("DELETE FROM call_limits;")


def test_failover_moves_the_gateway_count(sbc, db):
    """Gateway 2 answers 503: the call fails over to gateway 1 and its count goes with it (the
    failure route), so gateway 2 has none and gateway 1, full, refuses the next call."""
    db.query("DELETE FROM call_limits;")
    db.query("INSERT INTO call_limits (kind, name, max_calls) VALUES " +
             ", ".join(f"('gateway', '{a}', 1)" for a in PRIVATE_GATEWAYS) + ";")
    try:
        k = start(sbc, {"from_database": True})
        sbc.gateway(sbc.private, 0)
        sbc.gateway(sbc.private, 1, scenario="gw_reject.xml")
        trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
        # round-robin starts with the set's second gateway (a fresh Kamailio): it answers 503
        first = trunk.call("15550100")
        assert first.code == 200 and answered_by(first) == PRIVATE_GATEWAYS[0], first
        assert f"answered 503, trying sip:{PRIVATE_GATEWAYS[0]}:{GATEWAY_PORT}" in k.log()
        assert (profile_size(k, "gateway", PRIVATE_GATEWAYS[0]), profile_size(k, "gateway", PRIVATE_GATEWAYS[1])) \
            == (1, 0)
        second = trunk.call("15550101")
        assert (second.code, second.reason) == (503, "Service Unavailable - gateway call limit"), second
        assert trunk.bye(first) == 200
    finally:
        db.query("DELETE FROM call_limits;")


def test_a_failure_reply_releases_the_count(sbc):
    """The callee's 486 ends the call: its count is gone, the next call is not refused by the limit."""
    k = start(sbc, {"trunk_calls": {"private": 1}})
    for i in range(2):
        sbc.gateway(sbc.private, i, scenario="gw_busy.xml")
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    codes = [trunk.call(f"1555012{i}").code for i in range(3)]
    assert codes == [486, 486, 486]                  # never the limit's 503
    assert profile_size(k, "trunk", "private") == 0
    assert not limited_lines(k)


def test_side_limit_counts_every_call_arriving_on_the_side(sbc):
    k = start(sbc, {"side_calls": {"private": 1}})
    for i in range(2):
        sbc.gateway(sbc.public, i)
    pbx = ua(sbc, sbc.private, PRIVATE_GATEWAYS[0])
    first = pbx.call("004930100")
    refused = pbx.call("004930101")
    assert first.code == 200 and (refused.code, refused.reason) == (503, "Service Unavailable - side call limit")
    assert profile_size(k, "side", "private") == 1
    assert pbx.bye(first) == 200
    again = pbx.call("004930102")
    assert again.code == 200
    assert pbx.bye(again) == 200


# --- subscribers: caller and callee, emergency numbers ---------------------------------------------

def test_caller_limit_and_emergency_numbers_pass_at_the_limit(sbc, db):
    """A subscriber at its limit of 1 gets 486; 112 still goes out (caller and trunk limits both
    full); another number (the control) does not."""
    db.add_subscriber("7701")
    k = start(sbc, {"caller_calls": 1, "trunk_calls": {"public": 1}, "emergency": ["112"]})
    for i in range(2):
        sbc.gateway(sbc.public, i)
    phone = ua(sbc, sbc.private, PHONE, user="7701", password=stack.PASSWORD)
    first = phone.call("004930100")
    assert first.code == 200, first
    busy = phone.call("004930101")
    assert (busy.code, busy.reason) == (486, "Busy Here - caller call limit"), busy
    assert retry_after(busy) is None
    emergency = phone.call("112")
    assert emergency.code == 200, emergency
    other = phone.call("113")                        # control: not an emergency number
    assert other.code == 486
    assert profile_size(k, "caller", "7701") == 2 and profile_size(k, "trunk", "public") == 2
    for call in (first, emergency):
        assert phone.bye(call) == 200
    again = phone.call("004930102")
    assert again.code == 200
    assert phone.bye(again) == 200


@pytest.mark.parametrize("timeout, user", [(3, "7702"), (3600, "7703")], ids=["timeout-3s", "control-timeout-1h"])
def test_callee_limit_and_the_dialog_timeout_releases(sbc, db, timeout, user):
    """A subscriber rung by a DID: one call at a time; a call nobody ends is ended by the dialog
    timeout (BYE to both parties) and released. Control: a long timeout keeps it counted."""
    db.add_subscriber(user)
    db.query("DELETE FROM did_map;")
    db.query(f"INSERT INTO did_map (did, extension) VALUES ('15550147', '{user}');")
    try:
        k = start(sbc, {"callee_calls": 1, "call_timeout": timeout})
        phone = ua(sbc, sbc.private, PHONE, user=user, password=stack.PASSWORD, answer=200)
        assert phone.register() == 200
        trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
        first = trunk.call("15550147")
        answered = time.monotonic()
        assert first.code == 200 and answered_by(first) == PHONE, first
        busy = trunk.call("15550147")
        assert (busy.code, busy.reason) == (486, "Busy Here - callee call limit"), busy
        ended = wait_for_request(trunk, "BYE", first, 8)
        if timeout == 3600:
            assert ended is None                     # control: nothing ends it
            assert trunk.call("15550147").code == 486
            assert profile_size(k, "callee", user) == 1
            return
        assert ended is not None, "the dialog timeout sends BYE to the caller"
        wait_until(lambda: phone.requests("BYE"), 3, "the dialog timeout's BYE to the callee")
        bye_at = trunk.requests("BYE", first)[0].at
        FIGURES["dialog timeout 3 s: BYE after the answer (s)"] = round(bye_at - answered, 1)
        wait_until(lambda: profile_size(k, "callee", user) == 0, 5, "the timeout to release the count")
        again = trunk.call("15550147")
        assert again.code == 200
        assert trunk.bye(again) == 200
    finally:
        db.query("DELETE FROM did_map;")


# --- the call_limits table, live -------------------------------------------------------------------

@pytest.mark.parametrize("from_database", [True, False], ids=["table", "control-table-off"])
def test_a_row_of_the_table_overrides_the_setting_live(sbc, db, from_database):
    db.query("DELETE FROM call_limits;")
    db.query("INSERT INTO call_limits (kind, name, max_calls) VALUES ('trunk', 'public', 2);")
    try:
        start(sbc, {"trunk_calls": {"public": 1}, "from_database": from_database, "cache_ttl": 1})
        for i in range(2):
            sbc.gateway(sbc.private, i)
        trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
        up = [trunk.call("15550100")]
        second = trunk.call("15550101")
        if not from_database:
            assert second.code == 503                # control: the setting (1) decides
            return
        assert second.code == 200                    # the row (2) wins over the setting (1)
        up.append(second)
        assert trunk.call("15550102").code == 503
        db.query("UPDATE call_limits SET max_calls = 3 WHERE kind = 'trunk' AND name = 'public';")
        changed = time.monotonic()
        while (call := trunk.call("15550103")).code != 200:
            assert call.code == 503 and time.monotonic() - changed < 5, call
            time.sleep(0.1)
        took = time.monotonic() - changed
        up.append(call)
        FIGURES["call_limits change applied after (s), cache_ttl 1 s"] = round(took, 2)
        assert took < 1 + 1.5                         # the TTL (each worker's cache), plus a call
        # the row goes: the setting (1) applies again
        db.query("DELETE FROM call_limits;")
        assert trunk.bye(up.pop()) == 200 and trunk.bye(up.pop()) == 200
        time.sleep(1.2)
        assert trunk.call("15550104").code == 503
        assert trunk.bye(up.pop()) == 200
        assert trunk.call("15550105").code == 200
    finally:
        db.query("DELETE FROM call_limits;")


@pytest.mark.parametrize("from_database, user", [(True, "7706"), (False, "7707")],
                         ids=["subscriber-row", "control-table-off"])
def test_a_subscriber_row_overrides_the_caller_limit(sbc, db, from_database, user):
    """A subscriber's own row (caller, 2) over the setting (caller_calls 1): two calls up, the
    third busy. Control: the same row with from_database off, the second is busy."""
    db.add_subscriber(user)
    db.query("DELETE FROM call_limits;")
    db.query(f"INSERT INTO call_limits (kind, name, max_calls) VALUES ('caller', '{user}', 2);")
    try:
        start(sbc, {"caller_calls": 1, "from_database": from_database})
        for i in range(2):
            sbc.gateway(sbc.public, i)
        phone = ua(sbc, sbc.private, PHONE, user=user, password=stack.PASSWORD)
        up = [phone.call("004930100")]
        second = phone.call("004930101")
        if not from_database:
            assert (second.code, second.reason) == (486, "Busy Here - caller call limit"), second  # the setting
        else:
            assert second.code == 200, second                 # the row (2) wins over the setting (1)
            up.append(second)
            third = phone.call("004930102")
            assert (third.code, third.reason) == (486, "Busy Here - caller call limit"), third
        assert up[0].code == 200
        for call in up:
            assert phone.bye(call) == 200
    finally:
        db.query("DELETE FROM call_limits;")


def test_a_dialog_another_feature_made_is_counted(sbc):
    """A feature that makes the dialog first (CDRs would): the limits count that one."""
    routers = str(stack.project_file("tests", "e2e", "routers"))
    k = start(sbc, {"trunk_calls": {"public": 1}},
              python={"router": "early_dialog_router:EarlyDialogRouter", "path": [routers]})
    for i in range(2):
        sbc.gateway(sbc.private, i)
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    first = trunk.call("15550100")
    assert first.code == 200, first
    assert profile_size(k, "trunk", "public") == 1
    assert trunk.call("15550101").code == 503
    assert not [line for line in k.log().splitlines() if "call counting failed" in line]
    assert trunk.bye(first) == 200


# --- fails closed ----------------------------------------------------------------------------------

@pytest.mark.parametrize("broken", [True, False], ids=["dialog-error", "control-working"])
def test_counters_that_fail_refuse_the_call(sbc, broken):
    """A dialog module error (a profile it does not have): 503, one error line, nothing relayed."""
    routers = str(stack.project_file("tests", "e2e", "routers"))
    python = {"router": "broken_counters_router:BrokenCountersRouter", "path": [routers]} if broken else {}
    k = start(sbc, {"trunk_calls": {"public": 10}}, **({"python": python} if python else {}))
    gateways = [sbc.gateway(sbc.private, i) for i in range(2)]
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    call = trunk.call("15550100")
    if not broken:
        assert call.code == 200
        assert trunk.bye(call) == 200
        return
    assert (call.code, call.reason) == (503, "Service Unavailable - call limits unavailable"), call
    errors = [line for line in k.log().splitlines() if "call counting failed" in line]
    assert len(errors) == 1 and "trunk public" in errors[0], errors
    for gw in gateways:
        sbc.stop_sipp(gw)
        assert not [line for line in gw.wait().log if line.startswith("invite=")]


# --- call rate -------------------------------------------------------------------------------------

def pipe_counter(k, pipe: str) -> int | None:
    """The requests pipelimit counted in the pipe's current window (None: no such pipe yet)."""
    out = k.kamcmd("pl.list", pipe)
    m = re.search(r"counter:\s*(\d+)", out)
    return int(m.group(1)) if m else None


def window_start(k, pipe: str) -> None:
    """Return right after pipelimit's 1 s window restarted (its counter back to 0): a burst sent
    now falls in one window."""
    wait_until(lambda: pipe_counter(k, pipe) not in (None, 0), 5, f"{pipe} to count")
    wait_until(lambda: pipe_counter(k, pipe) == 0, 3, f"{pipe}'s window to restart", interval=0.01)


@pytest.mark.parametrize("on", [True, False], ids=["rate", "control-no-rate"])
def test_call_rate_per_gateway_and_per_trunk_refuses_without_a_ban(sbc, on):
    """gateway_cps 2, trunk_cps.public 3: in one window gateway 1's third INVITE is over its own
    rate, gateway 2's second over the trunk's (2 + 1 already); 112 passes over the rate; 503 +
    Retry-After: 1; nobody is banned, and after the window the gateway is admitted again."""
    k = start(sbc, {"gateway_cps": 2, "trunk_cps": {"public": 3}} if on else {"caller_calls": 100})
    for i in range(2):
        sbc.gateway(sbc.private, i, scenario="gw_busy.xml")
    first = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    second = ua(sbc, sbc.public, PUBLIC_GATEWAYS[1])
    assert first.call("15550100").code == 486 and second.call("15550101").code == 486
    if on:
        window_start(k, "trunk:public")
    burst = [first.call(f"1555011{i}") for i in range(3)] + [first.call("112")] + \
            [second.call(f"1555012{i}") for i in range(2)]
    codes = [c.code for c in burst]
    if not on:
        assert codes == [486] * 6                    # control: no rate limit, every INVITE relayed
        return
    assert codes == [486, 486, 503, 486, 486, 503], burst
    assert burst[2].reason == "Service Unavailable - call rate limit (gateway)"
    assert burst[5].reason == "Service Unavailable - call rate limit (trunk)"
    assert retry_after(burst[2]) == retry_after(burst[5]) == "1"
    assert "::" not in k.kamcmd("htable.dump", "ipban") and "203.0.113" not in k.kamcmd("htable.dump", "ipban")
    assert "ban" not in " ".join(limited_lines(k)).lower()
    time.sleep(1.1)
    assert first.call("15550130").code == 486        # not banned: admitted in the next window


@pytest.mark.parametrize("on, user", [(True, "7704"), (False, "7705")], ids=["rate", "control-no-rate"])
def test_call_rate_per_source_counts_authenticated_invites(sbc, db, on, user):
    """source_cps 2 for a phone: a call is one INVITE after its 407 challenge (the challenged one
    does not count), so two calls pass in a window and the third gets 503 + Retry-After: 1. The
    phone is not banned (the screen's flood detection is on, as by default): it is admitted in
    the next window. Control: no source_cps, the third call is relayed."""
    db.add_subscriber(user)
    k = start(sbc, {"source_cps": 2} if on else {"caller_calls": 100})
    for i in range(2):
        sbc.gateway(sbc.public, i, scenario="gw_busy.xml")
    phone = ua(sbc, sbc.private, PHONE, user=user, password=stack.PASSWORD)
    assert phone.call("004930100").code == 486
    if on:
        window_start(k, f"src:{PHONE}")
    codes = [phone.call(f"00493011{i}") for i in range(3)]
    if not on:
        assert [c.code for c in codes] == [486, 486, 486], codes     # control: every INVITE relayed
        return
    assert [c.code for c in codes] == [486, 486, 503], codes
    assert codes[2].reason == "Service Unavailable - call rate limit (source)"
    assert retry_after(codes[2]) == "1"
    lines = [line for line in limited_lines(k) if "INVITEs per second" in line]
    assert len(lines) == 1 and f"src:{PHONE} is over 2 INVITEs per second" in lines[0], lines
    assert PHONE not in k.kamcmd("htable.dump", "ipban")
    time.sleep(1.1)
    assert phone.call("004930120").code == 486       # not banned: admitted in the next window


# --- metrics and the decision log ------------------------------------------------------------------

def metrics_text(net) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', " \
           f"timeout=5).read().decode())"
    return net.sbc_ns.run([sys.executable, "-c", code], timeout=15).stdout


def test_metrics_and_the_decision_log_name_the_limit(sbc):
    k = start(sbc, {"trunk_calls": {"public": 1}},
              metrics={"enabled": True, "listen": f"127.0.0.1:{METRICS_PORT}"}, logging={"decisions": True})
    for i in range(2):
        sbc.gateway(sbc.private, i)
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    up = trunk.call("15550100")
    refused = trunk.call("15550101")
    assert (up.code, refused.code) == (200, 503)
    text = metrics_text(sbc)
    assert 'kamailio_kemi_limit_calls{limit="trunk", key="public"} 1' in text, text[-3000:]
    assert 'kamailio_kemi_limit_calls{limit="side", key="public"} 1' in text
    assert 'kamailio_kemi_limit_refusals_total{limit="trunk"} 1' in text
    assert 'kamailio_kemi_replies_503_total{reason="call_limit"} 1' in text
    decision = [line for line in k.log().splitlines() if "kemi: decision event=call decision=limited" in line]
    assert len(decision) == 1 and "limit=trunk key=public" in decision[0] and "code=503" in decision[0], decision
    assert trunk.bye(up) == 200
    wait_until(lambda: 'kamailio_kemi_limit_calls{limit="trunk", key="public"} 0' in metrics_text(sbc), 5,
               "the gauge to drop to 0")


# --- with call records (kemi/records/) --------------------------------------------------------------

def test_a_call_a_limit_refused_has_its_record(sbc, db, tmp_path):
    """[records] on beside the limits: the refused call has its record with the limit's 503 (the
    refusal is the transaction's reply, which acc writes), the admitted call its 200."""
    start(sbc, {"trunk_calls": {"public": 1}}, records={"enabled": True, "spool_dir": str(tmp_path / "spool")})
    for i in range(2):
        sbc.gateway(sbc.private, i)
    trunk = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    up = trunk.call("15550100")
    refused = trunk.call("15550101")
    assert (up.code, refused.code) == (200, 503), (up, refused)
    assert trunk.bye(up) == 200
    rows = wait_rows(lambda: cdrs(db, refused.call_id), 1)
    assert len(rows) == 1, rows
    # the code is the limit's; acc's reason column holds the standard phrase (not the limit's words)
    assert rows[0]["sip_code"] == "503", rows
    assert rows[0]["src_side"] == "public" and rows[0]["answer_time"] is None, rows
    admitted = wait_rows(lambda: cdrs(db, up.call_id), 1)
    assert len(admitted) == 1 and admitted[0]["sip_code"] == "200", admitted


# --- a dead party: dialog keepalives -----------------------------------------------------------------

def test_a_dead_party_is_found_by_keepalives_and_released(sbc):
    """keepalive_interval 30 (the dialog module's minimum): the caller of one call goes silent;
    its OPTIONS time out, the call is ended (BYE to the callee) and released. The other call's
    caller answers its OPTIONS: it stays up and counted."""
    k = start(sbc, {"trunk_calls": {"public": 2}, "keepalive_interval": 30})
    gateways = [long_gateway(sbc, sbc.private, i, "gw_keepalive.xml") for i in range(2)]
    gone = ua(sbc, sbc.public, PUBLIC_GATEWAYS[0])
    alive = ua(sbc, sbc.public, PUBLIC_GATEWAYS[1])
    lost, kept = gone.call("15550100"), alive.call("15550101")
    assert (lost.code, kept.code) == (200, 200)
    assert gone.call("15550102").code == 503         # the trunk is full
    gone.dead = True
    started = time.monotonic()
    wait_until(lambda: profile_size(k, "trunk", "public") == 1, 60, "the dead party's call to be released",
               interval=0.5)
    took = time.monotonic() - started
    FIGURES["dead party released after (s), keepalive 30 s"] = round(took, 1)
    assert alive.requests("OPTIONS", kept), "the live party was asked too"
    assert not alive.requests("BYE", kept)
    assert gone.requests("OPTIONS", lost)            # asked, never answered
    again = alive.call("15550103")
    assert again.code == 200
    for call in (kept, again):
        assert alive.bye(call) == 200
    logs = []
    for gw in gateways:
        sbc.stop_sipp(gw)
        logs += gw.wait().log
    # the dead caller's callee got the SBC's BYE; the callees were asked too
    assert f"bye=1 call-id={lost.call_id}" in logs and f"keepalive=1 call-id={kept.call_id}" in logs, logs
