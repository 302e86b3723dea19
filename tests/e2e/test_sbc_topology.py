"""Topology hiding on the dual-NIC SBC, end to end: real Kamailio (topos in MariaDB, uac),
rtpengine and SIPp gateways in network namespaces (tests/harness/sbc.py), every SIP message
the SBC sends on each NIC captured in the SBC namespace and checked header by header
(tests/harness/topology.py): nothing of the private side on the public NIC, nothing of the
public side on the private NIC.

The public side hides (sbc.public.hide_topology); a call touching it is hidden end to end.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
import time

import pytest

from harness import netns, stack
from harness.sbc import (GATEWAY_PORT, PHONE, PRIVATE_GATEWAYS, PRIVATE_NET, PUBLIC_GATEWAYS, PUBLIC_NET, SBC_PORT,
                         SBC_PRIVATE, SBC_PUBLIC, DOMAIN, SbcNetwork, gateway_uri, wait_until)
from harness.sbc_media import NetnsCapture, SbcRtpengine, sbc_media_tables
from harness.sipp import auth_row
from harness.topology import Side, Traffic
from kemi_tools.stack import mariadb

ROUTE_SECRET = "topology-test-secret-0123456789abcdef"
DIRECTIONS = ["private->public", "public->private"]
SIDES = [Side("public", SBC_PUBLIC, ipaddress.ip_network(PUBLIC_NET)),
         Side("private", SBC_PRIVATE, ipaddress.ip_network(PRIVATE_NET))]
ROUTERS = str(stack.project_file("tests", "e2e", "routers"))
# what the SBC sends to each party of topo_caller.xml / topo_gw.xml (retransmissions aside)
CALLER_GETS = {"180/INVITE": 1, "200/INVITE": 2, "INVITE": 1, "ACK": 1, "BYE": 1}     # + 100s
CALLEE_GETS = {"INVITE": 2, "ACK": 2, "200/INVITE": 1, "200/BYE": 1}


@pytest.fixture(scope="module")
def network(db, tmp_path_factory):
    assert netns.supported(), "the SBC tests need root and `ip netns`"
    net = SbcNetwork(tmp_path_factory.mktemp("topology"))
    yield net
    problems = net.close()
    assert not problems, problems


@pytest.fixture
def sbc(network, tmp_path):
    network.reset(tmp_path)
    yield network
    network.reset(tmp_path)


@pytest.fixture
def rtpe(sbc, tmp_path):
    engine = SbcRtpengine(sbc.sbc_ns, tmp_path / "rtpengine").start()
    yield engine
    engine.stop()


def hiding_tables(rtpe, public: bool = True, private: bool = False, **extra) -> dict:
    """Media on (rtpengine in the SBC namespace), both gateways per side, no probing."""
    return stack.merge(sbc_media_tables(rtpe, gateways_per_side=2), {
        "security": {"route_secret": ROUTE_SECRET},
        "sbc.public": {"hide_topology": public},
        "sbc.private": {"hide_topology": private},
        **extra})


def capture(sbc) -> NetnsCapture:
    """Every SIP packet through the SBC's port, on either NIC."""
    cap = NetnsCapture(sbc.sbc_ns, SBC_PORT, SBC_PORT)
    cap.keep_payloads = True
    return cap


def sides(sbc, direction: str):
    return (sbc.private, sbc.public) if direction == "private->public" else (sbc.public, sbc.private)


def hidden_call(sbc, ingress, hold_ms: int = 100, calls: int = 1):
    return sbc.trunk_call(ingress, "004930123", calls=calls, scenario="topo_caller.xml", hold_ms=hold_ms,
                          rate=10 if calls > 1 else None)


def assert_nothing_leaks(traffic: Traffic) -> None:
    leaks = traffic.leaks()
    assert not leaks, "\n".join(leaks[:20])
    wrong = traffic.inconsistencies()
    assert not wrong, "\n".join(wrong[:20])


