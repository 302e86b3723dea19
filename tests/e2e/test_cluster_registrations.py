"""Cluster (issue 13): three Kamailio nodes in namespaces share their location set over DMQ
(dmq_usrloc), with the session's MariaDB for subscribers. docs/cluster.md has the figures.

Each test's control switches the mechanism off on one node and sees the failure it prevents
(no replication -> the call through that node gets 480; no sync -> a rejoined node answers 480).
"""
from __future__ import annotations

import re
import statistics
import time

import pytest

from harness import netns
from harness.cluster import NODES, PHONE_ADDRESSES, ClusterNetwork, closed_after, subscribers
from harness.sbc import wait_until as sbc_wait_until
from harness.sipclient import status

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not netns.supported(), reason="needs root and ip netns")]

FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def net(db, tmp_path_factory):
    with closed_after(ClusterNetwork(tmp_path_factory.mktemp("cluster")), FIGURES, "cluster") as network:
        network.start_nodes()
        network.wait_joined()
        yield network


@pytest.fixture(scope="module")
def users(db):
    return subscribers(db, "5", 60)


def code(reply) -> int | None:
    return None if reply is None else status(reply)


def final_code(caller, callee: str, node, timeout: float = 10) -> int | None:
    """The call's final answer, retried as a phone does while the node answers 503 + Retry-After."""
    deadline = time.monotonic() + timeout
    while True:
        answer, dialog = caller.call(callee, node.sip)
        if dialog is not None:
            caller.bye(dialog)
        if answer != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(1)


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """harness.sbc's, polling every 50 ms: propagation is timed with it"""
    return sbc_wait_until(check, timeout, what, interval)


def test_a_phone_registered_through_one_node_is_called_through_every_node(net, users):
    k1, k2, k3 = net.nodes
    callee = net.callee(PHONE_ADDRESSES[0])
    phone = net.caller(users[0], k1.sip, PHONE_ADDRESSES[0])
    assert code(phone.register(callee.contact)) == 200
    caller = net.caller(users[1], k2.sip)
    for node in (k2, k3, k1):
        dialog, _ = wait_until(lambda node=node: caller.call(users[0], node.sip)[1], 10,
                               f"a call through k{node.index + 1}")
        assert caller.bye(dialog) == 200
    assert len(callee.requests("INVITE")) >= 3

    # propagation: the time from node A's 200 OK until node B lists the binding (a REGISTER
    # without Contact asks B; resolution one query round trip)
    delays = []
    probe = net.caller(users[2], k2.sip)
    for i, user in enumerate(users[10:40]):
        origin, other = (k1, k2) if i % 2 == 0 else (k3, k1)
        reg = net.caller(user, origin.sip, PHONE_ADDRESSES[1])
        assert code(reg.register(f"{PHONE_ADDRESSES[1]}:{7000 + i}")) == 200
        done = time.monotonic()
        probe.user = user
        _, took = wait_until(lambda: f"sip:{user}@{PHONE_ADDRESSES[1]}:{7000 + i}" in (probe.bindings(user, other.sip) or []),
                             5, f"{user}'s binding on k{other.index + 1}", interval=0)
        delays.append(took * 1000)
    delays.sort()
    FIGURES["propagation_ms_p50"] = round(statistics.median(delays), 1)
    FIGURES["propagation_ms_p99"] = round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1)
    FIGURES["propagation_samples"] = len(delays)
    assert delays[-1] < 1000, delays


