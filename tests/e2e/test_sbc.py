"""The dual-NIC SBC end to end: real Kamailio in a namespace with two veth NICs, SIPp gateways
and callers in a public and a private namespace, MariaDB over its unix socket.

Topology and addresses: tests/harness/sbc.py. The namespaces are created once for this
module and removed at its end; each test gets a fresh Kamailio (dispatcher state, round-robin
position) and stops its own SIPp processes.
"""
from __future__ import annotations

import collections
import re
import subprocess
import time

import pytest

from harness import kamcmd, netns, stack
from harness.sbc import (DOMAIN, GATEWAY_PORT, PHONE, PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, PUBLIC_HOST,
                         SBC_PORT, SBC_PRIVATE, SBC_PUBLIC, SPOOFED_SOURCE, UNKNOWN_SOURCE, SbcNetwork,
                         gateway_uri, send_raw, wait_until)
from harness.sipp import auth_row

FAILOVER_MS = 1500            # the harness default sbc.failover_timeout
PROBE_INTERVAL = 2            # the harness default sbc.probing_interval


@pytest.fixture(scope="module")
def network(db, tmp_path_factory):
    assert netns.supported(), "the SBC tests need root and `ip netns`"
    net = SbcNetwork(tmp_path_factory.mktemp("sbc"))
    names = [ns.name for ns in net.topology.namespaces]
    yield net
    problems = net.close()
    assert not problems, problems
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in left for name in names), left


@pytest.fixture
def sbc(network, tmp_path):
    network.reset(tmp_path)
    yield network
    network.reset(tmp_path)


def gateway_log(net, gateway) -> list[str]:
    net.stop_sipp(gateway)
    return gateway.wait().log


def count(log: list[str], key: str) -> int:
    return sum(1 for line in log if line.startswith(key + "="))


def first_received(result, method: str) -> str:
    """The first `method` request a SIPp run received."""
    requests = result.received_requests(method)
    assert requests, f"no {method} received"
    return requests[0]


def reasons(result) -> list[str]:
    """The reason phrases of the 503s a trunk call logged ("reason=<phrase>", spaces kept)."""
    return [line.split("=", 1)[1] for line in result.log if line.startswith("reason=")]


def headers(message: str, name: str) -> list[str]:
    out = []
    for line in message.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            out += [v.strip() for v in line.split(":", 1)[1].split(",")]
    return out


# --- direction and trust ---------------------------------------------------------------------

def test_kamailio_listens_on_named_sockets(sbc):
    k = sbc.start_kamailio()
    listed = kamcmd.list_sockets(k.kamcmd("corex.list_sockets"))     # 5.6's layout or 6.0's
    sockets = {s["addr"]: s["sockname"] for s in listed}
    assert sockets == {"127.0.0.1": "-", SBC_PUBLIC: "public", SBC_PRIVATE: "private"}


def stranger_invite(source: str, call_id: str, branch: str, tag: str) -> str:
    """An INVITE from `source` to the SBC's public NIC (send_raw fills in LOCALPORT)."""
    return (f"INVITE sip:15550100@{SBC_PUBLIC}:{SBC_PORT} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {source}:LOCALPORT;branch=z9hG4bK-{branch};rport\n"
            f"Max-Forwards: 70\nFrom: <sip:mallory@{source}>;tag={tag}\n"
            f"To: <sip:15550100@{SBC_PUBLIC}>\nCall-ID: {call_id}\nCSeq: 1 INVITE\n"
            f"Contact: <sip:mallory@{source}:LOCALPORT>\nContent-Length: 0\n\n")


def test_unknown_source_gets_403(sbc):
    k = sbc.start_kamailio()
    gws = [sbc.gateway(sbc.private, i) for i in range(2)]
    invite = stranger_invite(UNKNOWN_SOURCE, "unknown-source-1", branch="unknown1", tag="u1")
    replies = send_raw(sbc.public.ns, UNKNOWN_SOURCE, SBC_PUBLIC, SBC_PORT, invite)
    assert replies and replies[-1].startswith("SIP/2.0 403 Forbidden"), replies
    assert not any(r.startswith("SIP/2.0 100") for r in replies)       # refused before tm
    assert f"source {UNKNOWN_SOURCE} is on no side" in k.log()
    assert all(count(gateway_log(sbc, g), "invite") == 0 for g in gws)