# --- a hidden call, every message of it -----------------------------------------------------

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hidden_call_shows_each_side_only_the_sbc(sbc, rtpe, direction):
    """INVITE to BYE with a re-INVITE each way: on each NIC, no address and no Call-ID of the
    other side in any header or SDP line of any message; the parties get back their own
    Call-ID, From and To."""
    ingress, egress = sides(sbc, direction)
    k = sbc.start_kamailio(hiding_tables(rtpe))
    gws = [sbc.gateway(egress, i, scenario="topo_gw.xml") for i in range(2)]
    with capture(sbc) as cap:
        call = hidden_call(sbc, ingress).wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    assert call.rc == 0, call.stdout[-3000:]
    assert call.values("reinvite_in") == ["1"] and call.values("reinvite_out") == ["200"]
    assert call.values("bye_in") == ["1"]
    traffic = Traffic(cap.packets, SIDES)
    assert_nothing_leaks(traffic)
    # every message of the call was checked: what the SBC sent to each party
    to_caller, to_callee = (traffic.kinds(traffic.side(s)) for s in
                            (("private", "public") if direction == "private->public" else ("public", "private")))
    assert {k: to_caller[k] for k in CALLER_GETS} == CALLER_GETS, to_caller
    assert {k: to_callee[k] for k in CALLEE_GETS} == CALLEE_GETS, to_callee
    # the hiding side saw the SBC's own contact and a masked Call-ID
    public = traffic.side("public")
    invite = next(m for m in traffic.sent_to(public) if m.kind == "INVITE")
    assert re.fullmatch(rf"<sip:[ab]tpsh-[^@]+@{re.escape(SBC_PUBLIC)}:{SBC_PORT}>", invite.headers("contact")[0])
    assert not invite.headers("record-route") and len(invite.headers("via")) == 1
    assert "refused" not in k.log() and "ERROR" not in k.log(), k.log()[-3000:]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_the_caller_hangs_up_a_hidden_call(sbc, rtpe, direction):
    """The caller's own BYE (the calls above end with the callee's): it reaches the callee,
    its 200 the caller, and nothing of either side crosses in any message of the call."""
    ingress, egress = sides(sbc, direction)
    sbc.start_kamailio(hiding_tables(rtpe))
    gws = [sbc.gateway(egress, i) for i in range(2)]
    with capture(sbc) as cap:
        call = sbc.trunk_call(ingress, "004930123").wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    assert call.rc == 0 and call.finals == [200] and call.values("bye") == ["200"], call.stdout[-3000:]
    assert sum(len(gw.result().values("bye")) for gw in gws) == 1
    traffic = Traffic(cap.packets, SIDES)
    assert_nothing_leaks(traffic)
    caller_side, callee_side = direction.split("->")
    to_caller, to_callee = traffic.kinds(traffic.side(caller_side)), traffic.kinds(traffic.side(callee_side))
    assert (to_callee["INVITE"], to_callee["ACK"], to_callee["BYE"]) == (1, 1, 1), to_callee
    assert (to_caller["200/INVITE"], to_caller["200/BYE"]) == (1, 1), to_caller


def test_control_hiding_off_the_check_finds_the_private_side(sbc, rtpe):
    """The same call with hiding off: the leak check finds the private side's addresses and
    Call-ID in what the public gateways got (Via, Record-Route, Contact, From, Call-ID)."""
    k = sbc.start_kamailio(hiding_tables(rtpe, public=False))
    gws = [sbc.gateway(sbc.public, i, scenario="topo_gw.xml") for i in range(2)]
    with capture(sbc) as cap:
        call = hidden_call(sbc, sbc.private).wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    assert call.rc == 0, call.stdout[-3000:]
    leaks = Traffic(cap.packets, SIDES).leaks()
    to_public = [line for line in leaks if " to public: " in line]
    assert any("private address 198.51.100.10 in 'Via:" in line for line in to_public), to_public
    assert any("private address 198.51.100.1 in 'Record-Route:" in line for line in to_public), to_public
    assert any("'Contact: <sip:15559990001@198.51.100.10" in line for line in to_public), to_public
    assert any("'From: <sip:15559990001@198.51.100.10>" in line for line in to_public), to_public
    assert any("'INVITE sip:004930123@198.51.100.1 SIP/2.0'" in line for line in to_public), to_public
    assert any("private Call-ID" in line for line in to_public), to_public
    assert "WITH_TOPOLOGY" not in (k.workdir / "kamailio-settings.cfg").read_text()


# --- calls that fail: CANCEL, failover to the second gateway, 4xx, 3xx ------------------------

