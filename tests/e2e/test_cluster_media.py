"""Cluster (issue 13) with two rtpengines (media.instances, weight 1 each) shared by three
Kamailio nodes, each rtpengine in its own namespace.

- new calls are spread over both; one dies (SIGKILL and its link down: no answer at all):
  new calls go to the other with no 503, the BYE of a call anchored on the dead one is
  answered (and logged) instead of hanging; control: a node that knows only the dead one 503s
- server_id: two nodes whose processes have the same PIDs (each in its own PID namespace,
  as containers are) get each other's rtpengine answers when they share a server_id (the ng
  cookie is server_id_pid_seq): the control; with cluster.node's server_id they never do
"""
from __future__ import annotations

import re
import time

import pytest

from harness import netns
from harness.cluster import PHONE_ADDRESSES, RTPENGINES, ClusterNetwork, closed_after, subscribers

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not netns.supported(), reason="needs root and ip netns")]

FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def net(db, tmp_path_factory):
    with closed_after(ClusterNetwork(tmp_path_factory.mktemp("cluster-media")), FIGURES, "cluster media") as network:
        network.start_rtpengines()
        for i in range(3):
            network.start_node(i, {"media": network.media_tables()}, wait=False)
        for node in network.nodes:
            node.wait_ready()
        network.wait_joined()
        yield network


@pytest.fixture(scope="module")
def users(db):
    return subscribers(db, "56", 10)


def anchor(callee, call_id: str) -> tuple[str, int] | None:
    """(address, port) of the audio in the SDP the callee got for this call (rtpengine's)."""
    for r in callee.requests("INVITE"):
        if r.call_id == call_id:
            c = re.search(r"^c=IN IP4 (\S+)", r.text, re.M)
            m = re.search(r"^m=audio (\d+)", r.text, re.M)
            return (c.group(1), int(m.group(1))) if c and m else None
    return None


def registered_callee(net, user, node, address=PHONE_ADDRESSES[0]):
    callee = net.callee(address)
    phone = net.caller(user, node.sip, address)
    assert phone.register(callee.contact) is not None
    return callee


def test_calls_are_spread_over_both_rtpengines_and_deleted(net, users):
    callee = registered_callee(net, users[0], net.nodes[0])
    caller = net.caller(users[1], net.nodes[0].sip)
    used = []
    for i in range(12):
        node = net.nodes[i % 3]
        answer, dialog = caller.call(users[0], node.sip)
        assert answer == 200, (i, answer)
        used.append(anchor(callee, dialog.call_id)[0])
        assert caller.bye(dialog) == 200
    assert set(used) == set(RTPENGINES), used
    FIGURES["calls_per_rtpengine"] = {a: used.count(a) for a in RTPENGINES}
    for r in net.rtpengines:
        assert r.calls() == []