def test_private_address_arriving_on_the_public_nic_is_refused(sbc):
    """Detection by socket name first: a private-side source on the public NIC is spoofed."""
    k = sbc.start_kamailio()
    gws = [sbc.gateway(sbc.private, i) for i in range(2)]
    invite = stranger_invite(SPOOFED_SOURCE, "spoofed-source-1", branch="spoof1", tag="s1")
    send_raw(sbc.public.ns, SPOOFED_SOURCE, SBC_PUBLIC, SBC_PORT, invite, wait=1)
    # the 403 goes to the real private side (its route), not back to the spoofer
    wait_until(lambda: f"source {SPOOFED_SOURCE} belongs to private (198.51.100.0/24) "
                           f"but arrived on public socket public" in k.log(), 5, "the refusal")
    assert "call-id=spoofed-source-1" in k.log()
    assert all(count(gateway_log(sbc, g), "invite") == 0 for g in gws)


def test_public_host_that_is_no_gateway_must_authenticate(sbc):
    sbc.start_kamailio()
    gw = sbc.gateway(sbc.private, 0)
    call = sbc.trunk_call(sbc.public, "15550100", source=PUBLIC_HOST).wait()
    assert call.finals == [407], call.stdout[-2000:]
    assert count(gateway_log(sbc, gw), "invite") == 0


# --- calls across, round-robin ---------------------------------------------------------------

@pytest.mark.parametrize("direction", ["public->private", "private->public"])
def test_twenty_calls_spread_evenly_over_the_other_sides_gateways(sbc, direction):
    ingress, egress = (sbc.public, sbc.private) if direction == "public->private" else (sbc.private, sbc.public)
    sbc.start_kamailio()
    gws = [sbc.gateway(egress, i) for i in range(2)]
    call = sbc.trunk_call(ingress, "15550100", calls=20, rate=10, hold_ms=100).wait()
    assert call.rc == 0, call.stdout[-3000:]
    assert call.finals == [200] * 20 and call.values("bye") == ["200"] * 20
    answered = collections.Counter(call.values("answered_by"))
    expected = {f"{gw}:{GATEWAY_PORT}": 10 for gw in egress.gateways}
    assert answered == expected, answered
    logs = [gateway_log(sbc, g) for g in gws]
    assert [count(log, "invite") for log in logs] == [10, 10]
    assert [count(log, "bye") for log in logs] == [10, 10]
    print(f"\n{direction}: {dict(answered)}")
    # what a gateway saw: the SBC's address on ITS side in Via and first Record-Route, the
    # other side's second (double RR); the BYE came through the SBC as well
    seen = gws[0].wait()
    invite = first_received(seen, "INVITE")
    assert headers(invite, "Via")[0].startswith(f"SIP/2.0/UDP {egress.sbc_address}:{SBC_PORT}")
    # (each carries the dialog signature ;kd=..., kemi/security/dialog.py)
    rr = headers(invite, "Record-Route")[:2]
    for value, side in zip(rr, (egress, ingress)):
        assert re.fullmatch(rf"<sip:{re.escape(side.sbc_address)}:{SBC_PORT};r2=on;lr;kd=[0-9a-f]{{20}}>", value), rr
    bye = first_received(seen, "BYE")
    assert headers(bye, "Via")[0].startswith(f"SIP/2.0/UDP {egress.sbc_address}:{SBC_PORT}")


