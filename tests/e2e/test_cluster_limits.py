"""Call limits in a cluster (kemi/limits/, docs/sbc.md "Call limits"): two Kamailio nodes in
namespaces, each counting a subscriber's calls made through EITHER node (the dialog module's
dialogs and profiles replicated over DMQ, limits.shared).

A caller with a limit of 2 has one call up through k1 and one through k2: a third call is refused
on both nodes; one hung up on k1, the next one through k2 is accepted. Control: limits.shared =
false, each node counts only its own calls: the third call through k1 goes through (3 calls
up, limit 2).
"""
from __future__ import annotations

import re

import pytest

from harness import netns
from harness.cluster import PHONE_ADDRESSES, ClusterNetwork, closed_after, subscribers
from harness.sbc import wait_until
from harness.sipclient import status

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not netns.supported(), reason="needs root and ip netns")]

FIGURES: dict[str, object] = {}
LIMIT = 2


@pytest.fixture(scope="module")
def net(db, tmp_path_factory):
    with closed_after(ClusterNetwork(tmp_path_factory.mktemp("cluster-limits"), nodes=2), FIGURES,
                      "cluster limits") as network:
        yield network


@pytest.fixture(scope="module")
def users(db):
    return subscribers(db, "58", 4)


def caller_calls(node, user: str) -> int:
    out = node.kamcmd("dlg.profile_get_size", "kemi_caller", user)
    m = re.fullmatch(r"\s*(\d+)\s*", out)          # kamcmd prints the number alone
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control-per-node"])
def test_a_caller_limit_counts_the_calls_of_every_node(net, users, shared):
    caller_user, callee_user = (users[0], users[1]) if shared else (users[2], users[3])
    net.start_nodes({"limits": {"caller_calls": LIMIT, "shared": shared}})
    net.wait_joined()
    k1, k2 = net.nodes
    callee = net.callee(PHONE_ADDRESSES[0])
    phone = net.caller(callee_user, k1.sip, PHONE_ADDRESSES[0])
    assert status(phone.register(callee.contact)) == 200
    wait_until(lambda: k2.contacts(callee_user), 5, "the callee's contact on k2")
    caller = net.caller(caller_user, k1.sip, PHONE_ADDRESSES[1])
    first = caller.call(callee_user, k1.sip)
    assert first[0] == 200, first
    second = caller.call(callee_user, k2.sip)
    assert second[0] == 200, second
    if not shared:
        # control: each node knows only its own call, so a third one through k1 is admitted
        assert (caller_calls(k1, caller_user), caller_calls(k2, caller_user)) == (1, 1)
        third = caller.call(callee_user, k1.sip)
        assert third[0] == 200, third
        for _code, dialog in (first, second, third):
            assert caller.bye(dialog) == 200
        return
    _, took = wait_until(lambda: caller_calls(k1, caller_user) == caller_calls(k2, caller_user) == LIMIT, 5,
                         "both nodes to count both calls", interval=0.02)
    FIGURES["a call counted on the other node within (s)"] = round(took, 3)
    for node in (k1, k2):
        refused, _ = caller.call(callee_user, node.sip)
        assert refused == 486, f"k{node.index + 1}: {refused}"
    assert caller.bye(first[1]) == 200                 # hung up through k1
    _, took = wait_until(lambda: caller_calls(k2, caller_user) == LIMIT - 1, 5, "k2 to see the BYE on k1",
                         interval=0.02)
    FIGURES["a BYE on one node released on the other within (s)"] = round(took, 3)
    fourth = caller.call(callee_user, k2.sip)
    assert fourth[0] == 200, fourth
    for _, dialog in (second, fourth):
        assert caller.bye(dialog) == 200
    wait_until(lambda: caller_calls(k1, caller_user) == caller_calls(k2, caller_user) == 0, 5,
               "every count released on both nodes")
    limited = [line for node in (k1, k2) for line in node.log().splitlines() if "kemi: limits:" in line]
    assert len(limited) == 2 and all(f"caller {caller_user} has 2 calls (limit 2)" in line for line in limited)
