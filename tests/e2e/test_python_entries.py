"""Entries into Python, counted live per callback (metrics.count_python_entries).

A real Kamailio counts what its workers hand to Python: these are the numbers `make bench`
reports per call and per registration (docs/benchmark.md).
"""
import re

import pytest

from harness import stack
from harness.stack import free_port

COUNTING = {"metrics": {"count_python_entries": True}}
ENTRY_LINE = re.compile(r"kemi_entries_(\w+) = (\d+)")


def entries(proxy) -> dict[str, int]:
    """callback -> entries so far, from Kamailio's statistics (kamcmd)."""
    return {name: int(n) for name, n in ENTRY_LINE.findall(proxy.kamcmd("stats.get_statistics", "all"))}


def delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


@pytest.fixture
def proxy(kamailio_factory, request):
    """The proxy `phones` use: counting entries, unless a test asks for other settings."""
    return kamailio_factory(getattr(request, "param", COUNTING))


def register_and_call(db, proxy, phones, caller: str, callee: str) -> tuple[dict, dict]:
    """(entries for the callee's registration, entries for one call caller -> callee)."""
    db.add_subscriber(callee)
    db.add_subscriber(caller)
    callee_port, caller_port = free_port(), free_port()
    start = entries(proxy)
    # every callback declared (the start's OPTIONS probe has entered request_route already)
    assert set(start) == {"request_route", "on_sl_reply", "branch_manage", "onreply_manage",
                          "failure_manage", "xhttp_event", "topos_event", "other"}, start
    reg = phones.register(callee, callee_port)
    assert reg.finals == [200], reg.stdout[-2000:]
    registered = entries(proxy)
    assert phones.register(caller, caller_port).finals == [200]
    before = entries(proxy)
    uas = phones.callee(callee_port)
    call = phones.call(caller, callee, local_port=caller_port)
    uas.wait()
    assert call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]
    return delta(start, registered), delta(before, entries(proxy))


def test_a_registration_and_a_call_are_counted_per_callback(db, proxy, phones):
    registration, call = register_and_call(db, proxy, phones, "2402", "2401")
    print(f"\nentries into Python: registration {registration}, call {call}")
    # the challenged REGISTER and the authenticated one
    assert registration == {"request_route": 2}
    # INVITE (challenged: sl absorbs the ACK of its 407 before any routing), INVITE with
    # credentials, ACK, BYE; no media, nobody NATed: no reply, branch or failure route to enter
    assert call == {"request_route": 4}


SIDES_ROUTER = {**COUNTING, "python": {"router": "sides_router:SidesRouter",
                                       "path": [str(stack.project_file("tests", "e2e", "routers"))]}}


@pytest.mark.parametrize("proxy", [SIDES_ROUTER], indirect=True)
def test_control_a_router_with_its_own_reply_route_enters_it_for_each_reply(db, proxy, phones):
    """The counter sees the reply route when it is armed: a subclass overriding onreply_manage
    (and branch_manage) gets both on every call; 180 and 200 each enter the reply route."""
    _registration, call = register_and_call(db, proxy, phones, "2422", "2421")
    assert call == {"request_route": 4, "onreply_manage": 2, "branch_manage": 2}, call


@pytest.mark.parametrize("proxy", [{}], indirect=True)
def test_control_without_the_setting_nothing_is_counted(db, proxy, phones):
    db.add_subscriber("2411")
    assert phones.register("2411", free_port()).finals == [200]
    assert entries(proxy) == {}
    assert "kemi_entries" not in proxy.kamcmd("stats.get_statistics", "all")