def test_callee_side_reinvite_and_bye(sbc):
    k = sbc.start_kamailio()
    gws = [sbc.gateway(sbc.private, i, scenario="gw_reinvite_bye.xml") for i in range(2)]
    call = sbc.trunk_call(sbc.public, "15550100", calls=2, scenario="trunk_callee_ends.xml",
                          hold_ms=None).wait()
    assert call.rc == 0, call.stdout[-3000:]
    assert call.finals == [200, 200]
    assert len(call.values("reinvite")) == 2 and len(call.values("bye")) == 2
    logs = [gateway_log(sbc, g) for g in gws]
    assert sum(count(log, "reinvite") for log in logs) == 2
    assert sum(count(log, "bye") for log in logs) == 2
    # the caller got the callee's re-INVITE and BYE from the SBC's public address
    for method in ("INVITE", "BYE"):
        request = first_received(call, method)
        assert headers(request, "Via")[0].startswith(f"SIP/2.0/UDP {SBC_PUBLIC}:{SBC_PORT}"), request
    assert "refused" not in k.log()


# --- failover --------------------------------------------------------------------------------

def test_gateway_answering_503_fails_over_to_the_other(sbc):
    k = sbc.start_kamailio()
    bad = sbc.gateway(sbc.private, 0, scenario="gw_reject.xml")
    good = sbc.gateway(sbc.private, 1)
    call = sbc.trunk_call(sbc.public, "15550100", calls=10, rate=5).wait()
    assert call.rc == 0, call.stdout[-3000:]
    assert call.finals == [200] * 10
    assert set(call.values("answered_by")) == {f"{PRIVATE_GATEWAYS[1]}:{GATEWAY_PORT}"}
    rejected = count(gateway_log(sbc, bad), "invite")
    assert rejected >= 1                             # it was tried, said 503, and was skipped
    assert count(gateway_log(sbc, good), "invite") == 10
    assert f"gateway {gateway_uri(PRIVATE_GATEWAYS[0])} answered 503, trying {gateway_uri(PRIVATE_GATEWAYS[1])}" \
        in k.log()
    print(f"\n503 failover: 10/10 calls completed via gateway 2; gateway 1 refused {rejected}")


def test_gateway_not_answering_fails_over_after_the_timer(sbc):
    # probing slow enough that a call meets the dead gateway before a probe does
    k = sbc.start_kamailio({"sbc": {"probing_interval": 60}})
    good = sbc.gateway(sbc.private, 1)                # gateway 1 is not running at all
    gw2 = f"{PRIVATE_GATEWAYS[1]}:{GATEWAY_PORT}"
    durations = []
    for _ in range(2):                                # round-robin: one of two calls meets it
        started = time.monotonic()
        call = sbc.trunk_call(sbc.public, "15550100").wait()
        durations.append(time.monotonic() - started)
        assert call.finals == [200] and call.values("answered_by") == [gw2], call.stdout[-2000:]
        if "answered 408" in k.log():
            break
    assert k.log().count(f"gateway {gateway_uri(PRIVATE_GATEWAYS[0])} answered 408, trying "
                         f"{gateway_uri(PRIVATE_GATEWAYS[1])}") == 1
    took = durations[-1]
    # it waited the timer (not tm's 30 s default), then failed over
    assert FAILOVER_MS / 1000 <= took < FAILOVER_MS / 1000 + 2
    assert k.gateway_states()[gateway_uri(PRIVATE_GATEWAYS[0])].startswith("I")
    started = time.monotonic()
    rest = sbc.trunk_call(sbc.public, "15550100", calls=5, rate=10).wait()
    rest_took = time.monotonic() - started
    assert rest.finals == [200] * 5 and set(rest.values("answered_by")) == {gw2}
    assert k.log().count("answered 408") == 1          # the dead one is skipped now
    assert count(gateway_log(sbc, good), "invite") == len(durations) + 5
    print(f"\nno-answer failover: the call that met the dead gateway took {took:.2f}s "
          f"(timer {FAILOVER_MS} ms); the next 5 calls {rest_took:.2f}s, all via gateway 2")


