"""Cluster (issues 13, 22) on a MariaDB Galera cluster (galera-4): three Galera nodes and three
Kamailio nodes, each in its own namespace; registrations in the shared database (usrloc
db_mode 3), subscribers written with kamctl on any node.

A Galera server SIGKILLed inside a REGISTER load (new contacts and un-REGISTERs at 20/s through
two nodes, sent on schedule whatever the earlier answers, as from many phones): every answer is
compared with what is stored afterwards. 200 only for a stored contact (un-REGISTER: for one
that is gone), no error answer for a stored contact (un-REGISTER: for one that is gone), in
both registration modes; kamctl's answers likewise; Kamailio and the Python DB layer move on by
themselves. Controls: a node without database.failover fails its REGISTERs and cannot
authenticate anybody; the same load with usrloc's db_insert_update off answers 500 for
contacts it stored (issue 22).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import netns, stack
from harness.cluster import (DOMAIN, GALERA_DB, PHONE_ADDRESSES, ClusterNetwork, closed_after, galera_database)
from harness.phone import Caller
from harness.sipclient import status
from kemi_tools.stack.process import wait_for

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not netns.supported(), reason="needs root and ip netns")]

FIGURES: dict[str, object] = {}
PASSWORD = stack.PASSWORD

# the load: LOAD_REQUESTS REGISTERs at LOAD_RATE per second, g1 SIGKILLed KILL_AT s in; the
# Galera survivors stall ~3 s in the view change that evicts it (galera.py: suspect after 2 s)
LOAD_REQUESTS = 200
LOAD_RATE = 20.0
KILL_AT = 3.0
ANSWER_WAIT = 15.0                 # a phone gives up after this (each of the two transactions)
IN_THE_WINDOW_S = 1.5              # an answer slower than this waited for the view change
INSERT_UPDATE = 'modparam("usrloc", "db_insert_update", 1)'


def database_mode(index: int, **database) -> dict:
    return {"database": {**galera_database(index), **database}, "cluster": {"registrations": "database"}}


@pytest.fixture(scope="module")
def net(db, tmp_path_factory):
    with closed_after(ClusterNetwork(tmp_path_factory.mktemp("cluster-galera")), FIGURES, "cluster galera") as network:
        started = time.monotonic()
        network.start_galera()
        FIGURES["galera_start_s"] = round(time.monotonic() - started, 1)
        for i in range(3):
            network.start_node(i, database_mode(i), wait=False)
        for node in network.nodes:
            node.wait_ready()
        network.wait_joined()
        yield network


def rows(net, galera_index: int, sql: str) -> list[list[str]]:
    out = net.galera[galera_index].sql(sql, GALERA_DB)
    return [line.split("\t") for line in out.splitlines() if line]


def add_subscribers(net, prefix: str, count: int) -> list[str]:
    """Subscribers straight into the table through g2 (kamctl's own writes are tested apart)."""
    users = [f"{prefix}{n:02d}" for n in range(count)]
    values = ",".join(f"('{u}', '{DOMAIN}', '{PASSWORD}', '', '')" for u in users)
    net.galera[1].sql(f"INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES {values};", GALERA_DB)
    return users


def revive_g1(net) -> None:
    """g1 back after a test killed it: it rejoins (state transfer) before the next kill."""
    g1 = net.galera[0]
    if not (g1.daemon and g1.daemon.alive()):
        g1.start(timeout=120)
    wait_for(lambda: all(g.status("wsrep_cluster_size") == "3" for g in net.galera), 60,
             "g1 back in a Galera cluster of 3", interval=0.3)


def test_the_galera_cluster_has_three_nodes(net):
    assert [g.status("wsrep_cluster_size") for g in net.galera] == ["3", "3", "3"]


def test_kamctl_add_on_any_node_is_seen_by_all(net):
    for i in range(3):
        done = net.kamctl(i, "add", f"700{i}", PASSWORD)
        assert done.returncode == 0 and f"new user '700{i}' added" in done.stdout, done.stdout + done.stderr
    for g in range(3):
        assert sorted(r[0] for r in rows(net, g, "SELECT username FROM subscriber WHERE username LIKE '700%';")) \
            == ["7000", "7001", "7002"]
    # a subscriber added through k1's server registers through k3 (whose server is g3)
    callee = net.callee(PHONE_ADDRESSES[0])
    phone = net.caller("7000", net.nodes[2].sip, PHONE_ADDRESSES[0])
    assert status(phone.register(callee.contact)) == 200
    # db_mode 3: the contact is in the table on every Galera node, and k2 finds it
    for g in range(3):
        assert rows(net, g, "SELECT contact FROM location WHERE username = '7000';")
    caller = net.caller("7001", net.nodes[1].sip)
    answer, dialog = caller.call("7000")
    assert answer == 200
    assert caller.bye(dialog) == 200


# --- the load, and each answer against what is stored ----------------------------------------

@dataclass(frozen=True)
class Answer:
    node: int                      # k1 = 1
    user: str
    contact: str                   # as usrloc stores it: sip:USER@ADDRESS:PORT
    unregister: bool               # Expires: 0 for a contact registered before the load
    sent: float                    # s after the load's start
    took: float                    # s until the final answer (both transactions)
    code: int | None               # None: no answer within ANSWER_WAIT


def register(net, node, user: str, address: str, contact: str, expires: int) -> int | None:
    phone = Caller(net.phones.socket(), address, node.sip, user, PASSWORD, DOMAIN, timeout=ANSWER_WAIT)
    try:
        reply = phone.register(contact, expires=expires)
    finally:
        phone.close()
    return None if reply is None else status(reply)


@dataclass(frozen=True)
class Load:
    started: float                 # time.monotonic() at the first request
    killed: float                  # s after that: g1 SIGKILLed
    answers: list[Answer]


def register_load(net, nodes, users: list[str], tag: int) -> Load:
    """LOAD_REQUESTS REGISTERs spread over `nodes`, sent on schedule at LOAD_RATE whatever the
    earlier answers; every other request of a node un-REGISTERs a contact registered before the
    load. g1 is SIGKILLed KILL_AT s in."""
    plan = []
    for i in range(LOAD_REQUESTS):
        address = PHONE_ADDRESSES[i % 5]
        plan.append((nodes[i % len(nodes)], users[i % len(users)], address,
                     f"{address}:{20000 + 1000 * tag + i}", (i // len(nodes)) % 2 == 1))
    for node, user, address, contact, unregister in plan:
        if unregister:
            assert register(net, node, user, address, contact, 600) == 200
    answers: list[Answer] = []
    start = time.monotonic()
    killed: list[float] = []

    def kill():
        killed.append(time.monotonic() - start)
        net.galera[0].kill()

    def one(node, user, address, contact, unregister):
        sent = time.monotonic()
        code = register(net, node, user, address, contact, 0 if unregister else 600)
        answers.append(Answer(node.index + 1, user, f"sip:{user}@{contact}", unregister,
                              round(sent - start, 2), round(time.monotonic() - sent, 2), code))

    timer = threading.Timer(KILL_AT, kill)
    timer.start()
    with ThreadPoolExecutor(max_workers=100) as pool:
        sending = []
        for i, request in enumerate(plan):
            time.sleep(max(0.0, start + i / LOAD_RATE - time.monotonic()))
            sending.append(pool.submit(one, *request))
        for request in sending:
            request.result()                 # a phone's own failure is the test's
    timer.join()
    assert killed and len(answers) == LOAD_REQUESTS
    return Load(start, killed[0], sorted(answers, key=lambda a: a.sent))


def stored_in_database(net) -> set[tuple[str, str]]:
    """(user, contact) of every location row, read on g2 and g3 once each has applied every
    write it has seen (wsrep_sync_wait): they must agree."""
    sql = "SET SESSION wsrep_sync_wait = 1; SELECT username, contact FROM location;"
    seen = [{(r[0], r[1]) for r in rows(net, g, sql)} for g in (1, 2)]
    assert seen[0] == seen[1], f"g2 and g3 differ: {sorted(seen[0] ^ seen[1])[:10]}"
    return seen[0]


def in_memory(node) -> set[tuple[str, str]]:
    """(user, contact) of every contact in a node's usrloc (ul.dump)."""
    reply = node.rpc([("ul.dump", [])], timeout=20)[0]
    out = set()
    for domain in reply["result"]["Domains"]:
        for record in domain["Domain"]["AoRs"]:
            info = record["Info"]
            out |= {(info["AoR"], c["Contact"]["Address"]) for c in info["Contacts"]}
    return out


def stored_in_memory(net) -> set[tuple[str, str]]:
    """dmq mode: (user, contact) on every node, once they all agree (replication takes ms)."""
    def agreed():
        seen = [in_memory(n) for n in net.nodes]
        return seen[0] if seen[0] == seen[1] == seen[2] else None
    return {(aor.removeprefix("sip:").split("@")[0], contact)
            for aor, contact in wait_for(agreed, 10, "the nodes to hold the same contacts", interval=0.5)}


def mismatches(answers: list[Answer], stored: set[tuple[str, str]]) -> dict[str, list[Answer]]:
    """Each answer against the table: what it said and what is there must agree."""
    out: dict[str, list[Answer]] = {"stored but answered an error": [], "answered 200 but not stored": [],
                                    "un-REGISTER answered an error but gone": [],
                                    "un-REGISTER answered 200 but still there": []}
    for a in answers:
        there = (a.user, a.contact) in stored
        if a.code is None:
            continue                         # no answer: the phone does not know, either is right
        if a.unregister and a.code == 200 and there:
            out["un-REGISTER answered 200 but still there"].append(a)
        elif a.unregister and a.code != 200 and not there:
            out["un-REGISTER answered an error but gone"].append(a)
        elif not a.unregister and a.code == 200 and not there:
            out["answered 200 but not stored"].append(a)
        elif not a.unregister and a.code != 200 and there:
            out["stored but answered an error"].append(a)
    return out


def summary(load: Load) -> dict:
    codes: dict[str, int] = {}
    for a in load.answers:
        codes[str(a.code)] = codes.get(str(a.code), 0) + 1
    window = [a for a in load.answers if a.took > IN_THE_WINDOW_S]
    return {"answers": codes, "kill_at_s": round(load.killed, 2), "in_the_window": len(window),
            "window_unregisters": sum(1 for a in window if a.unregister),
            "window_answers": sorted({str(a.code) for a in window}),
            "slowest_s": max(a.took for a in load.answers)}


def test_a_galera_server_lost_under_register_load_every_answer_matches_the_table(net, db):
    k1, k2, k3 = net.nodes
    users = add_subscribers(net, "71", 40)
    # the control: k3 again, but its only database is g1 (no failover)
    control = net.start_node(2, database_mode(0, failover=[]))
    net.wait_joined()
    stop, control_results, writes = threading.Event(), [], {0: [], 1: []}

    def control_load():
        phone = net.caller(users[0], control.sip, PHONE_ADDRESSES[5])
        phone.timeout = 2.0
        while not stop.is_set():
            reply = phone.register(f"{PHONE_ADDRESSES[5]}:9000", expires=600)
            control_results.append((time.monotonic(), None if reply is None else status(reply)))
            time.sleep(0.05)

    def subscriber_writes(index: int):
        n = 0
        while not stop.is_set():
            user = f"7{2 + index}{n:02d}"
            sent = time.monotonic()
            done = net.kamctl(index, "add", user, PASSWORD)    # through g1 (killed) or g2
            # kamctl exits 0 even when its INSERT failed: its "added" line is the acknowledgment
            writes[index].append((user, f"new user '{user}' added" in done.stdout, done.stdout + done.stderr,
                                  time.monotonic() - sent))
            n += 1

    threads = [threading.Thread(target=control_load),
               *(threading.Thread(target=subscriber_writes, args=(i,)) for i in (0, 1))]
    for t in threads:
        t.start()
    try:
        load = register_load(net, [k1, k2], users, tag=1)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    killed = load.started + load.killed
    wrong = mismatches(load.answers, stored_in_database(net))
    FIGURES["database"] = summary(load)
    assert not any(wrong.values()), {k: v for k, v in wrong.items() if v}
    # the kill was inside the load: some answers waited for the view change
    assert FIGURES["database"]["in_the_window"], "no REGISTER was in flight during the view change"
    # and both nodes moved on: everything sent well after the kill is answered 200
    late = [a for a in load.answers if a.sent > load.killed + 6]
    assert late and all(a.code == 200 for a in late), [a for a in late if a.code != 200]

    # kamctl: "added" means stored on both survivors; through g2 (which stays) every answer is
    # right; through g1 a write whose INSERT reached the cluster while g1 died is told "failed"
    # (its mysql client lost the connection before the OK: nobody can tell it then)
    def subscribers_on(g: int, prefix: str) -> set[str]:
        return {r[0] for r in rows(net, g, f"SET SESSION wsrep_sync_wait = 1; SELECT username FROM subscriber "
                                           f"WHERE username LIKE '{prefix}%';")}

    for index, prefix in ((0, "72"), (1, "73")):
        stored = subscribers_on(1, prefix)
        assert stored == subscribers_on(2, prefix)
        added = {u for u, ok, _, _ in writes[index] if ok}
        assert added <= stored, f"kamctl said added, not stored: {sorted(added - stored)}"
        refused_but_stored = [(u, out) for u, ok, out, _ in writes[index] if not ok and u in stored]
        if index == 1:
            assert not refused_but_stored, refused_but_stored
        assert all("ERROR 2002" in out or "ERROR 2013" in out for _, out in refused_but_stored), refused_but_stored
        FIGURES[f"kamctl_through_g{index + 1}"] = {"added": len(added), "refused": len(writes[index]) - len(added),
                                                   "refused_but_stored": len(refused_but_stored),
                                                   "slowest_s": round(max(t for *_, t in writes[index]), 2)}
    assert FIGURES["kamctl_through_g2"]["added"] > 0

    # the Python DB layer moved on by itself: a stranger is still "404", not "480 (DB down)"
    caller = net.caller(users[1], k1.sip, PHONE_ADDRESSES[3])
    assert caller.call("79999")[0] == 404
    # the control without failover lost its database with g1
    assert any(code != 200 for t, code in control_results if t > killed + 2)
    # (auth_db cannot check any password without its database: every request is challenged again)
    assert net.caller(users[1], control.sip, PHONE_ADDRESSES[3]).call("79999")[0] == 407
    FIGURES["control_no_failover_registers_failed_after_kill"] = sum(1 for t, code in control_results
                                                                     if t > killed and code != 200)


def without_insert_update(folder: Path) -> None:
    """The control's configuration: kamailio-common.cfg without usrloc's db_insert_update."""
    common = folder / "kamailio-common.cfg"
    text = common.read_text()
    assert INSERT_UPDATE in text, "the fix's modparam is not in kamailio-common.cfg any more"
    common.write_text(text.replace(INSERT_UPDATE, "# (the control: db_insert_update off)"))


def test_control_without_db_insert_update_stored_contacts_are_answered_500(net):
    revive_g1(net)
    users = add_subscribers(net, "74", 40)
    k1 = net.start_node(0, database_mode(0), wait=False, cfg_edit=without_insert_update)
    k2 = net.start_node(1, database_mode(1), wait=False, cfg_edit=without_insert_update)
    for node in (k1, k2):
        node.wait_ready()
    net.wait_joined()
    load = register_load(net, [k1, k2], users, tag=2)
    wrong = mismatches(load.answers, stored_in_database(net))
    FIGURES["control_without_db_insert_update"] = {**summary(load),
                                                   "stored_but_500": len(wrong["stored but answered an error"])}
    assert wrong["stored but answered an error"], "the control did not show the bug: no stored contact answered 500"
    assert {a.code for a in wrong["stored but answered an error"]} == {500}
    assert not wrong["answered 200 but not stored"]


def test_dmq_mode_a_galera_server_lost_under_register_load_every_answer_matches(net):
    revive_g1(net)
    users = add_subscribers(net, "75", 40)
    for i in range(3):
        net.start_node(i, {"database": galera_database(i), "cluster": {"registrations": "dmq"}}, wait=False)
    for node in net.nodes:
        node.wait_ready()
    net.wait_joined()
    k1, k2, _ = net.nodes
    load = register_load(net, [k1, k2], users, tag=3)
    wrong = mismatches(load.answers, stored_in_memory(net))
    FIGURES["dmq"] = summary(load)
    assert not any(wrong.values()), {k: v for k, v in wrong.items() if v}
    assert FIGURES["dmq"]["answers"].get("200", 0) > LOAD_REQUESTS // 2


# --- records (issue 20): one record per call in the Galera database -------------------------


def test_a_call_is_recorded_once_when_its_bye_goes_through_another_node(net, tmp_path):
    """k1 and k2 with records on, their db_cluster over the Galera nodes (k1's first server may
    be the one killed above: acc moves on to the next). The call comes in through the floating
    address, held by k1; the address moves to k2 (as keepalived would move it), and the BYE,
    sent to the Route's address, reaches k2. Records are rows per transaction, so each node
    writes what it handled: the INVITE's row by k1, the BYE's by k2, once each; the kemi_cdr
    view joins them into one record. (Dialog-based CDRs would need the dialog on k2: DMQ
    replication runs no CDR callbacks there, docs/records.md.)"""
    from harness.cluster import FLOATING, SIP_PORT
    from harness.records import acc_rows, cdrs

    class Galera:
        """Queries for the records harness on a Galera node that is up."""
        def query(self, sql: str) -> list[list[str]]:
            alive = next(g for g in net.galera if g.daemon is not None and g.daemon.alive())
            return rows(net, net.galera.index(alive), sql)

    for i in (0, 1):
        net.start_node(i, {"database": galera_database(i), "cluster": {"registrations": "database"},
                           "records": {"enabled": True, "spool_dir": str(tmp_path / f"spool-k{i + 1}")}})
    net.wait_joined()
    for user in ("7801", "7802"):
        assert f"new user '{user}' added" in net.kamctl(1, "add", user, PASSWORD).stdout
    k1, k2 = net.nodes[0], net.nodes[1]
    k1.ns.run(["ip", "addr", "add", f"{FLOATING}/24", "dev", "eth0"])
    try:
        callee = net.callee(PHONE_ADDRESSES[4])
        phone = net.caller("7801", (FLOATING, SIP_PORT), PHONE_ADDRESSES[4])
        assert status(phone.register(callee.contact)) == 200
        caller = net.caller("7802", (FLOATING, SIP_PORT), PHONE_ADDRESSES[5])
        answer, dialog = caller.call("7801")
        assert answer == 200 and dialog.next_hop == (FLOATING, SIP_PORT), (answer, dialog)
        # the floating address moves to k2; the phones learn where it is now (keepalived's
        # gratuitous ARP does that in production)
        k1.ns.run(["ip", "addr", "del", f"{FLOATING}/24", "dev", "eth0"])
        k2.ns.run(["ip", "addr", "add", f"{FLOATING}/24", "dev", "eth0"])
        net.phones.run(["ip", "neigh", "flush", "dev", "eth0"])
        assert caller.bye(dialog) == 200
    finally:
        for node in (k1, k2):
            node.ns.run(["ip", "addr", "del", f"{FLOATING}/24", "dev", "eth0"], check=False)
    db = Galera()
    records = [r for r in acc_rows(db, dialog.call_id)]
    deadline = time.monotonic() + 10
    while len(records) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        records = acc_rows(db, dialog.call_id)
    assert [(r["method"], r["node"], r["sip_code"]) for r in records] == \
        [("INVITE", "1", "200"), ("BYE", "2", "200")], \
        records
    cdr, = cdrs(db, dialog.call_id)
    assert cdr["node"] == "1" and cdr["sip_code"] == "200" and cdr["ended_by"] == "caller", cdr
    assert cdr["end_time"] is not None and float(cdr["duration"]) > 0, cdr
    FIGURES["records"] = {"rows": [(r["method"], r["node"]) for r in records], "duration_s": cdr["duration"]}