def test_one_rtpengine_dies_new_calls_go_to_the_other(net, users):
    k1, k2, k3 = net.nodes
    callee = registered_callee(net, users[4], k1, PHONE_ADDRESSES[1])
    caller = net.caller(users[2], k1.sip)
    # a call anchored on each rtpengine, up before the failure
    up = {}
    for _ in range(20):
        answer, dialog = caller.call(users[4], k1.sip)
        assert answer == 200
        where = anchor(callee, dialog.call_id)[0]
        if where in up:
            caller.bye(dialog)
        else:
            up[where] = dialog
        if len(up) == 2:
            break
    assert len(up) == 2, up
    # the control: a node that knows only the first rtpengine
    control = net.start_node(2, {"media": net.media_tables([0])})
    net.wait_joined()
    dead, alive = net.rtpengines
    killed = time.monotonic()
    dead.kill()
    # first the BYE of the call anchored on the dead one, before any new call has found it
    # dead: the delete waits for rtpengine (timeout_ms x retries), then the BYE goes on
    started = time.monotonic()
    assert caller.bye(up[dead.address], wait=8) == 200
    FIGURES["bye_on_dead_rtpengine_s"] = round(time.monotonic() - started, 2)
    assert f"kemi: media: rtpengine delete (BYE relayed) failed" in k1.log()
    assert time.monotonic() - started < 3
    answers, first_ok, slowest = [], None, 0.0
    while time.monotonic() - killed < 5:
        node = (k1, k2)[len(answers) % 2]
        t = time.monotonic()
        answer, dialog = caller.call(users[4], node.sip)
        slowest = max(slowest, time.monotonic() - t)
        answers.append(answer)
        if dialog:
            assert anchor(callee, dialog.call_id)[0] == alive.address
            first_ok = first_ok or time.monotonic() - killed
            assert caller.bye(dialog) == 200
    assert answers and all(a == 200 for a in answers), answers      # never a 503 while one is alive
    FIGURES["first_call_after_rtpengine_kill_s"] = round(first_ok, 2)
    FIGURES["slowest_call_setup_during_failover_s"] = round(slowest, 2)
    FIGURES["calls_during_rtpengine_failover"] = len(answers)
    assert slowest < 2.0
    assert caller.bye(up[alive.address]) == 200
    # and the control node, which knows no other rtpengine: 503
    assert caller.call(users[4], control.sip)[0] == 503


def test_server_ids_keep_the_ng_cookies_of_nodes_apart(net, users):
    """k1 and k2 each in a PID namespace, one SIP worker each, one rtpengine: their first
    offers carry cookies server_id_pid_seq that differ only by server_id."""
    alive = net.rtpengines[1]

    def pair(overrides):
        nodes = [net.start_node(i, {"sip": {"children": 1}, "media": net.media_tables([1]), **overrides},
                                pid_namespace=True) for i in (0, 1)]
        return nodes

    def first_offers(nodes, phone_address, user):
        callee = registered_callee(net, user, nodes[0], phone_address)
        # the second node must know the contact before any call (a call that finds no contact
        # makes no offer, so the waiting keeps both nodes' ng sequence numbers in step)
        deadline = time.monotonic() + 10
        while not nodes[1].contacts(user):
            assert time.monotonic() < deadline, f"k2 never learnt {user}'s contact"
            time.sleep(0.1)
        calls = []
        for node in nodes:
            caller = net.caller(users[3], node.sip)
            answer, dialog = caller.call(user, node.sip)
            assert answer == 200
            calls.append((caller, dialog))
        anchors = [anchor(callee, d.call_id) for _, d in calls]
        sessions = len(alive.calls())
        for caller, dialog in calls:
            caller.bye(dialog)
        return anchors, sessions

    try:
        # the control: no [cluster] on either, so both have Kamailio's default server_id 0; they
        # share contacts through the database (usrloc db_mode 3). (Registering through both
        # instead, with db_mode 1: usrloc's ruid is uloc-<start time>-<pid>-<n> without a
        # server_id, and two nodes started in the same second with the same PIDs collided in
        # the location table: 500, Duplicate entry for ruid_idx. server_id prevents that too.)
        control_anchors, control_sessions = first_offers(
            pair({"cluster": {"enabled": False}, "database": {"usrloc_db_mode": 3}}), PHONE_ADDRESSES[2], users[5])
        FIGURES["shared_server_id"] = {"anchors": control_anchors, "sessions": control_sessions}
        assert control_anchors[0] == control_anchors[1], control_anchors      # k2 got k1's answer
        assert control_sessions == 1
        own = pair({})
        net.wait_joined()
        anchors, sessions = first_offers(own, PHONE_ADDRESSES[3], users[6])
        FIGURES["own_server_id"] = {"anchors": anchors, "sessions": sessions}
        assert anchors[0] != anchors[1] and sessions == 2
    finally:
        for i in (0, 1):
            net.start_node(i, {"media": net.media_tables()})
        net.wait_joined()