def test_both_gateways_down_gives_503_naming_the_set(sbc):
    k = sbc.start_kamailio()
    gws = [sbc.gateway(sbc.private, i, scenario="gw_reject.xml") for i in range(2)]
    first = sbc.trunk_call(sbc.public, "15550100").wait()
    assert first.finals == [503], first.stdout[-2000:]
    assert reasons(first) == ["Service Unavailable - no gateway left in set 2 (private)"]
    assert [count(gateway_log(sbc, g), "invite") for g in gws] == [1, 1]   # both were tried
    second = sbc.trunk_call(sbc.public, "15550100").wait()     # both marked inactive now
    assert second.finals == [503]
    assert reasons(second) == ["Service Unavailable - no gateway left in set 2 (private)"]
    assert "no active gateway in set 2 (private)" in k.log()


def test_probing_marks_a_stopped_gateway_inactive_and_back(sbc):
    k = sbc.start_kamailio()
    gw1, gw2 = (gateway_uri(a) for a in PRIVATE_GATEWAYS)
    first = sbc.gateway(sbc.private, 0)
    second = sbc.gateway(sbc.private, 1)
    wait_until(lambda: k.gateway_states().get(gw1) == "AP" and k.gateway_states().get(gw2) == "AP",
               PROBE_INTERVAL * 3, "both gateways probed and active")
    sbc.stop_sipp(first)
    _, went_down = wait_until(lambda: k.gateway_states()[gw1].startswith("I"),
                              PROBE_INTERVAL + FAILOVER_MS / 1000 + 3, "gateway 1 to go inactive")
    assert went_down <= PROBE_INTERVAL + FAILOVER_MS / 1000 + 1.5
    calls = sbc.trunk_call(sbc.public, "15550100", calls=4, rate=10).wait()
    assert calls.finals == [200] * 4
    assert set(calls.values("answered_by")) == {f"{PRIVATE_GATEWAYS[1]}:{GATEWAY_PORT}"}
    assert "answered 408" not in k.log()              # nobody tried the dead gateway
    again = sbc.gateway(sbc.private, 0)
    _, came_back = wait_until(lambda: k.gateway_states()[gw1].startswith("A"),
                              PROBE_INTERVAL * 2 + 3, "gateway 1 to be active again")
    assert came_back <= PROBE_INTERVAL * 2 + 1
    calls = sbc.trunk_call(sbc.public, "15550100", calls=4, rate=10).wait()
    assert calls.finals == [200] * 4
    assert collections.Counter(calls.values("answered_by")) == {
        f"{a}:{GATEWAY_PORT}": 2 for a in PRIVATE_GATEWAYS}
    assert count(gateway_log(sbc, again), "invite") == 2
    gateway_log(sbc, second)
    print(f"\nprobing: inactive {went_down:.1f}s after stop, active {came_back:.1f}s after restart "
          f"(interval {PROBE_INTERVAL}s, probe timeout {FAILOVER_MS} ms)")


def test_dispatcher_reload_takes_a_changed_gateway_list(sbc):
    k = sbc.start_kamailio()
    gws = [sbc.gateway(sbc.private, i) for i in range(2)]
    tables = stack.merge(k.tables, {"sbc.private": {"gateways": [gateway_uri(PRIVATE_GATEWAYS[1])]}})
    k.write(tables)
    k.rerender()
    assert "successfully reloaded" in k.kamcmd("dispatcher.reload")
    assert gateway_uri(PRIVATE_GATEWAYS[0]) not in k.gateway_states()
    calls = sbc.trunk_call(sbc.public, "15550100", calls=4, rate=10).wait()
    assert calls.finals == [200] * 4
    assert [count(gateway_log(sbc, g), "invite") for g in gws] == [0, 4]