def test_unregister_and_expiry_on_one_node_remove_the_contact_everywhere(net, users):
    k1, k2, k3 = net.nodes
    callee = net.callee(PHONE_ADDRESSES[2])
    phone = net.caller(users[3], k1.sip, PHONE_ADDRESSES[2])
    caller = net.caller(users[4], k3.sip)
    assert code(phone.register(callee.contact)) == 200
    wait_until(lambda: caller.call(users[3], k3.sip)[1], 10, "the call through k3")
    # un-REGISTER through another node than the one that saved it
    assert code(phone.register(callee.contact, expires=0, server=k2.sip)) == 200
    for node in (k1, k3):
        wait_until(lambda node=node: not node.contacts(f"{users[3]}"), 5, f"the contact gone from k{node.index + 1}")
        assert final_code(caller, users[3], node) == 480
    # expiry: nobody tells the peers; each node expires the replicated contact by itself
    short = net.caller(users[5], k2.sip, PHONE_ADDRESSES[2])
    assert code(short.register(callee.contact, expires=2)) == 200
    wait_until(lambda: k1.contacts(users[5]), 5, "the short contact on k1")
    time.sleep(2.5)
    for node in (k1, k2, k3):
        assert final_code(caller, users[5], node) == 480


def test_contacts_of_one_aor_on_several_nodes_fork(net, users):
    k1, k2, k3 = net.nodes
    desk, mobile = net.callee(PHONE_ADDRESSES[3]), net.callee(PHONE_ADDRESSES[4], answer=486)
    assert code(net.caller(users[6], k1.sip, PHONE_ADDRESSES[3]).register(desk.contact)) == 200
    assert code(net.caller(users[6], k2.sip, PHONE_ADDRESSES[4]).register(mobile.contact)) == 200
    wait_until(lambda: len(k3.contacts(users[6])) == 2, 5, "both contacts on k3")
    caller = net.caller(users[7], k3.sip)
    answered, dialog = caller.call(users[6], k3.sip)
    assert answered == 200
    assert caller.bye(dialog) == 200
    assert len(desk.requests("INVITE")) == 1 and len(mobile.requests("INVITE")) == 1


def test_control_a_node_without_replication_answers_480(net, users):
    """The same node with [cluster] off: a phone registered through k1 is unknown to it."""
    k1 = net.nodes[0]
    callee = net.callee(PHONE_ADDRESSES[5])
    assert code(net.caller(users[8], k1.sip, PHONE_ADDRESSES[5]).register(callee.contact)) == 200
    k3 = net.start_node(2, {"cluster": {"enabled": False}})
    try:
        caller = net.caller(users[9], k3.sip)
        assert final_code(caller, users[8], k3) == 480
        assert not callee.requests("INVITE")
    finally:
        net.start_node(2)
        net.wait_joined()


RESYNC_CONTACTS = 10_000


def test_a_rejoining_node_gets_the_full_location_set_before_it_answers_480(net, users):
    """k3 crashes (SIGKILL) and comes straight back while its peers still list it as active
    (the 5.x 'sync from a node still marked active/disabled' trap): it asks for the whole
    location set, answers 503 + Retry-After meanwhile, never 480 for a registered phone."""
    k1, k2, k3 = net.nodes
    callee = net.callee(PHONE_ADDRESSES[6])
    assert code(net.caller(users[11 + 40], k1.sip, PHONE_ADDRESSES[6]).register(callee.contact)) == 200
    # paced: each replicated contact holds a tm transaction per peer until the peer answers,
    # and 3,000 ul.add at full speed exhausted the default 64 MB of shm (measured)
    for batch in range(0, RESYNC_CONTACTS, 500):
        k1.add_contacts(500, first=100000 + batch)
        wait_until(lambda: k2.contact_count() >= k1.contact_count(), 30, "k2 to catch up", interval=0.1)
    total = k1.contact_count()
    wait_until(lambda: k2.contact_count() == total == k3.contact_count(), 60, "the contacts on k2 and k3")
    k3.kill()
    started = time.monotonic()
    net.start_node(2, wait=False)
    k3 = net.nodes[2]
    k3.wait_ready()
    answering = time.monotonic() - started
    caller = net.caller(users[12 + 40], k3.sip)
    answers = []
    while True:
        answer, dialog = caller.call(users[11 + 40], k3.sip)
        answers.append(answer)
        if dialog:
            caller.bye(dialog)
            break
        assert answer == 503, answers
        assert time.monotonic() - started < 60, answers
        time.sleep(0.2)
    first_call = time.monotonic() - started
    wait_until(lambda: k3.contact_count() >= total, 30, "k3 to hold every contact", interval=0.02)
    synced = time.monotonic() - started
    FIGURES["resync_contacts"] = total
    FIGURES["resync_answering_s"] = round(answering, 2)
    FIGURES["resync_first_call_s"] = round(first_call, 2)
    FIGURES["resync_all_contacts_s"] = round(synced, 2)
    FIGURES["resync_503s"] = answers.count(503)
    assert k1.alive() and k2.alive()           # the donors survived the sync of a node they had listed