def test_cancel_failover_busy_and_redirect_leak_nothing(sbc, rtpe):
    """Calls from the public side that end without an answer, every message checked: gateway 1
    answers 503 (failover: gateway 2 gets the same INVITE) and gateway 2 486; a call cancelled
    while it rings; a 302 whose contacts name the private side, which reaches the caller with
    the SBC's own public address instead (a contact without a number is dropped)."""
    k = sbc.start_kamailio(hiding_tables(rtpe))
    with capture(sbc) as cap:
        gw1 = sbc.gateway(sbc.private, 0, scenario="gw_reject.xml")
        gw2 = sbc.gateway(sbc.private, 1, scenario="gw_ring_busy.xml")
        # round-robin: one of two calls meets gateway 1 first (503, marked inactive, failover)
        busy = sbc.trunk_call(sbc.public, "15550199", calls=2, rate=2, scenario="topo_fail_call.xml", hold_ms=None).wait()
        sbc.stop_sipp(gw2)
        ringing = sbc.gateway(sbc.private, 1, scenario="gw_ring_cancelled.xml")
        cancelled = sbc.trunk_call(sbc.public, "15550199", scenario="topo_cancel_call.xml", hold_ms=None).wait()
        sbc.stop_sipp(ringing)
        redirecting = sbc.gateway(sbc.private, 1, scenario="gw_redirect.xml")
        redirected = sbc.trunk_call(sbc.public, "15550199", scenario="topo_fail_call.xml", hold_ms=None).wait()
        for gw in (gw1, redirecting):
            sbc.stop_sipp(gw)
    assert busy.finals == [486, 486], busy.stdout[-3000:]
    assert f"gateway {gateway_uri(PRIVATE_GATEWAYS[0])} answered 503, trying {gateway_uri(PRIVATE_GATEWAYS[1])}" \
        in k.log()
    assert cancelled.finals == [487], cancelled.stdout[-3000:]
    assert redirected.finals == [302], redirected.stdout[-3000:]
    assert redirected.values("contact") == [f"<sip:4711@{SBC_PUBLIC}>"]
    traffic = Traffic(cap.packets, SIDES)
    assert_nothing_leaks(traffic)
    public, private = traffic.side("public"), traffic.side("private")
    assert {k: traffic.kinds(public)[k] for k in ("486/INVITE", "487/INVITE", "200/CANCEL", "302/INVITE")} == \
        {"486/INVITE": 2, "487/INVITE": 1, "200/CANCEL": 1, "302/INVITE": 1}, traffic.kinds(public)
    # 3 INVITEs for the two busy calls (one failed over), 1 cancelled, 1 redirected; tm's ACK
    # for each of the 5 final errors
    assert {k: traffic.kinds(private)[k] for k in ("INVITE", "CANCEL", "ACK")} == \
        {"INVITE": 5, "CANCEL": 1, "ACK": 5}, traffic.kinds(private)


def test_control_without_the_redirect_rewrite_a_302_names_the_private_side(sbc, rtpe):
    """CONTROL: with the failure route's 3xx answer taken out, the private gateway's 302 reaches
    the public caller with its own Contact (topos passes a 3xx's Contact unchanged)."""
    sbc.start_kamailio(hiding_tables(rtpe, python={"router": "topology_routers:UnrewrittenRedirectRouter",
                                                   "path": [ROUTERS]}))
    gws = [sbc.gateway(sbc.private, i, scenario="gw_redirect.xml") for i in range(2)]
    with capture(sbc) as cap:
        redirected = sbc.trunk_call(sbc.public, "15550199", scenario="topo_fail_call.xml", hold_ms=None).wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    assert redirected.finals == [302], redirected.stdout[-2000:]
    assert redirected.values("contact")[0].startswith("<sip:4711@198.51.100.1")
    leaks = [line for line in Traffic(cap.packets, SIDES).leaks() if " to public: " in line]
    assert any("302 Moved" in line and "'Contact: <sip:4711@198.51.100.1" in line for line in leaks), leaks


# --- only calls that touch a hiding side are hidden -------------------------------------------

def register(sbc, user: str, port: int):
    return sbc.run(sbc.private, "register.xml", PHONE, target=sbc.private.target,
                   rows=[auth_row(user, stack.PASSWORD, DOMAIN)],
                   keys={"contact_port": port, "expires": 3600}).wait()


def extension_call(sbc, db, caller: str, callee: str):
    """`caller` calls `callee`, both extensions on the private side: what the callee got."""
    db.add_subscriber(caller)
    db.add_subscriber(callee)
    callee_port, caller_port = stack.free_port(), stack.free_port()
    assert register(sbc, callee, callee_port).finals == [200]
    uas = sbc.run(sbc.private, "uas_callee.xml", PHONE, local_port=callee_port)
    call = sbc.run(sbc.private, "uac_call.xml", PHONE, target=sbc.private.target, local_port=caller_port,
                   rows=[auth_row(caller, stack.PASSWORD, DOMAIN, callee)], sets={"hold_ms": 100}).wait()
    assert call.rc == 0 and call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]
    got = uas.wait()
    assert got.rc == 0
    invite = got.received_requests("INVITE")[0]
    return caller_port, invite


def header(message: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in message.splitlines()
                if line.lower().startswith(name.lower() + ":"))