def test_gateways_from_the_dispatcher_table(sbc, db):
    db.query("DELETE FROM dispatcher;")
    rows = [(1, gateway_uri(a), "sockname=public") for a in PUBLIC_GATEWAYS] + \
           [(2, gateway_uri(a), "sockname=private") for a in PRIVATE_GATEWAYS]
    db.query("INSERT INTO dispatcher (setid, destination, flags, priority, attrs, description) VALUES " +
             ", ".join(f"({s}, '{u}', 0, 0, '{a}', 'test')" for s, u, a in rows) + ";")
    try:
        k = sbc.start_kamailio({"sbc": {"gateways_from": "database"},
                                "sbc.public": {"gateways": []}, "sbc.private": {"gateways": []}})
        gws = [sbc.gateway(sbc.public, i) for i in range(2)]
        calls = sbc.trunk_call(sbc.private, "004930123", calls=4, rate=10).wait()
        assert calls.finals == [200] * 4
        assert collections.Counter(calls.values("answered_by")) == {
            f"{a}:{GATEWAY_PORT}": 2 for a in PUBLIC_GATEWAYS}
        # a row removed, then dispatcher.reload: the set has one gateway left
        db.query(f"DELETE FROM dispatcher WHERE destination = '{gateway_uri(PUBLIC_GATEWAYS[0])}';")
        assert "successfully reloaded" in k.kamcmd("dispatcher.reload")
        calls = sbc.trunk_call(sbc.private, "004930123", calls=2, rate=10).wait()
        assert calls.values("answered_by") == [f"{PUBLIC_GATEWAYS[1]}:{GATEWAY_PORT}"] * 2
        assert [count(gateway_log(sbc, g), "invite") for g in gws] == [2, 4]
    finally:
        db.query("DELETE FROM dispatcher;")


# --- one system with the registrar -----------------------------------------------------------

def register(sbc, user: str, contact_port: int):
    return sbc.run(sbc.private, "register.xml", PHONE, target=sbc.private.target,
                   rows=[auth_row(user, stack.PASSWORD, DOMAIN)],
                   keys={"contact_port": contact_port, "expires": 3600}).wait()


def test_extension_calls_a_number_out_through_a_public_gateway(sbc, db):
    db.add_subscriber("4601")
    sbc.start_kamailio()
    gws = [sbc.gateway(sbc.public, i) for i in range(2)]
    call = sbc.run(sbc.private, "uac_call.xml", PHONE, target=sbc.private.target,
                   rows=[auth_row("4601", stack.PASSWORD, DOMAIN, "004930123456")],
                   sets={"hold_ms": 100}).wait()
    assert call.rc == 0 and call.finals == [200], call.stdout[-2000:]
    logs = [gateway_log(sbc, g) for g in gws]
    assert sum(count(log, "invite") for log in logs) == 1
    seen = next(g.wait() for g, log in zip(gws, logs) if count(log, "invite"))
    invite = first_received(seen, "INVITE")
    assert headers(invite, "Via")[0].startswith(f"SIP/2.0/UDP {SBC_PUBLIC}:{SBC_PORT}")
    assert "Proxy-Authorization" not in invite


def test_public_gateway_call_to_a_mapped_did_rings_the_extension(sbc, db):
    db.add_subscriber("4602")
    db.add_subscriber("4603")
    db.query("DELETE FROM did_map;")
    db.query("INSERT INTO did_map (did, extension) VALUES ('15550102', '4602');")
    try:
        sbc.start_kamailio()
        private_gws = [sbc.gateway(sbc.private, i) for i in range(2)]
        phone_a, phone_b = stack.free_port(), stack.free_port()
        assert register(sbc, "4602", phone_a).finals == [200]
        assert register(sbc, "4603", phone_b).finals == [200]
        ringing = sbc.run(sbc.private, "uas_callee.xml", PHONE, local_port=phone_a)
        call = sbc.trunk_call(sbc.public, "15550102").wait()
        assert call.finals == [200] and call.values("answered_by") == [f"{PHONE}:{phone_a}"], call.stdout[-2000:]
        assert ringing.wait().rc == 0
        # the map changes: within the TTL (2 s here) the DID rings the other extension
        db.query("UPDATE did_map SET extension = '4603' WHERE did = '15550102';")
        other = sbc.run(sbc.private, "uas_callee.xml", PHONE, local_port=phone_b)
        changed_at = time.monotonic()
        moved = sbc.trunk_call(sbc.public, "15550102", hold_ms=100)
        result = moved.wait()
        while result.values("answered_by") != [f"{PHONE}:{phone_b}"] and time.monotonic() - changed_at < 5:
            # still cached: that call went to 4602, which no longer answers (480), retry
            time.sleep(0.5)
            result = sbc.trunk_call(sbc.public, "15550102", hold_ms=100).wait()
        assert result.values("answered_by") == [f"{PHONE}:{phone_b}"], result.stdout[-2000:]
        took = time.monotonic() - changed_at
        # within the TTL (plus one call that may still have met the cached target and timed out)
        assert took < 2 + FAILOVER_MS / 1000 + 1
        assert other.wait().rc == 0
        print(f"\nDID map change took effect after {took:.1f}s (did_cache_ttl 2 s), no restart")
        # an unmapped DID goes to the private gateways
        unmapped = sbc.trunk_call(sbc.public, "15550199").wait()
        assert unmapped.finals == [200]
        assert unmapped.values("answered_by")[0].split(":")[0] in PRIVATE_GATEWAYS
        assert sum(count(gateway_log(sbc, g), "invite") for g in private_gws) == 1
    finally:
        db.query("DELETE FROM did_map;")


