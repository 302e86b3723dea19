"""Overload (issue 21): three times what Kamailio can serve, for 20 s, with the early refusal
([overload], pipelimit's NETWORK pipe, kemi/overload/) on, and its CONTROL with it off.

Capacity is pinned by the router (tests/e2e/routers/capacity_router.py: 10 ms per new request,
2 SIP workers, so at most 200 new requests a second), so 3x is a known rate on a shared
machine. The load (bench/soak/overload.py) is REGISTERs without credentials, one try each
(no retransmissions): each is served (its 401 challenge), refused (503 + Retry-After) or left
unanswered (the caller times out). docs/reliability.md has the figures.

On: nearly every caller gets an answer (the challenge or a 503 with Retry-After), Kamailio
answers OPTIONS nearly all along, the served are served fast, and within 5 s of the load
stopping a new registration is served at normal latency. Not every caller: pipelimit looks at
the queues once a second, so in the second after they drained everything is admitted and the
kernel drops what overflows the socket buffer (measured: 8-12 % unanswered, 1-2 OPTIONS in 25).
Off (CONTROL): no 503; callers go unanswered or wait in the socket queue: the collapse the
refusal prevents.

The health socket (overload.health_listen, its own worker) is probed beside the SIP socket in
both runs: it answers all but at most one probe promptly (within PROMPT_S), and in the run with
the refusal off, where at most half of the SIP socket's probes are answered that promptly (its
CONTROL: they wait in the socket queue behind the load, ~2 s), it still does.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from bench.soak.overload import Watcher, answered_within, describe_probes, offer, options_latency, probe
from harness import stack as harness_stack

CAPACITY = 200                  # new requests a second: 2 workers x (1 / 10 ms)
OVERLOAD = 3
SECONDS = 20
ANSWER_WAIT_S = 3.0
RECOVERY_LIMIT_S = 5.0          # the issue: a new registration succeeds within 5 s of the load
NORMAL_LATENCY_S = 0.25         # a served REGISTER when idle takes ~10-20 ms; headroom for a busy box
SERVED_P99_LIMIT_S = 1.5        # refusing keeps the socket queue short (measured ~0.7 s; off: ~2 s and more)
HEALTH_EVERY_S = 0.5
# callers left without any answer: on, the once-a-second look lets some overflow (measured 8 %);
# off, most of them (measured 90 %)
UNANSWERED_ON, UNANSWERED_OFF = 0.20, 0.50
# OPTIONS to the server's SIP socket answered (within OPTIONS_TIMEOUT_S) during the load: on,
# measured 23/25 and 27/28
HEALTH_ON = 0.8
OPTIONS_TIMEOUT_S = 2.0
# "answered promptly": the health socket, overload.health_listen, answers all but at most one
# probe within this in both runs; off, at most half of the SIP socket's probes are (they wait
# in the queue ~2 s: measured 2/10 and 7/10 answered at all within 2 s, so counting answers
# alone was a race against the queue's length)
PROMPT_S, PROMPT_OFF = 0.5, 0.5


def _overload_run(kamailio_factory, enabled: bool, results_dir) -> dict:
    routers = str(harness_stack.project_file("tests", "e2e", "routers"))
    health_address = ("127.0.0.1", harness_stack.kamailio_port())
    proxy = kamailio_factory({
        "python": {"router": "capacity_router:CapacityRouter", "path": [routers]},
        # one source sends it all: pike's flood limit out of the way (make bench does the same)
        "security": {"flood_requests": 65535},
        # the health socket in both runs: its own worker, whatever the SIP socket's queue holds
        "overload": {"enabled": enabled, "health_listen": f"{health_address[0]}:{health_address[1]}"},
    }, name=f"overload-{'on' if enabled else 'off'}")
    before = probe(proxy.address)
    assert before is not None and before[0] == 401, f"an idle proxy must challenge a REGISTER: {before}"
    assert options_latency(health_address) is not None, "the idle proxy's health socket must answer OPTIONS"
    # OPTIONS to the SIP socket the load goes to, and to the health socket: seconds to each answer
    watcher = Watcher(proxy.address, HEALTH_EVERY_S, OPTIONS_TIMEOUT_S, limit=200)
    health_watcher = Watcher(health_address, HEALTH_EVERY_S, OPTIONS_TIMEOUT_S, limit=200)
    result: dict = {}
    loader = threading.Thread(target=lambda: result.update(
        outcome=offer(proxy.address, CAPACITY * OVERLOAD, SECONDS, answer_wait=ANSWER_WAIT_S)), daemon=True)
    watcher.start()
    health_watcher.start()
    started = time.monotonic()
    loader.start()
    time.sleep(SECONDS)
    watcher.stop()
    health_watcher.stop()
    # recovery: from the moment the load stops, a new REGISTER every 0.25 s until one is served fast
    recovered_after = None
    deadline = started + SECONDS + 3 * RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        got = probe(proxy.address, timeout=1.0)
        if got and got[0] == 401 and got[1] <= NORMAL_LATENCY_S:
            recovered_after = time.monotonic() - (started + SECONDS)
            break
        time.sleep(0.25)
    loader.join(SECONDS + 30)
    health, health_socket = watcher.result(), health_watcher.result()
    summary = result["outcome"].summary()
    summary.update(overload_enabled=enabled, capacity=CAPACITY,
                   recovered_after_s=None if recovered_after is None else round(recovered_after, 2),
                   health_options=describe_probes(health, PROMPT_S),
                   health_socket_options=describe_probes(health_socket, PROMPT_S),
                   alive=proxy.alive())
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"overload-{'on' if enabled else 'off'}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\noverload {'on' if enabled else 'off'}: {json.dumps(summary)}")
    summary["_health"] = health
    summary["_health_socket"] = health_socket
    summary["_log"] = proxy.log()
    return summary


@pytest.fixture
def results_dir(tmp_path):
    return tmp_path / "results"


def test_three_times_capacity_is_refused_early_and_recovers_at_once(kamailio_factory, results_dir):
    s = _overload_run(kamailio_factory, True, results_dir)
    assert s["alive"], "Kamailio exited under overload"
    assert answered_within(s["_health"], OPTIONS_TIMEOUT_S) >= HEALTH_ON * len(s["_health"]), \
        f"OPTIONS went unanswered: {s['health_options']}"
    assert _all_but_one(s["_health_socket"]), f"the health socket missed probes: {s['health_socket_options']}"
    assert s["refused_503"] > 0, f"nothing was refused at {OVERLOAD}x capacity: {s}"
    assert s["refused_503_without_retry_after"] == 0, s
    assert s["unanswered_share"] <= UNANSWERED_ON, f"callers timed out although the refusal is on: {s}"
    assert s["served"] >= CAPACITY * SECONDS * 0.25, f"too little was served under overload: {s}"
    assert s["served_p99_ms"] <= SERVED_P99_LIMIT_S * 1000, s
    assert s["recovered_after_s"] is not None and s["recovered_after_s"] <= RECOVERY_LIMIT_S, s
    assert "kemi: overload:" in s["_log"], "the refusals were not logged"
    assert "Traceback" not in s["_log"]


def test_control_without_the_refusal_callers_time_out(kamailio_factory, results_dir):
    """CONTROL: the same load with [overload] off: no 503, and callers are left unanswered or
    wait in the socket queue (what the test above proves the refusal prevents)."""
    s = _overload_run(kamailio_factory, False, results_dir)
    assert s["alive"]
    assert s["refused_503"] == 0 and s["refused_503_without_retry_after"] == 0, s
    collapsed = s["unanswered_share"] > UNANSWERED_OFF or (s["served_p99_ms"] or 0) > SERVED_P99_LIMIT_S * 1000
    assert collapsed, f"without the refusal the overload did no harm: the test proves nothing: {s}"
    # the health socket's own worker answers at once while the SIP socket's probes wait in its
    # queue behind the load or are dropped
    assert answered_within(s["_health"], PROMPT_S) <= PROMPT_OFF * len(s["_health"]), \
        f"the SIP socket answered its probes promptly: the health socket's contrast proves nothing: " \
        f"{s['health_options']}"
    assert _all_but_one(s["_health_socket"]), f"the health socket missed probes: {s['health_socket_options']}"


def _all_but_one(latencies: list[float | None]) -> bool:
    """All probes but at most one answered within PROMPT_S."""
    return len(latencies) >= 10 and answered_within(latencies, PROMPT_S) >= len(latencies) - 1
