"""make bench's held calls come up through a proxy that stalls: their setup is not a measurement.

The call-held scenarios first set up 100 or 1,000 calls through each Kamailio and keep them
open. That setup used the measured runs' SIPp options: -max_retrans 0 (a request unanswered
for 500 ms fails its call) and no tolerance for a 180 relayed after its 200. One such failure
and SIPp never reaches the count: a full `make bench-debian13` stopped there ("timed out
after 60s waiting for 1000 calls held open through python"). Here the Python Kamailio is
frozen (SIGSTOP) for 1.5 s while the calls are being set up: with the setup's own options
(SIPp retransmits) they all come up; the control, the measurement's -max_retrans 0, fails a
call and the bench says so at once, with SIPp's counters.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bench import run as bench_run
from bench.scenarios import Scenario
from bench.stack import PYTHON_CFG, BenchDatabase, BenchKamailio
from kemi_tools.stack.own_mariadb import OwnMariaDB
from kemi_tools.stack.process import StartError

USERS = 100
HELD = 60
STALL_AFTER_S, STALL_S = 0.6, 1.5    # the callee SIPp starts in 0.3 s


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-held")
    own = OwnMariaDB(bench_run.PORT_BASE + 81, "kemi-held-test").install().start()
    kam = None
    env = bench_run.Env(work / "env", "0-1", "0-1", 2, "tlsf")
    env.workdir.mkdir(parents=True)
    try:
        db = BenchDatabase("kemi_held", work, host=f"127.0.0.1:{own.port}", socket=own.socket)
        db.create(USERS)
        kam = BenchKamailio("python", PYTHON_CFG, bench_run.PORT_BASE + 1, db, work / "python", "0-1", 2,
                            memory_manager="tlsf", count_entries=False)
        db.load_contacts(USERS, USERS, env.callee_port, kam.socket)
        kam.start()
        env.kamailios = {"python": kam}
        yield env, kam
    finally:
        env.stop()
        if kam:
            kam.stop()
        own.remove()


def hold_with_a_stall(env, kam) -> dict:
    """Set up HELD calls through `kam` (as make bench does) while it is frozen for STALL_S;
    the held-calls SIPp's counters."""
    load = bench_run.CallLoad(env, Scenario("held-test", "held calls", "call", contacts=USERS, held_calls=HELD))
    load.hold_rate = 40                 # the setup lasts ~1.5 s: the stall falls inside it
    stalled = threading.Event()

    def stall():
        time.sleep(STALL_AFTER_S)
        os.killpg(kam.daemon.pid, signal.SIGSTOP)
        stalled.set()
        time.sleep(STALL_S)
        os.killpg(kam.daemon.pid, signal.SIGCONT)
    staller = threading.Thread(target=stall)
    try:
        staller.start()
        load.setup()                      # starts the callee SIPp, then holds the calls
        stats = load.held[0].stats()
    finally:
        staller.join()
        load.teardown()
        kam.wait_idle(timeout=30)
    assert stalled.is_set()
    return stats


# Through the stall, Kamailio answers the first INVITE and its retransmission with two 407s;
# the second used to arrive after the INVITE with credentials and was taken for its refusal
# (about 40 of 60 calls failed, then got their 200 as a dead call). uac_call.xml now matches
# each response to its INVITE (start_txn/response_txn) and ignores that late challenge.
def test_held_calls_survive_a_stall(bench_env):
    stats = hold_with_a_stall(*bench_env)
    assert int(stats["CurrentCall"]) == HELD and int(stats["FailedCall(C)"]) == 0
    assert int(stats["Retransmissions(C)"]) > 0          # the stall did hit the setup


def test_control_with_the_measurements_options_a_call_fails(bench_env, monkeypatch):
    monkeypatch.setattr(bench_run, "HOLD_MAX_RETRANS", 0)
    with pytest.raises(StartError, match=r"a call to be held open through python failed: .*FailedCall"):
        hold_with_a_stall(*bench_env)