# --- what the media part hooks into -----------------------------------------------------------

def sides_seen(log: str, call_id: str) -> list[str]:
    return [f"{m.group(1)} {m.group(2)} {m.group(3)}" for m in
            re.finditer(rf"kemi-test: sides (\w+) (\S+) (\S+) call-id={re.escape(call_id)}", log)]


def test_call_sides_follow_the_transaction_both_ways(sbc):
    """call_sides(): (ingress, egress) in branch and reply routes, initial and in-dialog."""
    routers = str(stack.project_file("tests", "e2e", "routers"))
    k = sbc.start_kamailio({"python": {"router": "sides_router:SidesRouter", "path": [routers]}})
    gws = [sbc.gateway(sbc.private, i, scenario="gw_reinvite_bye.xml") for i in range(2)]
    call = sbc.trunk_call(sbc.public, "15550100", scenario="trunk_callee_ends.xml", hold_ms=None).wait()
    assert call.rc == 0, call.stdout[-2000:]
    call_id = call.log[0].split("call-id=")[1]
    for g in gws:
        gateway_log(sbc, g)
    seen = sides_seen(k.log(), call_id)
    assert seen == [
        "branch INVITE public->private",        # the caller's INVITE leaves through the private NIC
        "reply 200/INVITE public->private",     # its answer (SDP from private back to public)
        "branch INVITE private->public",        # the callee's re-INVITE, in-dialog, the other way
        "reply 200/INVITE private->public",
        "branch BYE private->public",           # the callee's BYE
    ], seen


def test_extension_to_extension_on_the_same_side(sbc, db):
    """Single Record-Route (in and out on the private NIC): in-dialog requests still leave
    through the private socket, and call_sides says private->private."""
    routers = str(stack.project_file("tests", "e2e", "routers"))
    db.add_subscriber("4604")
    db.add_subscriber("4605")
    k = sbc.start_kamailio({"python": {"router": "sides_router:SidesRouter", "path": [routers]}})
    callee_port, caller_port = stack.free_port(), stack.free_port()
    assert register(sbc, "4605", callee_port).finals == [200]
    uas = sbc.run(sbc.private, "uas_callee.xml", PHONE, local_port=callee_port)
    call = sbc.run(sbc.private, "uac_call.xml", PHONE, target=sbc.private.target, local_port=caller_port,
                   rows=[auth_row("4604", stack.PASSWORD, DOMAIN, "4605")], sets={"hold_ms": 100}).wait()
    assert call.rc == 0 and call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]
    callee = uas.wait()
    assert callee.rc == 0
    bye = first_received(callee, "BYE")
    assert headers(bye, "Via")[0].startswith(f"SIP/2.0/UDP {SBC_PRIVATE}:{SBC_PORT}")
    assert len(headers(first_received(callee, "INVITE"), "Record-Route")) == 1
    call_id = call.log[0].split("call-id=")[1]
    assert sides_seen(k.log(), call_id) == ["branch INVITE private->private",
                                             "reply 180/INVITE private->private",
                                             "reply 200/INVITE private->private",
                                             "branch BYE private->private"]