def test_a_call_between_non_hiding_sides_passes_unchanged(sbc, rtpe, db):
    """Only the public side hides: an extension calling an extension, both on the private
    side, reaches the callee with the caller's own Contact, Call-ID and the SBC's Record-Route
    (topos was told to leave it alone)."""
    sbc.start_kamailio(hiding_tables(rtpe))
    caller_port, invite = extension_call(sbc, db, "4701", "4702")
    assert header(invite, "Contact").startswith(f"<sip:4701@{PHONE}:{caller_port}")
    assert header(invite, "Call-ID").endswith(f"@{PHONE}")
    assert header(invite, "Record-Route").startswith(f"<sip:{SBC_PRIVATE}:{SBC_PORT};")


def test_control_without_the_event_callback_topos_strips_every_call(sbc, rtpe, db):
    """CONTROL: the same call when topos's event callback never says "leave it": topos strips
    the caller's Contact and the Record-Route although the call stays on the private side."""
    sbc.start_kamailio(hiding_tables(rtpe, python={"router": "topology_routers:ToposEverywhereRouter",
                                                   "path": [ROUTERS]}))
    _, invite = extension_call(sbc, db, "4703", "4704")
    assert re.fullmatch(rf"<sip:[ab]tpsh-[^@]+@{re.escape(SBC_PRIVATE)}:{SBC_PORT}>", header(invite, "Contact"))
    assert "Record-Route:" not in invite


# --- a Kamailio restart in the middle of hidden calls ------------------------------------------

def callee_answered_reinvites(cap, count: int) -> bool:
    """The SBC has relayed `count` re-INVITEs of the (public) callee to the caller, their
    answers back and the callee's ACKs to the caller: those transactions are over."""
    traffic = Traffic(list(cap.packets), SIDES)
    return traffic.kinds(traffic.side("public"))["200/INVITE"] >= count \
        and traffic.kinds(traffic.side("private"))["ACK"] >= count


def call_ids_from(cap, side_name: str) -> list[str]:
    traffic = Traffic(list(cap.packets), SIDES)
    return list(dict.fromkeys(m.call_id for m in traffic.received_from(traffic.side(side_name))
                              if m.kind == "INVITE"))


def test_hidden_calls_survive_a_kamailio_restart(sbc, rtpe, db):
    """Two hidden calls are up (the callee's re-INVITE done) when Kamailio restarts; after it,
    the caller's re-INVITE reaches the callee and the callee's BYE the caller: topos finds both
    parties in the database, the Call-ID mask and the Record-Route signature use the configured
    secret. CONTROL in the same run: the second call's topos records are deleted during the
    restart, and its caller's re-INVITE finds nobody (404), while the first call completes."""
    from kemi.topology.callid import CallIdMask

    k = sbc.start_kamailio(hiding_tables(rtpe))
    gws = [sbc.gateway(sbc.public, i, scenario="topo_gw.xml") for i in range(2)]
    with capture(sbc) as cap:
        calls = hidden_call(sbc, sbc.private, hold_ms=6000, calls=2)
        wait_until(lambda: callee_answered_reinvites(cap, 2), 10, "both callees' re-INVITEs answered")
        kept, wiped = call_ids_from(cap, "private")
        masked = CallIdMask(ROUTE_SECRET).mask(wiped)
        k.stop()
        stopped_at = time.monotonic()
        db.query(f"DELETE FROM topos_d WHERE a_callid IN ('{masked}', '{wiped}');")
        db.query(f"DELETE FROM topos_t WHERE a_callid IN ('{masked}', '{wiped}');")
        k.start()
        up_at = time.monotonic()
        result = calls.wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    down_for = up_at - stopped_at
    by_call = {call_id: [line for line in result.log if call_id in line] for call_id in (kept, wiped)}
    assert [line.split()[0] for line in by_call[kept]] == ["final=200", "reinvite_in=1", "reinvite_out=200",
                                                           "bye_in=1"], result.log
    assert [line.split()[0] for line in by_call[wiped]] == ["final=200", "reinvite_in=1"], result.log
    traffic = Traffic(cap.packets, SIDES)
    # the kept call's in-dialog requests crossed the restarted Kamailio (retransmissions
    # cover a restart slower than the calls' pause)
    masked_kept = CallIdMask(ROUTE_SECRET).mask(kept)
    after = [m.kind for m in traffic.sent_to(traffic.side("public")) if m.call_id == masked_kept and m.at > up_at]
    assert "INVITE" in after and "200/BYE" in after, after
    to_caller = [m for m in traffic.sent_to(traffic.side("private")) if m.call_id == wiped]
    # its re-INVITE (and retransmissions, and the BYE SIPp sends on the failure) found nobody
    kinds = [m.kind for m in to_caller]
    assert "404/INVITE" in kinds and kinds.count("200/INVITE") == 1, kinds    # only the first INVITE's 200
    assert_nothing_leaks(traffic)
    print(f"\nrestart: Kamailio down {down_for:.1f}s; call 1 re-INVITE and BYE through after it, "
          "call 2 (records deleted) refused 404")