def active_transactions(node) -> int:
    reply = node.rpc([("stats.get_statistics", ["tmx:"])])[0]
    m = re.search(r"active_transactions\s*=\s*(\d+)", " ".join(reply.get("result", [])))
    assert m, f"k{node.index + 1}: no tmx:active_transactions in {reply}"
    return int(m.group(1))


def wait_donors_quiet(donors, quiet_s: float = 1.0, timeout: float = 90) -> None:
    """dmq_usrloc asks EVERY peer for the full location set: the rejoined node held every contact
    after the first donor's batches while the other may still have been sending. A node started
    meanwhile on the same address gets the rest (and knows the contacts without a sync of its own).
    Wait until no donor has a transaction in flight for quiet_s."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        if all(active_transactions(node) == 0 for node in donors):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        time.sleep(0.1)
    raise AssertionError(f"the donors still had transactions in flight after {timeout} s")


def test_control_without_sync_a_rejoined_node_answers_480(net, users):
    wait_donors_quiet(net.nodes[:2])           # the previous test's full sync has ended
    k3 = net.start_node(2, {"cluster": {"sync": False, "sync_wait": 3}})
    try:
        caller = net.caller(users[12 + 40], k3.sip)
        assert final_code(caller, users[11 + 40], k3) == 480
        assert k3.contact_count() < net.nodes[0].contact_count()
    finally:
        net.start_node(2)
        net.wait_joined()


def test_trap_save_flag_0x04_the_replaced_contact_goes_on_every_node(net, users):
    """kamailio#1445: with save(..., 0x04) a REGISTER replaces the AOR's other contacts where
    it is saved, and the peers kept the old one. kemi saves with flags 0; a site router with
    0x04 (tests/e2e/routers/save_flags_router.py) must see the replaced contact gone everywhere."""
    from harness import stack as harness_stack
    routers = str(harness_stack.project_file("tests", "e2e", "routers"))
    replacing = {"python": {"router": "save_flags_router:ReplaceContactsRouter", "path": [routers]}}
    try:
        k1, k2 = net.start_node(0, replacing), net.start_node(1, replacing)
        net.wait_joined()
        user = users[20 + 40 - 1]
        first, second = f"{PHONE_ADDRESSES[0]}:6100", f"{PHONE_ADDRESSES[0]}:6101"
        assert code(net.caller(user, k1.sip, PHONE_ADDRESSES[0]).register(first)) == 200
        wait_until(lambda: k2.contacts(user) == [f"sip:{user}@{first}"], 5, "the first contact on k2")
        assert code(net.caller(user, k2.sip, PHONE_ADDRESSES[0]).register(second)) == 200
        wait_until(lambda: k2.contacts(user) == [f"sip:{user}@{second}"], 5, "k2 to keep only the second")
        wait_until(lambda: k1.contacts(user) == [f"sip:{user}@{second}"], 5, "k1 to keep only the second")
        time.sleep(1)
        assert k1.contacts(user) == [f"sip:{user}@{second}"]
        FIGURES["trap_0x04_replaced_contact_on_peer"] = k1.contacts(user)
    finally:
        net.start_node(0)
        net.start_node(1)
        net.wait_joined()
