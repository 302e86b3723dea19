"""`make bench`: the Python routing against the same routing in native cfg, side by side.

    python3 -m bench [--scenarios a,b] [--budget SECONDS] [--quick] [--out DIR]

Starts MariaDB (or reuses a running one), two Kamailios pinned to one CPU (native cfg and
the Python package, same settings and modules, each with its own database holding the same
10,000 subscribers and preloaded contacts) and SIPp on the other CPU. For each scenario
(bench/scenarios.py) it offers stepped call rates to both, alternating native and Python
at every step, until calls fail; confirms the highest clean rate of each with repeated
runs; compares response times and Kamailio CPU per call at the highest rate both pass
(median of three runs each); and measures per-request route time from Kamailio's
latency_cfg_log lines. It prints a table and writes JSON, Markdown and a PNG plot
(bench/results/). Everything it started is stopped by PID when it ends.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kemi.settings import PROJECT_ROOT
from kemi_tools.capture import SipTimes
from kemi_tools.sipp import Sipp
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import Daemon, StartError, wait_for

from bench import report
from bench.load import RunResult, client, mean, percentile, server
from bench.scenarios import SUBSCRIBERS, Scenario, select
from bench.stack import (CALLER_IP, DOMAIN, NATIVE_CFG, PASSWORD, PRIVATE_GATEWAYS, PUBLIC_GATEWAY,
                         PYTHON_CFG, SBC_PUBLIC, BenchDatabase, BenchKamailio, extension, media_table,
                         rtpengine_daemon, start_rtpengine)

CONFIGS = ("native", "python")
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT + 500     # clear of the tests' ports in the same slot
# rtpengine's relay ports: the slot's media range, as the media tests use it (tests/harness/media.py)
MEDIA_PORT_MIN = 20000 + 2000 * SLOT if SLOT <= 5 else 6000 + 2000 * (SLOT - 6)     # as tests/harness/media.py
MEDIA_PORT_MAX = MEDIA_PORT_MIN + 1999
DEFAULT_BUDGET_S = 18 * 60                 # `make bench` must end within 20 minutes: each scenario
                                           # may overrun its share by one comparison (<= 60 s)
RUN_SECONDS = 3.0                          # offered load per run
REPEATS = 3                                # runs per reported point (median)
# runs after the ladder, per config: REPEATS at the compared rate, a capture, a route-time run.
# Their time is kept out of the ladder's share, or the last scenarios get no ladder at all
TAIL_RUNS = REPEATS + 2
# rates offered, as multiples of the native capacity estimated from the probe's CPU per call
LADDER = (0.6, 0.75, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.5)
# when even the ladder's first rate fails (DB-bound scenarios use less CPU than they can
# take), step down by this factor, at most DOWN_STEPS times
DOWN_FACTOR, DOWN_STEPS = 0.7, 3
BISECT_ABOVE = 1.12                        # bisect a clean/failed gap wider than 12%
MIN_RATE, MAX_RATE = 20, 6000
SIPP_SATURATED = 0.85                      # SIPp CPU share above which SIPp may be the limit
MARGINAL_FAILURES = 0.005                  # failed share of calls a step may have once
HOLD_FOREVER_MS = 3_600_000
# the held calls' setup (not measured): SIPp's usual retransmissions and timeouts
HOLD_MAX_RETRANS, HOLD_RECV_TIMEOUT_MS = 5, 10_000
# measured calls stay up this long: with no pause, the BYE can overtake the ACK through
# the proxy's parallel workers and the callee SIPp fails the call
CALL_HOLD_MS = 100
# the proxy's workers may relay the callee's 180 after its 200 (they run in parallel); a phone
# ignores such a late 180, and so does SIPp here instead of failing the call. A wrong answer
# still fails it: the expected message then never comes (recv timeout), or it is a refusal
# (the scenarios' fail_refused)
TOLERATE_LATE_REPLIES = ["-default_behaviors", "all,-abortunexp"]
# the Expires of the measured REGISTERs (refreshes of the preloaded contacts)
REGISTER_EXPIRES = 3600


def log(text: str) -> None:
    print(text, flush=True)


# --- loads: what SIPp does in a scenario ---------------------------------------------------


class Load:
    """A kind of SIPp load. Subclasses: what runs around the measured SIPp, and that SIPp."""
    scenario_file: str          # in kemi_tools/scenarios/

    def __init__(self, env: Env, scenario: Scenario):
        self.env, self.scenario = env, scenario

    def setup(self) -> None:
        pass

    def sipp(self, kam: BenchKamailio, rate: float, calls: int, port: int, workdir: Path) -> Sipp:
        raise NotImplementedError

    def teardown(self) -> None:
        pass


class RegisterLoad(Load):
    """REGISTER refreshes with digest auth, cycling through the registered subscribers."""
    scenario_file = "register.xml"

    def setup(self) -> None:
        users = min(self.scenario.contacts, SUBSCRIBERS)
        self.csv = self.env.write_csv(f"register-{users}.csv", (
            f"{extension(i)};{DOMAIN};[authentication username={extension(i)} password={PASSWORD}]"
            for i in range(users)))

    def sipp(self, kam, rate, calls, port, workdir):
        # a refresh of the preloaded contact: the callee SIPp's address and port
        return client(self.env.sipp_file(self.scenario_file), kam.target, self.csv, workdir, port, calls, rate,
                      self.env.load_cpus, CALLER_IP, keys={"contact_port": self.env.callee_port, "contact_host": DOMAIN,
                                       "expires": REGISTER_EXPIRES})


class CallLoad(Load):
    """Calls between registered extensions; the callee is one SIPp every contact points at.
    With held_calls, that many calls are first set up through each Kamailio and kept open."""
    scenario_file = "uac_call.xml"
    hold_rate = 200             # held calls set up per second
    hold_wait = 60              # seconds for all of them to be up

    def setup(self) -> None:
        users = min(self.scenario.contacts, SUBSCRIBERS)
        self.csv = self.env.write_csv(f"call-{users}.csv", (
            f"{extension(i)};{DOMAIN};[authentication username={extension(i)} password={PASSWORD}];"
            f"{extension((i + users // 2) % users)}" for i in range(users)))
        self.env.start_callee()
        self.held: list[Sipp] = []
        if self.scenario.held_calls:
            for n, kam in enumerate(self.env.kamailios.values()):
                self.held.append(self.hold_calls(kam, self.env.port("held", n)))

    def hold_calls(self, kam: BenchKamailio, port: int) -> Sipp:
        count = self.scenario.held_calls
        workdir = self.env.workdir / "held" / f"{self.scenario.name}-{kam.label}-{time.monotonic_ns()}"
        sipp = client(self.scenario_file, kam.target, self.csv, workdir, port, count, min(self.hold_rate, count),
                      self.env.load_cpus, CALLER_IP, sets={"hold_ms": HOLD_FOREVER_MS}, limit=count,
                      timeout=HOLD_FOREVER_MS / 1000, measure=False, extra=TOLERATE_LATE_REPLIES)
        # Setting up the held calls is not a measurement: SIPp may retransmit (a request
        # unanswered for 500 ms is resent, not a failed call: with -max_retrans 0 one stall of
        # the shared machine during the setup failed a call, and the count never came), and a
        # 180 relayed after its 200 is ignored as in the measured runs
        sipp.max_retrans, sipp.recv_timeout = HOLD_MAX_RETRANS, HOLD_RECV_TIMEOUT_MS / 1000
        sipp.extra = [*sipp.extra, "-trace_err", "-error_file", str(sipp.file(".err"))]
        sipp.start()
        self.env.own(sipp)

        def established():
            stats = sipp.stats()
            if stats and int(stats["FailedCall(C)"]):
                raise StartError(f"a call to be held open through {kam.label} failed: {held_state(sipp)}")
            return stats and int(stats["CurrentCall"]) >= count
        try:
            wait_for(established, self.hold_wait, f"{count} calls held open through {kam.label}")
        except StartError as exc:        # say what SIPp saw: failed calls and why
            state = held_state(sipp)
            sipp.stop()                  # its port is free for the next setup
            if "failed:" in str(exc):
                raise
            raise StartError(f"{exc}; {state}") from None
        return sipp

    def sipp(self, kam, rate, calls, port, workdir):
        return client(self.env.sipp_file(self.scenario_file), kam.target, self.csv, workdir, port, calls, rate,
                      self.env.load_cpus, CALLER_IP, sets={"hold_ms": CALL_HOLD_MS}, extra=TOLERATE_LATE_REPLIES)

    def teardown(self) -> None:
        for sipp in self.held:
            sipp.stop()
        self.env.stop_callee()


def held_state(sipp: Sipp) -> str:
    """What the held-calls SIPp reports: its counters and the end of its error log."""
    stats = sipp.stats()
    seen = {k: stats.get(k) for k in ("CurrentCall", "TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)",
                                        "Retransmissions(C)")}
    err = sipp.file(".err")
    errors = err.read_text(errors="replace")[-1500:] if err.exists() else ""
    return f"SIPp: {seen}; its errors: {errors.strip() or '(none)'}"


class SbcLoad(Load):
    """SBC calls: a trunk on the public side (SIPp from the public gateway's address, trusted by
    IP, no digest auth) calls unmapped DIDs; the SBC sends each through the dispatcher
    (round-robin) to one of two private gateways (SIPps), with rtpengine between the sides."""
    scenario_file = "trunk_call.xml"

    def setup(self) -> None:
        self.csv = self.env.write_csv("trunk.csv", (
            f"1555999{i:04d};1555010{i:04d};{SBC_PUBLIC}" for i in range(SUBSCRIBERS)))
        self.gateways = []
        for address in PRIVATE_GATEWAYS:
            sipp = server(self.env.sipp_file("gw_answer.xml"), self.env.workdir / f"gateway-{address}",
                          self.env.gateway_port, self.env.load_cpus, local_ip=address).start()
            self.env.own(sipp)
            self.gateways.append(sipp)
        time.sleep(0.3)
        for sipp in self.gateways:
            if sipp.exited():
                raise StartError(f"gateway SIPp exited: {sipp.output()[-500:]}")

    def sipp(self, kam, rate, calls, port, workdir):
        return client(self.env.sipp_file(self.scenario_file), kam.sbc_target, self.csv, workdir, port, calls, rate,
                      self.env.load_cpus, PUBLIC_GATEWAY, sets={"hold_ms": CALL_HOLD_MS}, extra=TOLERATE_LATE_REPLIES)

    def teardown(self) -> None:
        for sipp in self.gateways:
            sipp.stop()


LOADS = {"register": RegisterLoad, "call": CallLoad, "sbc": SbcLoad}


# --- the environment: databases, Kamailios, the callee SIPp --------------------------------


@dataclass
class Env:
    workdir: Path
    kamailio_cpus: str
    load_cpus: str
    children: int
    memory_manager: str
    mariadb_daemon: Daemon | None = None
    rtpengine: Daemon | None = None
    kamailios: dict[str, BenchKamailio] = field(default_factory=dict)
    state: tuple | None = None
    callee: Sipp | None = None
    owned: list = field(default_factory=list)
    _ports: itertools.cycle = field(default_factory=lambda: itertools.cycle(range(PORT_BASE + 20, PORT_BASE + 60)))

    @property
    def callee_port(self) -> int:
        return PORT_BASE + 10

    @property
    def gateway_port(self) -> int:
        """Every SBC gateway SIPp listens here, each on its own address."""
        return PORT_BASE + 11

    def port(self, what: str, n: int = 0) -> int:
        if what == "held":
            return PORT_BASE + 12 + n
        return next(self._ports)

    def own(self, thing) -> None:
        self.owned.append(thing)

    def sipp_file(self, scenario: str) -> str:
        """The SIPp scenario to run for `scenario` (bench/instructions.py: slower timers)."""
        return scenario

    def write_csv(self, name: str, rows) -> Path:
        path = self.workdir / name
        path.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
        return path

    def start(self) -> None:
        if self.workdir.is_dir():
            shutil.rmtree(self.workdir)            # logs and SIPp files of the previous run
        self.workdir.mkdir(parents=True)
        self.mariadb_daemon = mariadb.start(self.workdir)
        if self.mariadb_daemon:
            log(f"bench: started MariaDB (pid {self.mariadb_daemon.pid})")
        for n, label in enumerate(CONFIGS):
            db = BenchDatabase(f"kemi_bench{SLOT or ''}_{label}", self.workdir)
            started = time.monotonic()
            db.create(SUBSCRIBERS)
            log(f"bench: database {db.name}: {db.count('subscriber')} subscribers "
                f"({time.monotonic() - started:.1f}s)")
            self.kamailios[label] = BenchKamailio(
                label, NATIVE_CFG if label == "native" else PYTHON_CFG, PORT_BASE + n, db,
                self.workdir / label, self.kamailio_cpus, self.children, memory_manager=self.memory_manager)

    def use_state(self, scenario: Scenario) -> None:
        """Both Kamailios running with the scenario's usrloc mode and contacts, fresh."""
        if self.state == scenario.state:
            return
        for kam in self.kamailios.values():
            kam.stop()
        media = None
        if scenario.media:
            engine = rtpengine_daemon(PORT_BASE + 70, MEDIA_PORT_MIN, MEDIA_PORT_MAX)
            if self.rtpengine is None:
                self.rtpengine = start_rtpengine(engine, self.workdir, self.load_cpus)
                log(f"bench: rtpengine up (pid {self.rtpengine.pid}, ng {engine.listen_ng}, "
                    f"ports {engine.port_min}-{engine.port_max}, CPU {self.load_cpus})")
            media = media_table(engine)
        for kam in self.kamailios.values():
            started = time.monotonic()
            kam.db.load_contacts(scenario.contacts, SUBSCRIBERS, self.callee_port, kam.socket)
            kam.usrloc_db_mode = scenario.usrloc_db_mode
            kam.media = media
            kam.sbc_gateway_port = self.gateway_port if scenario.sbc else 0
            daemon = kam.start()
            log(f"bench: {kam.label} Kamailio up (pid {daemon.pid}, db_mode {scenario.usrloc_db_mode}, "
                f"{scenario.contacts} contacts preloaded, media {'on' if media else 'off'}, "
                f"sbc {'on' if scenario.sbc else 'off'}, {time.monotonic() - started:.1f}s)")
        self.state = scenario.state

    def start_callee(self) -> None:
        self.stop_callee()
        self.callee = server(self.sipp_file("uas_callee.xml"), self.workdir / "callee", self.callee_port,
                             self.load_cpus).start()
        self.own(self.callee)
        time.sleep(0.3)
        if self.callee.exited():
            raise StartError(f"callee SIPp exited: {self.callee.output()[-500:]}")

    def stop_callee(self) -> None:
        if self.callee:
            self.callee.stop()
            self.callee = None

    def stop(self) -> None:
        """Stop everything this run started, each by its PID; one failing stop stops no other."""
        steps = [thing.stop for thing in reversed(self.owned)]
        steps += [kam.stop for kam in self.kamailios.values()]
        steps += [kam.db.drop for kam in self.kamailios.values()]
        if self.rtpengine:
            steps.append(self.rtpengine.stop)
        if self.mariadb_daemon:
            steps.append(self.mariadb_daemon.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:       # report and go on: the rest must still be stopped
                print(f"bench: while stopping: {type(exc).__name__}: {exc}", file=sys.stderr)


# --- measuring ------------------------------------------------------------------------------


def run_point(env: Env, load: Load, label: str, rate: float, tag: str, latency: bool = False,
              capture: bool = False) -> RunResult:
    """One SIPp run at `rate` against one Kamailio; with `latency`, Kamailio logs each
    route's execution time meanwhile (read them with kam.latency_samples()); with `capture`,
    every SIP packet to and from Kamailio is timestamped by the kernel (result.server_us).
    The Python Kamailio's entries into Python are counted in every run (result.entries)."""
    kam = env.kamailios[label]
    kam.wait_idle(timeout=20, window=0.3, busy=0.03)
    if latency:
        kam.latency_logging(True)
        time.sleep(0.2)          # children pick up the cfg change on their next message
        kam.mark_log()
    calls = max(int(rate * RUN_SECONDS), 20)
    workdir = env.workdir / "runs" / f"{tag}-{label}-{rate:g}-{time.monotonic_ns()}"
    callee_cpu = env.callee.cpu_so_far() if env.callee else 0.0
    entries_before = kam.python_entries()
    cpu_before = kam.cpu_seconds()
    started = time.monotonic()
    with SipTimes(kam.port) if capture else contextlib.nullcontext() as times:
        out = load.sipp(kam, rate, calls, env.port("client"), workdir).start().wait(calls / rate + 30)
    if latency:
        kam.latency_logging(False)
    result = RunResult(label, rate, calls, tag=tag, latency_logged=latency, captured=capture)
    result.entries = {k: v - entries_before.get(k, 0) for k, v in kam.python_entries().items()
                      if v != entries_before.get(k, 0)}
    if times is not None:
        result.server_us = times.response_times_us()
        if times.dropped:
            result.note = f"the capture missed {times.dropped} packets: Kamailio's times are partial"
    result.wall_s = time.monotonic() - started
    result.kamailio_cpu_s = kam.cpu_seconds() - cpu_before
    result.sipp_cpu_s = out.cpu_s
    if env.callee:
        result.sipp_cpu_s += env.callee.cpu_so_far() - callee_cpu
    stats = out.stats
    if stats:
        result.created = int(stats["TotalCallCreated"])
        result.successful = int(stats["SuccessfulCall(C)"])
        result.failed = int(stats["FailedCall(C)"])
        result.retransmissions = int(stats["Retransmissions(C)"])
    else:
        result.note = f"sipp exited {out.rc} without statistics"
    # SIPp's whole milliseconds (its default 10 ms clock: percentile() interpolates within one)
    result.rtt1_ms = [int(ms) for ms in out.rtts_ms]
    s = result.summary()
    log(f"  {tag:16} {label:6} {rate:7g}/s  {'ok  ' if result.ok else 'FAIL'} "
        f"failed {result.failed:5d}  retrans {result.retransmissions:5d}  p50 {s['p50_ms']:6.2f} ms  "
        f"p99 {s['p99_ms']:7.2f} ms  cpu {s['cpu_per_1000']:.3f} s/1000  sipp {s['sipp_busy']:.0%}"
        + (f"  kamailio p50 {s['server_p50_us']:.0f} p99 {s['server_p99_us']:.0f} µs" if result.server_us else ""))
    return result


def median_ok(runs: list[RunResult]) -> bool:
    """A point is clean when the median run had no failed call (at least 2 of 3 clean)."""
    return statistics.median(0 if r.ok else 1 for r in runs) == 0


def round_rate(rate: float) -> int:
    if rate < 100:
        return int(round(rate / 5) * 5) or 5
    if rate < 1000:
        return int(round(rate / 10) * 10)
    return int(round(rate / 50) * 50)


@dataclass
class ScenarioResult:
    scenario: Scenario
    runs: list[RunResult] = field(default_factory=list)
    max_rate: dict = field(default_factory=dict)
    common_rate: float | None = None
    at_common: dict = field(default_factory=dict)
    route_time: dict = field(default_factory=dict)           # at the probe's low rate
    route_time_common: dict = field(default_factory=dict)    # at the compared rate
    entries: dict = field(default_factory=dict)              # Python entries per call, per callback
    notes: list[str] = field(default_factory=list)

    def runs_at(self, label: str, rate: float) -> list[RunResult]:
        """The load runs at `rate` (not the route-time or capture ones: logging and the capture
        cost Kamailio CPU)."""
        return [r for r in self.runs if r.config == label and r.rate == rate and not r.latency_logged
                and not r.captured]


def measure_scenario(env: Env, scenario: Scenario, deadline: float, quick: bool) -> ScenarioResult:
    res = ScenarioResult(scenario)
    log(f"\n== {scenario.name}: {scenario.title}")
    env.use_state(scenario)
    load = LOADS[scenario.kind](env, scenario)
    load.setup()
    try:
        def point(label: str, rate: float, tag: str, latency: bool = False, capture: bool = False) -> RunResult:
            res.runs.append(run_point(env, load, label, rate, f"{scenario.name}/{tag}", latency, capture))
            if not res.runs[-1].ok:
                kam = env.kamailios[label]
                what = kam.lost()
                if what:        # say so, keep its log, and go on with a fresh one
                    kept = kam.keep_log(f"{scenario.name}-{tag}-{rate:g}")
                    res.notes.append(f"the {label} Kamailio {what} after a {tag} run at {rate:g}/s "
                                     f"(log kept: {kept}); restarted")
                    log(f"bench: {res.notes[-1]}")
                    kam.stop()
                    kam.start()
            return res.runs[-1]

        # 1. route time per request (latency_cfg_log) at a low rate; the native run's CPU per
        #    call also tells roughly what one CPU can take, where the ladder of rates goes
        probes = {}
        probes_started = time.monotonic()
        for label in CONFIGS:
            probes[label] = point(label, scenario.probe_rate, "route-time", latency=True)
            res.route_time[label] = summarize_latency(env.kamailios[label].latency_samples())
        res.route_time["rate"] = scenario.probe_rate
        res.entries = entries_per_call(probes["python"])
        cpu = probes["native"].cpu_per_1000
        capacity = 1000 / cpu if probes["native"].ok and cpu == cpu and cpu > 0 else scenario.probe_rate * 5
        ladder: list[float] = sorted({min(MAX_RATE, max(MIN_RATE, round_rate(capacity * f))) for f in LADDER})
        if quick:
            ladder = ladder[:4]
        log(f"  native ~{cpu:.3f} CPU s per 1000 calls at {scenario.probe_rate}/s -> ladder {ladder}")
        # what one run costs here (load, start, stop, counters), from the two probe runs: the
        # ladder and the confirmations end early enough for the comparison runs to follow
        run_cost = (time.monotonic() - probes_started) / len(CONFIGS)
        ladder_deadline = deadline - run_cost * TAIL_RUNS * len(CONFIGS)
        # 2. step up, alternating native/python, until each fails (a marginal failure, a few
        #    calls in a thousand, may be noise from the shared machine: one more step then)
        passed: dict[str, list[float]] = {label: [] for label in CONFIGS}
        stopped = dict.fromkeys(CONFIGS, False)
        marginal = dict.fromkeys(CONFIGS, False)
        for step, rate in enumerate(ladder):
            order = CONFIGS if step % 2 == 0 else CONFIGS[::-1]
            for label in order:
                if stopped[label] or time.monotonic() > ladder_deadline:
                    continue
                r = point(label, rate, "step")
                if r.ok:
                    passed[label].append(rate)
                    marginal[label] = False
                elif r.failed + (r.calls - r.successful) <= MARGINAL_FAILURES * r.calls and not marginal[label]:
                    marginal[label] = True
                else:
                    stopped[label] = True
            if all(stopped.values()):
                break
        if not any(r.tag.endswith("/step") for r in res.runs):
            res.notes.append("the time budget left no time for the ladder: compared at the probe rate")
        elif not all(stopped.values()):
            res.notes.append("no failure reached within the ladder or the time budget: max rate is a lower bound")
        rate = ladder[0]
        for _ in range(DOWN_STEPS):
            missing = [label for label in CONFIGS if not passed[label]]
            if not missing or time.monotonic() > ladder_deadline:
                break
            rate = max(MIN_RATE, round_rate(rate * DOWN_FACTOR))
            for label in missing:
                if point(label, rate, "step-down").ok:
                    passed[label].append(rate)
        # one bisection between a config's highest clean rate and the rate it failed at, when
        # the ladder's step there was coarse
        for label in CONFIGS:
            if not passed[label] or time.monotonic() > ladder_deadline:
                continue
            top = max(passed[label])
            failed_above = [r.rate for r in res.runs if r.config == label and not r.ok and r.rate > top
                            and not r.latency_logged]
            if failed_above and min(failed_above) / top > BISECT_ABOVE:
                middle = round_rate((top + min(failed_above)) / 2)
                if top < middle < min(failed_above) and point(label, middle, "bisect").ok:
                    passed[label].append(middle)
        # 3. confirm each config's highest clean rate with REPEATS runs (median), stepping down if needed
        repeats = 1 if quick else REPEATS
        for label in CONFIGS:
            res.max_rate[label] = 0
            for rate in sorted(passed[label], reverse=True)[:2]:
                while len(res.runs_at(label, rate)) < repeats and time.monotonic() < ladder_deadline:
                    point(label, rate, "confirm")
                if median_ok(res.runs_at(label, rate)):
                    res.max_rate[label] = rate
                    break
        # 4. the comparison point: the highest rate both keep clean, REPEATS runs each, alternating
        common = min(res.max_rate.values()) or scenario.probe_rate
        res.common_rate = common
        for i in range(repeats):
            for label in (CONFIGS if i % 2 == 0 else CONFIGS[::-1]):
                if len(res.runs_at(label, common)) <= i and time.monotonic() < deadline + 60:
                    point(label, common, "compare")
        # response times to the microsecond (kernel timestamps of every SIP packet in and out),
        # in a run of their own: the capture costs Kamailio's sends a copy each
        for label in CONFIGS:
            if time.monotonic() < deadline + 60:
                point(label, common, "capture", capture=True)
        # route time again at the compared rate: wall-clock inside the route grows with the
        # CPU contention of 4 workers on one CPU, so both rates are reported
        for label in CONFIGS:
            if time.monotonic() < deadline + 60:
                point(label, common, "route-time-at-compared-rate", latency=True)
                res.route_time_common[label] = summarize_latency(env.kamailios[label].latency_samples())
        res.route_time_common["rate"] = common
        busiest = max(res.runs, key=lambda r: r.sipp_busy)
        res.notes.append(f"SIPp (caller + callee, CPU {env.load_cpus}) used at most {busiest.sipp_busy:.0%} "
                         f"of a CPU (at {busiest.rate:g}/s)" + (": SIPp may be what limits here"
                                                                 if busiest.sipp_busy > SIPP_SATURATED else ""))
        for label in CONFIGS:
            runs = res.runs_at(label, common)
            captured = [r.summary() for r in res.runs if r.config == label and r.rate == common and r.server_us]
            res.at_common[label] = {
                "runs": len(runs),
                "server_p50_us": statistics.median(c["server_p50_us"] for c in captured) if captured else None,
                "server_p99_us": statistics.median(c["server_p99_us"] for c in captured) if captured else None,
                "p50_ms": statistics.median(percentile(r.rtt1_ms, 50) for r in runs),
                "p99_ms": statistics.median(percentile(r.rtt1_ms, 99) for r in runs),
                "mean_ms": statistics.median(mean(r.rtt1_ms) for r in runs),
                "cpu_per_1000": statistics.median(r.cpu_per_1000 for r in runs),
                "sipp_busy": max(r.sipp_busy for r in runs),
            }
    finally:
        load.teardown()
    return res


def entries_per_call(run: RunResult) -> dict:
    """Entries into Python per call (or registration), per callback, in one run."""
    if not run.successful:
        return {}
    per = {k: round(v / run.successful, 2) for k, v in sorted(run.entries.items())}
    return {**per, "total": round(sum(run.entries.values()) / run.successful, 2)}


def summarize_latency(samples: list[tuple[str, str, int]]) -> dict:
    out = {}
    for kind in ("request", "reply"):
        values = sorted(us for k, _m, us in samples if k == kind)
        by_method = {}
        for method in sorted({m for k, m, _u in samples if k == kind}):
            v = sorted(us for k, m, us in samples if k == kind and m == method)
            by_method[method] = {"n": len(v), "mean_us": round(statistics.mean(v), 1), "p99_us": pct(v, 99)}
        out[kind] = {"n": len(values), "mean_us": round(statistics.mean(values), 1) if values else None,
                     "p50_us": pct(values, 50), "p99_us": pct(values, 99), "by_method": by_method}
    return out


def pct(sorted_values: list[int], p: float):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


# --- main -------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    versions = {}
    for name, argv in (("kamailio", ["kamailio", "-v"]), ("sipp", ["sipp", "-v"]),
                       ("mariadb", ["mariadbd", "--version"])):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            versions[name] = next((line.strip() for line in out.splitlines() if line.strip()), "?")
        except OSError:
            versions[name] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), **versions,
            "load_before": Path("/proc/loadavg").read_text().split()[:3]}


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for the whole run")
    ap.add_argument("--quick", action="store_true", help="short ladder, one run per point (tooling check)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--kamailio-cpus", default="1", help="taskset CPU list for both Kamailios")
    ap.add_argument("--sipp-cpus", default="0", help="taskset CPU list for SIPp")
    ap.add_argument("--children", type=int, default=4, help="SIP worker processes (sip.children)")
    ap.add_argument("--memory-manager", default="", help="kamailio -x (default: what kemi_tools.stack uses)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (it starts Kamailio, MariaDB and SIPp)", file=sys.stderr)
        return 2
    scenarios = select(args.scenarios.split(",") if args.scenarios else None)
    started = time.monotonic()
    deadline_total = started + args.budget
    from kemi_tools.stack import kamailio as kemi_kamailio
    mm = args.memory_manager or getattr(kemi_kamailio, "MEMORY_MANAGER", "")
    env = Env(Path(f"/tmp/kemi-bench{SLOT or ''}"), args.kamailio_cpus, args.sipp_cpus, args.children, mm)
    signal.signal(signal.SIGTERM, _interrupt)
    results: list[ScenarioResult] = []
    info = machine()
    try:
        env.start()
        for i, scenario in enumerate(scenarios):
            left = deadline_total - time.monotonic() - 45          # keep time to stop and report
            share = left / (len(scenarios) - i)
            results.append(measure_scenario(env, scenario, time.monotonic() + share, args.quick))
    except KeyboardInterrupt:
        log("bench: interrupted; stopping what it started")
    except StartError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        env.stop()
    info["memory_manager"] = mm or "qm (Kamailio default)"
    info["children"] = args.children
    info["pinning"] = {"kamailio": args.kamailio_cpus, "sipp": args.sipp_cpus}
    info["elapsed_s"] = round(time.monotonic() - started)
    info["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    args.out.mkdir(parents=True, exist_ok=True)
    doc = report.build(results, info)
    (args.out / "bench.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (args.out / "bench.md").write_text(report.markdown(doc))
    plotted = report.plot(doc, args.out / "bench.png")
    log("\n" + report.text_table(doc))
    log(f"\nbench: {info['elapsed_s']}s; wrote {args.out / 'bench.json'}, {args.out / 'bench.md'}"
        + (f", {plotted}" if plotted else " (no PNG: python3-matplotlib missing, scripts/install.sh --bench)"))
    log("bench: to put this table into README.md and docs/benchmark.md: python3 -m bench.report --publish")
    return 0