# --- the storage down: fail closed ------------------------------------------------------------

class DatabaseDown:
    """This slot's database refuses the test user (privileges revoked, its connections killed):
    Kamailio's topos and the Python side both lose it. Only this slot's database is touched."""

    def __init__(self):
        user, password, self.dbname = mariadb._account(stack.TEST_DB_URL)
        self.user = user

    def __enter__(self):
        mariadb.root_sql(f"REVOKE ALL PRIVILEGES ON `{self.dbname}`.* FROM '{self.user}'@'localhost'; "
                         "FLUSH PRIVILEGES;")
        ids = mariadb.root_sql(f"SELECT id FROM information_schema.processlist WHERE user = '{self.user}' "
                               f"AND db = '{self.dbname}';").split()
        for conn in ids:
            try:
                mariadb.root_sql(f"KILL {int(conn)};")
            except Exception:       # it may have gone by itself meanwhile
                pass
        return self

    def __exit__(self, *exc):
        mariadb.root_sql(f"GRANT ALL PRIVILEGES ON `{self.dbname}`.* TO '{self.user}'@'localhost'; "
                         "FLUSH PRIVILEGES;")


def test_storage_down_new_calls_get_503_and_calls_up_carry_on(sbc, rtpe):
    """The database goes away while a hidden call is up: a new call gets 503 and one log line,
    and nothing reaches the public side for it; the call that is up keeps its media and, once
    the database is back, its re-INVITE and BYE go through; the next call is hidden again."""
    k = sbc.start_kamailio(hiding_tables(rtpe))
    gws = [sbc.gateway(sbc.public, i, scenario="topo_gw.xml") for i in range(2)]
    with capture(sbc) as cap:
        up = hidden_call(sbc, sbc.private, hold_ms=6000)
        wait_until(lambda: callee_answered_reinvites(cap, 1), 10, "the callee's re-INVITE answered")
        sent_before = len(Traffic(list(cap.packets), SIDES).sent_to(SIDES[0]))
        with DatabaseDown():
            refused = sbc.trunk_call(sbc.private, "004930124", caller="15559990002", hold_ms=None).wait()
            sent_during = len(Traffic(list(cap.packets), SIDES).sent_to(SIDES[0])) - sent_before
        assert up.wait().rc == 0, "the call that was up did not complete"
        time.sleep(2.5)             # the Python side retries a lost database after 2 s
        after = hidden_call(sbc, sbc.private).wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    assert refused.finals == [503], refused.stdout[-2000:]
    assert sent_during == 0                      # the public side got nothing while it was down
    refused_id = refused.log[0].split("call-id=")[1]
    lines = [line for line in k.log().splitlines() if "kemi: topology: storage unavailable" in line]
    assert len(lines) == 1 and refused_id in lines[0], lines
    assert after.rc == 0, after.stdout[-2000:]
    assert_nothing_leaks(Traffic(cap.packets, SIDES))
    print(f"\nstorage down: {lines[0].split('kemi: ', 1)[1]}")


def test_control_without_the_storage_check_topos_sends_the_call_unhidden(sbc, rtpe):
    """CONTROL: with the storage check taken out, the same new call while the database is
    down reaches the public gateway with the private side's Via, Contact and Record-Route:
    topos sends a message it could not store unchanged."""
    sbc.start_kamailio(hiding_tables(rtpe, python={"router": "topology_routers:UncheckedStorageRouter",
                                                   "path": [ROUTERS]}))
    gws = [sbc.gateway(sbc.public, i) for i in range(2)]
    # a first call: Kamailio has finished starting (its attendant connects to the database
    # after the workers answer, and would exit if it found the database gone)
    assert sbc.trunk_call(sbc.private, "004930124").wait().finals == [200]
    with capture(sbc) as cap:
        with DatabaseDown():
            sbc.trunk_call(sbc.private, "004930124", hold_ms=None, timeout=8).wait()
        for gw in gws:
            sbc.stop_sipp(gw)
    leaks = [line for line in Traffic(cap.packets, SIDES).leaks() if " to public: " in line]
    assert any("'Via: SIP/2.0/UDP 198.51.100.10" in line for line in leaks), leaks
    assert any("in 'Record-Route:" in line for line in leaks), leaks
