"""`make bench-instructions`: CPU instructions per SIP message, native cfg against the Python routing.

    python3 -m bench.instructions [--scenarios a,b] [--runs 2] [--cache-sim] [--out DIR]

CPU seconds on a shared 2-core VM move by tens of percent between runs, and the VM has no
hardware counters. valgrind's callgrind counts the instructions a process executes, the same
on every run. For each scenario and each routing (bench/native.cfg, the Python package) this
starts ONE fresh Kamailio under

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=receive_msg
             --dump-after=receive_msg

so only what a SIP worker does for a received message counts (receive_msg is where every
UDP request and reply enters: the request route, tm's reply processing with the onreply and
failure routes, the branch route run by t_relay), and callgrind writes one profile per
message. The same SIPp loads as `make bench` (bench/run.py) run at a low rate: a warm-up,
then the measured calls, which must all succeed with no retransmission. Meanwhile every SIP
packet to and from Kamailio's port is captured (AF_PACKET, kernel order): with one worker
per socket (children = 1) the worker's n-th profile is the n-th packet that reached its
socket, so each profile is known to be the REGISTER answered 401, the relayed INVITE, the
180 ... Each profile is split by where the instructions ran (libpython, app_python3's KSR
glue, Kamailio core, each module, libc, ...) from callgrind's per-object costs.

Outputs in bench/results/: instructions.json (per scenario, config, run and message kind,
by part and by function) and instructions.md (the tables docs/benchmark.md publishes).
Python's hash seed is fixed (PYTHONHASHSEED=0) so dict layouts repeat from run to run.
Root only (Kamailio, MariaDB, AF_PACKET); everything started is stopped by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kemi.settings import PROJECT_ROOT
from kemi_tools.capture import ETH_P_ALL, PACKET_OUTGOING, SO_RCVBUFFORCE, SO_TIMESTAMPNS, \
    attach_udp_port_filter, drop_queued, parse_sip
from kemi_tools.stack.own_mariadb import OwnMariaDB
from kemi_tools.stack.process import StartError

from bench import callgrind
from kemi_tools.sipp import SCENARIOS as SIPP_SCENARIOS
from bench.run import LOADS, Env, SLOT, PORT_BASE, MEDIA_PORT_MIN, MEDIA_PORT_MAX, machine
from bench.scenarios import SUBSCRIBERS, Scenario, select
from bench.stack import (NATIVE_CFG, PYTHON_CFG, BenchDatabase, BenchKamailio, media_table, rtpengine_daemon,
                         start_rtpengine)

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
# python-compiled: the Python routing with settings python.compiled (make compile first; issue 26 b),
# measured when --configs names it
CONFIGS = ("native", "python", "python-compiled")
DEFAULT_CONFIGS = ("native", "python")
# the [python] table of each config that is not native
PYTHON_TABLES = {"python": {}, "python-compiled": {"python": {"compiled": True}}}
# the scenarios run by default: what one start of a Kamailio under valgrind can take in a few
# minutes. The held-calls ones need 100 / 1,000 calls set up through valgrind first (see --help)
DEFAULT_SCENARIOS = ("register-db1", "call", "register-db2", "register-1k", "call-1k", "register-100k",
                     "call-100k", "call-media", "sbc")
# calls (or registrations) per run: warm-up (not counted: first-message costs, caches filling,
# valgrind translating code) and measured; and the rate (at most: SIPp runs one call at a
# time), low enough for valgrind (~50x slower) on a loaded machine
WARMUP_CALLS = 20
MEASURED_CALLS = 60
RATE = {"register": 4, "call": 2, "sbc": 2}
# valgrind makes the first messages of a path slow (it translates code on first use): the
# warm-up may retransmit, the measured calls may not (SIPp -max_retrans 0, as make bench,
# with a longer timer: VALGRIND_T1_MS); both wait up to 30 s for an answer
RECV_TIMEOUT_MS = 30_000
# SIPp's retransmission timer in every scenario of these runs (500 ms in make bench)
VALGRIND_T1_MS = 4000
START_TIMEOUT_S = 900              # 100,000 contacts preloaded under valgrind take minutes
IDLE_BUSY = 0.25                   # CPU s per 0.5 s: valgrind's timer processes are busier
HOLD_RATE = 5                      # held calls set up through valgrind, per second
DB_PORT_OFFSET = 80               # the private MariaDB: PORT_BASE + this (clear of make bench's ports)
VALGRIND = ("valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=receive_msg",
            "--dump-after=receive_msg")
PROCESS_LINE = "udp receiver child="


# a run whose measured calls were not all clean is repeated this many times (then it fails)
RETRIES = 3
RETRY_PAUSE_S = 30


class Unclean(RuntimeError):
    pass


def log(text: str) -> None:
    print(text, flush=True)


# --- every SIP packet to and from the Kamailio, in kernel order ------------------------------

@dataclass
class Packet:
    ns: int
    inbound: bool
    local_ip: str              # Kamailio's address in it (destination of an inbound packet)
    key: tuple                 # (Call-ID, CSeq number, CSeq method)
    status: int                # 0 for a request
    method: str


class Capture:
    """AF_PACKET on lo, UDP to or from `port` on any address (the SBC listens on three)."""

    def __init__(self, port: int):
        self.port, self._stop = port, threading.Event()
        self.packets: list[Packet] = []

    def __enter__(self) -> Capture:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_udp_port_filter(sock, self.port, self.port)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("lo", 0))
        drop_queued(sock)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        ancillary = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, cmsgs, _flags, addr = self._sock.recvmsg(65535, ancillary)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8:
                continue
            ns = next((sec * 1_000_000_000 + nsec for level, kind, raw in cmsgs
                       if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                       for sec, nsec in [struct.unpack("qq", raw[:16])]), time.time_ns())
            ihl = (data[14] & 0x0F) * 4
            src, dst = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
            sport, dport = struct.unpack("!HH", data[14 + ihl:14 + ihl + 4])
            payload = data[14 + ihl + 8:]
            parsed = parse_sip(payload)
            if not parsed:
                continue
            inbound = dport == self.port
            method = parsed[0][2].decode(errors="replace")
            self.packets.append(Packet(ns, inbound, dst if inbound else src, parsed[0], parsed[1], method))

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(10)
        self._sock.close()
        self.packets.sort(key=lambda p: p.ns)


def classify(packets: list[Packet]) -> list[str]:
    """What each inbound packet was, by what Kamailio did with it: "REGISTER answered 401",
    "INVITE relayed", "ACK absorbed", "reply 180 INVITE" ... ('' for outbound packets)."""
    out = []
    for i, p in enumerate(packets):
        if not p.inbound:
            out.append("")
            continue
        if p.status:
            out.append(f"reply {p.status} {p.method}")
            continue
        outcome = "absorbed"
        for q in packets[i + 1:]:
            if not q.inbound and q.key == p.key and q.status != 100:
                outcome = f"answered {q.status}" if q.status else "relayed"
                break
        out.append(f"{p.method} {outcome}")
    return out


# --- aggregated profiles ------------------------------------------------------------------

@dataclass
class Tally:
    """Sum of the profiles of one kind of message (or of all measured ones)."""
    count: int = 0
    events: list[str] = field(default_factory=list)
    self_cost: Counter = field(default_factory=Counter)     # (obj, fn) -> Ir
    calls_to: Counter = field(default_factory=Counter)      # (obj, fn) -> times called
    misses: dict = field(default_factory=lambda: defaultdict(Counter))  # event -> (obj, fn) -> n
    structure: Counter = field(default_factory=Counter)
    ksr_work: Counter = field(default_factory=Counter)      # callee object -> Ir under KSR calls
    code_lines: Counter = field(default_factory=Counter)    # part -> 64-byte code lines run (--footprint)
    formatting: Counter = field(default_factory=Counter)    # caller -> Ir in the printf family

    def add(self, prof: callgrind.Profile, reply: bool) -> None:
        self.count += 1
        self.events = self.events or prof.events
        ir = prof.events.index("Ir")
        for key, cost in prof.self_cost.items():
            self.self_cost[key] += cost[ir]
            for e, name in enumerate(prof.events):
                if name != "Ir" and cost[e]:
                    self.misses[name][key] += cost[e]
        for (_caller, callee), v in prof.calls.items():
            self.calls_to[callee] += v[0]
        for part, value in structure(prof, reply).items():
            self.structure[part] += value
        for obj, lines in prof.code_lines.items():
            self.code_lines[callgrind.category(obj)] += len(lines)
        for (caller, callee), v in prof.calls.items():
            if _is_glue(caller) and _is_kamailio(callee):
                self.ksr_work[callgrind.module_of(callee[0])] += v[1 + ir]
            # who formats text (printf family), and at what cost (inclusive)
            if callgrind.category(*callee) == "libc_format" and not callgrind.category(caller[0]).startswith("libc"):
                self.formatting[f"{callgrind.module_of(caller[0])}:{caller[1]}"] += v[1 + ir]

    @property
    def total(self) -> int:
        return sum(self.self_cost.values())

    def by(self, keyfn, counter: Counter | None = None) -> Counter:
        out: Counter = Counter()
        for (obj, fn), v in (self.self_cost if counter is None else counter).items():
            out[keyfn(obj, fn)] += v
        return out

    def summary(self, per: float, top: int = 40) -> dict:
        per = per or 1
        cats = self.by(callgrind.category)
        def name(o, f):
            return f"{callgrind.module_of(o)}:{f}"
        calls = self.by(name, self.calls_to)
        out: dict[str, Any] = {
            "messages": round(self.count / per, 2), "Ir": round(self.total / per),
            "by_part": {c: round(cats.get(c, 0) / per) for c in callgrind.CATEGORIES if cats.get(c)},
            "by_object": {k: round(v / per) for k, v in self.by(lambda o, f: callgrind.module_of(o)).most_common()
                          if v / per >= 1},
            # function: [own instructions, times called], per call
            "top_functions": {k: [round(v / per), round(calls.get(k, 0) / per, 2)]
                              for k, v in self.by(name).most_common(top)},
            "structure": {k: round(v / per) for k, v in self.structure.items()},
            "ksr_work_by_module": {k: round(v / per) for k, v in self.ksr_work.most_common()},
            "formatting_by_caller": {k: round(v / per) for k, v in self.formatting.most_common(12)},
            "python_entries": round(sum(v for (o, f), v in self.calls_to.items()
                                        if _is_glue((o, f)) and f in ROUTE_ENTRY) / per, 2),
            "ksr_calls": round(sum(v for k, v in self.calls_to.items() if _is_glue(k) and k[1] in KSR_DISPATCH)
                               / per, 2),
        }
        if self.code_lines:
            out["code_footprint_lines"] = {"total": round(sum(self.code_lines.values()) / per),
                                           "by_part": {k: round(v / per) for k, v in self.code_lines.most_common()}}
        for event, counter in self.misses.items():
            cat = self.by(callgrind.category, counter)
            out.setdefault("cache", {})[event] = {"total": round(sum(counter.values()) / per),
                                                  "by_part": {k: round(v / per) for k, v in cat.most_common()}}
        return out


# app_python3 (5.x) and app_python3s (6.x): the function that calls a Python route, and the
# one every KSR.* call goes through (from a generated stub per export)
ROUTE_ENTRY = ("apy_exec", "apy3s_exec_func")
KSR_DISPATCH = ("sr_apy_kemi_exec_func",)
# Kamailio's cfg interpreter: its exported functions (the static ones have no name here)
CFG_INTERPRETER = re.compile(r"^(run_actions|run_top_route|do_action|rval_|lval_|eval_|comp_|ret_|"
                             r"run_actions_safe|fixup_|cmp_)")
# where a route is run: Kamailio's cfg interpreter (native) or the KEMI engine (Python)
ROUTE_RUNNERS = ("run_top_route", "sr_kemi_route")


def _is_python(f) -> bool:
    return callgrind.category(f[0]) == "libpython"


def _is_glue(f) -> bool:
    return callgrind.category(f[0]) == "ksr_glue"


def _is_kamailio(f) -> bool:
    return callgrind.category(f[0]) in ("kamailio_core", "kamailio_modules")


def _is_core(name: str):
    return lambda f: callgrind.category(f[0]) == "kamailio_core" and f[1] == name


def structure(prof: callgrind.Profile, reply: bool) -> Counter:
    """What one message's instructions were spent in, by call edges (inclusive costs):

    routes: the routes run for it (a request: the request route, with the branch route
        t_relay runs inside it; a reply: tm's onreply / failure route), cfg or Python;
    python_callbacks: under the app_python3 route entry (Python, KSR calls, their C work);
    ksr_calls: all the KSR.* functions called from Python did (glue, conversions, Kamailio's work);
    ksr_conversions: what the KSR glue called back in libpython (argument and result
        conversions: PyArg_Parse, PyUnicode_FromString, Py_BuildValue ...);
    ksr_kamailio_work: what the glue called in Kamailio (the work native does too, plus the
        PV name look-up of KSR.pv.get below);
    pv_by_name: KSR.pv.get/gete/sets: Kamailio parsing and looking up the PV name each call;
    log_prefix: the log_prefix (kamailio-common.cfg) formatted for every message, both sides;
    cfg_interpreter: native cfg's interpreter in Kamailio's core (run_actions, do_action,
        rval_*/lval_* expression evaluation: own instructions), what Python replaces;
    ksr_work_by_module: the KSR calls' Kamailio work per object (core, tm, auth ...)."""
    ir = prof.events.index("Ir")
    route_callers = (lambda f: f[0].endswith("/tm.so")) if reply else _is_core("receive_msg")
    def runs_route(f):
        return callgrind.category(f[0]) == "kamailio_core" and f[1] in ROUTE_RUNNERS
    def entry(f):
        return _is_glue(f) and f[1] in ROUTE_ENTRY
    out: Counter = Counter()
    out["routes"] = callgrind.edges(prof, route_callers, runs_route)
    out["python_callbacks"] = callgrind.edges(prof, lambda f: not entry(f), entry)
    out["ksr_calls"] = callgrind.edges(prof, _is_python, _is_glue)
    out["ksr_conversions"] = callgrind.edges(prof, lambda f: _is_glue(f) and not entry(f), _is_python)
    out["ksr_kamailio_work"] = callgrind.edges(prof, _is_glue, _is_kamailio)
    out["pv_by_name"] = callgrind.edges(prof, lambda f: f[1] != "pv_cache_get", _is_core("pv_cache_get"))
    out["cfg_interpreter"] = sum(c[ir] for (obj, fn), c in prof.self_cost.items()
                                 if callgrind.category(obj) == "kamailio_core" and CFG_INTERPRETER.match(fn))
    out["log_prefix"] = callgrind.edges(prof, _is_core("receive_msg"), _is_core("log_prefix_set"))
    return out


# --- one run: a fresh Kamailio under valgrind --------------------------------------------

class InstrEnv(Env):
    """make bench's environment (callee SIPp, rtpengine), one Kamailio at a time, and a
    MariaDB of its own: the machine's is shared, and other runs stop and start it (a Kamailio
    that loses its database mid-run fails calls; these runs take half an hour)."""
    own_db: OwnMariaDB | None = None
    configs: tuple[str, ...] = DEFAULT_CONFIGS      # the configs measured (a database each)

    def start(self) -> None:
        if self.workdir.is_dir():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.databases: dict[str, BenchDatabase] = {}
        self.own_db = OwnMariaDB(PORT_BASE + DB_PORT_OFFSET, f"kemi-instr{SLOT}").install().start()
        assert self.own_db.daemon is not None
        log(f"bench.instructions: private MariaDB on 127.0.0.1:{self.own_db.port} (pid {self.own_db.daemon.pid})")
        for label in self.configs:
            db = BenchDatabase(f"kemi_instr_{label}", self.workdir, host=f"127.0.0.1:{self.own_db.port}",
                               socket=self.own_db.socket)
            db.create(SUBSCRIBERS)
            self.databases[label] = db

    def use_state(self, scenario: Scenario) -> None:       # runs start their own Kamailio
        pass

    def sipp_file(self, scenario: str) -> str:
        """The scenario with SIPp's retransmission timer at VALGRIND_T1_MS instead of 500 ms: a
        message valgrind's Kamailio answers in 0.6 s is not a failed call here. A retransmission
        would still spoil the count: the capture sees it and the run is repeated."""
        slow = self.workdir / "sipp" / Path(scenario).name
        if not slow.exists():
            slow.parent.mkdir(parents=True, exist_ok=True)
            text = (SIPP_SCENARIOS / scenario).read_text()
            slow.write_text(text.replace('retrans="500"', f'retrans="{VALGRIND_T1_MS}"'))
        return str(slow)

    def stop(self) -> None:
        super().stop()
        if self.own_db:
            self.own_db.remove()


def worker_sockets(kam: BenchKamailio) -> dict[int, str]:
    """PID -> the address of the UDP socket that SIP worker reads (kamcmd core.psx)."""
    out, pid = {}, None
    for line in kam.kamcmd("core.psx").splitlines():
        line = line.strip()
        if line.startswith("PID:"):
            pid = int(line.split(":", 1)[1])
        elif line.startswith("DSC:") and PROCESS_LINE in line and pid:
            sock = line.split("sock=", 1)[1].split()[0]          # 127.0.0.1:14500
            out[pid] = sock.rsplit(":", 1)[0]
    return out


def sipp_run(env: InstrEnv, load, kam: BenchKamailio, rate: float, calls: int, workdir: Path,
             warmup: bool) -> dict:
    sipp = load.sipp(kam, rate, calls, env.port("client"), workdir)
    sipp.recv_timeout = RECV_TIMEOUT_MS / 1000
    if warmup:              # retransmissions allowed: valgrind is slow on a path's first use
        sipp.max_retrans = 5
    sipp.timeout = calls / rate + 120
    # one call at a time: valgrind's worker takes ~0.1 s per message (its profile dump
    # included), and a request waiting behind others for 500 ms would fail its call
    sipp.limit = 1
    result = sipp.start().wait(calls / rate + 180)
    stats = result.stats or {}
    return {"rc": result.rc, "calls": calls, "successful": int(stats.get("SuccessfulCall(C)", 0)),
            "failed": int(stats.get("FailedCall(C)", 0)),
            "retransmissions": int(stats.get("Retransmissions(C)", 0))}


def measure_run(env: InstrEnv, scenario: Scenario, label: str, run: int, media: dict | None,
                cache_sim: bool, measured_calls: int, keep: bool = False, count_entries: bool = False,
                footprint: bool = False) -> dict:
    workdir = env.workdir / f"{scenario.name}-{label}-{run}-{time.strftime('%H%M%S')}"
    shutil.rmtree(workdir, ignore_errors=True)
    profiles = workdir / "callgrind"
    profiles.mkdir(parents=True)
    db = env.databases[label]
    port = PORT_BASE + CONFIGS.index(label)
    wrap = ("PYTHONHASHSEED=0", *VALGRIND, *(("--cache-sim=yes",) if cache_sim else ()),
            *(("--dump-instr=yes", "--compress-pos=no") if footprint else ()),
            f"--callgrind-out-file={profiles}/cg.%p", f"--log-file={profiles}/valgrind.%p.log")
    kam = BenchKamailio(label, NATIVE_CFG if label == "native" else PYTHON_CFG, port, db, workdir / "kamailio",
                        env.kamailio_cpus, 1, usrloc_db_mode=scenario.usrloc_db_mode,
                        memory_manager=env.memory_manager, media=media,
                        sbc_gateway_port=env.gateway_port if scenario.sbc else 0,
                        wrap=wrap, pinned=False, idle_busy=IDLE_BUSY, count_entries=count_entries,
                        extra=PYTHON_TABLES.get(label, {}))
    db.load_contacts(scenario.contacts, SUBSCRIBERS, env.callee_port, kam.socket)
    env.kamailios = {label: kam}
    load: Any = LOADS[scenario.kind](env, scenario)      # its csv and held-call pace are set below
    if scenario.held_calls:
        load.hold_rate, load.hold_wait = HOLD_RATE, scenario.held_calls / HOLD_RATE * 3 + 120
    rate = RATE[scenario.kind]
    started = time.monotonic()
    result: dict[str, Any] = {"scenario": scenario.name, "config": label, "run": run}
    try:
        kam.start(timeout=START_TIMEOUT_S)
        result["start_s"] = round(time.monotonic() - started)
        sockets = worker_sockets(kam)
        # the profiles of the start (OPTIONS probes) are older than the capture: skipped
        skip = {pid: len(list(profiles.glob(f"cg.{pid}.*"))) for pid in sockets}
        with Capture(port) as cap:
            load.setup()
            # the warm-up's calls use the CSV's last rows, the measured ones its first: no
            # measured call finds what the warm-up left in a cache (the SBC's DID map: every
            # measured call misses it, as in make bench)
            measured_csv = load.csv
            load.csv = env.write_csv(f"warmup-{measured_csv.name}", measured_csv.read_text().splitlines()[
                -WARMUP_CALLS:])
            result["warmup"] = sipp_run(env, load, kam, rate, WARMUP_CALLS, workdir / "warmup", True)
            load.csv = measured_csv
            kam.wait_idle(timeout=120)
            begin = time.time_ns()
            result["measured"] = sipp_run(env, load, kam, rate, measured_calls, workdir / "measured", False)
            kam.wait_idle(timeout=120)
            end = time.time_ns()
            load.teardown()
            kam.wait_idle(timeout=120)
    finally:
        kam.stop()
    m = result["measured"]
    if m["failed"] or m["successful"] != m["calls"] or m["retransmissions"]:
        raise Unclean(f"{scenario.name} {label} run {run}: the measured calls were not all clean: {m} "
                      f"(see {workdir})")
    result["wall_s"] = round(time.monotonic() - started)
    result.update(attribute(cap.packets, sockets, skip, profiles, begin, end, m["successful"]))
    if result["duplicates"]:        # a retransmission reached Kamailio: not the clean flow
        raise Unclean(f"{scenario.name} {label} run {run}: retransmissions reached Kamailio: "
                      f"{result['duplicates']} (see {workdir})")
    pairing = result.pop("pairing")
    if keep:                                # which profile is which message, for a closer look
        (profiles / "pairing.json").write_text(json.dumps(pairing, indent=0))
    else:
        shutil.rmtree(profiles)             # ~35 kB per message; the JSON keeps what matters
    return result


def attribute(packets: list[Packet], sockets: dict[int, str], skip: dict[int, int], profiles: Path, begin: int,
              end: int, calls: int) -> dict:
    """Pair each worker's profiles with the packets that reached its socket, in order; sum
    the measured ones per kind of message."""
    kinds = classify(packets)
    per_kind: dict[str, Tally] = defaultdict(Tally)
    everything = Tally()
    duplicates: Counter = Counter()
    pairing = []
    for pid, address in sorted(sockets.items()):
        files = sorted(profiles.glob(f"cg.{pid}.*"), key=lambda f: int(f.suffix[1:]))[skip[pid]:]
        inbound = [(p, k) for p, k in zip(packets, kinds, strict=False) if p.inbound and p.local_ip == address]
        if len(files) != len(inbound):
            raise StartError(f"worker {pid} ({address}): {len(files)} callgrind profiles for {len(inbound)} "
                             f"packets captured: cannot pair them")
        seen = set()
        for f, (p, kind) in zip(files, inbound, strict=False):
            pairing.append({"file": f.name, "kind": kind, "measured": begin <= p.ns <= end})
            if not begin <= p.ns <= end:
                continue
            if (p.key, p.status) in seen:
                duplicates[kind] += 1
            seen.add((p.key, p.status))
            prof = callgrind.parse(f)
            per_kind[kind].add(prof, bool(p.status))
            everything.add(prof, bool(p.status))
    return {
        "per_call": everything.summary(calls),
        "per_kind": {k: {**t.summary(t.count, top=25), "per_call": round(t.count / calls, 2)}
                     for k, t in sorted(per_kind.items())},
        "duplicates": dict(duplicates),
        "pairing": pairing,
    }


# --- report ---------------------------------------------------------------------------------

def ratio(p, n):
    return p / n if p and n else None


def build(results: list[dict], info: dict) -> dict:
    by_scenario: dict[str, dict] = {}
    for r in results:
        s = by_scenario.setdefault(r["scenario"], {"scenario": r["scenario"], "runs": {c: [] for c in CONFIGS}})
        s["runs"][r["config"]].append(r)
    for s in by_scenario.values():
        for label in CONFIGS:
            totals = [r["per_call"]["Ir"] for r in s["runs"][label]]
            s[label] = {"Ir_per_call": statistics.median(totals) if totals else None,
                        "spread": (max(totals) - min(totals)) / min(totals) if len(totals) > 1 else None}
        s["ratio"] = ratio(s["python"]["Ir_per_call"], s["native"]["Ir_per_call"])
        s["ratio_compiled"] = ratio(s["python-compiled"]["Ir_per_call"], s["native"]["Ir_per_call"])
    return {"machine": info, "method": __doc__.split("\n\n")[1], "scenarios": list(by_scenario.values())}


def _n(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def merge(docs: list[dict]) -> dict:
    """One document from several runs' (same platform): scenarios in first-seen order, a later
    run's scenario replacing an earlier one's; the machine of the first, each run's noted."""
    scenarios: dict[str, dict] = {}
    for doc in docs:
        for s in doc["scenarios"]:
            scenarios[s["scenario"]] = s
    machine = dict(docs[0]["machine"])
    replaced = {name for doc in docs[1:] for name in (s["scenario"] for s in doc["scenarios"])}
    machine["not_measured"] = {k: v for doc in docs for k, v in doc["machine"].get("not_measured", {}).items()
                               if k not in scenarios or not scenarios[k]["ratio"]}
    machine["merged"] = [{"scenarios": [s["scenario"] for s in doc["scenarios"]],
                          "load_before": doc["machine"].get("load_before"),
                          "elapsed_s": doc["machine"].get("elapsed_s")} for doc in docs]
    machine["rerun_alone"] = sorted(replaced)
    return {**docs[0], "machine": machine, "scenarios": list(scenarios.values())}


# the per-message table covers these (the 1k / 100k variants repeat their base scenario's rows)
KIND_TABLE = ("register-db1", "register-db2", "call", "call-media", "sbc")


def markdown(doc: dict) -> str:
    m = doc["machine"]
    def spread(x):
        return "-" if x is None else f"{x:.3%}"
    lines = [f"Measured on: {m.get('cpu')}, {m.get('kamailio')}, Python {m.get('embedded_python', '?')}, "
             f"{m.get('valgrind')}; per run {m.get('warmup')} warm-up and {m.get('measured')} measured calls "
             f"(or registrations), one call at a time, one SIP worker per socket, a fresh Kamailio per run, "
             f"{len(doc['scenarios'][0]['runs']['python']) if doc['scenarios'] else 0} runs per config.", "",
             "| scenario | messages per call | instructions per call N / P | P-N | P/N | runs differ by N / P | "
             "entries into Python per call | KSR calls per call |",
             "|---|---|---|---|---|---|---|---|"]
    for s in doc["scenarios"]:
        n, p = s["native"], s["python"]
        if not s["ratio"]:
            lines.append(f"| {s['scenario']} | - | - | - | - | - | - | - |")
            continue
        pr, nr = s["runs"]["python"][0]["per_call"], s["runs"]["native"][0]["per_call"]
        lines.append(f"| {s['scenario']} | {nr['messages']:g} | {_n(n['Ir_per_call'])} / {_n(p['Ir_per_call'])} | "
                     f"{_n(p['Ir_per_call'] - n['Ir_per_call'])} | {s['ratio']:.2f} | "
                     f"{spread(n['spread'])} / {spread(p['spread'])} | {pr['python_entries']:g} | "
                     f"{pr['ksr_calls']:g} |")
    if any(s.get("ratio_compiled") for s in doc["scenarios"]):
        lines += ["", "Compiled routing (python.compiled, `make compile`: kemi/compiled.py), C = python-compiled:", "",
                  "| scenario | instructions per call N / P / C | P/N | C/N | C/P | runs differ by C |",
                  "|---|---|---|---|---|---|"]
        for s in doc["scenarios"]:
            if not s.get("ratio_compiled"):
                continue
            n, p, c = (s[k]["Ir_per_call"] for k in CONFIGS)
            lines.append(f"| {s['scenario']} | {_n(n)} / {_n(p)} / {_n(c)} | {_f(s['ratio'])} | "
                         f"{s['ratio_compiled']:.2f} | {_f(ratio(c, p))} | {spread(s['python-compiled']['spread'])} |")
    for name, why in m.get("not_measured", {}).items():
        lines.append(f"\n{name}: not measured: {why}")
    if m.get("rerun_alone"):
        lines.append(f"\nRun again on its own, merged in (--merge): {', '.join(m['rerun_alone'])}.")
    lines += ["", "Where they go, instructions per call (first run of each; parts by object file, "
              "bench/callgrind.py):", "",
              "| scenario | config | " + " | ".join(callgrind.CATEGORIES) + " |",
              "|---|---|" + "---|" * len(callgrind.CATEGORIES)]
    for s in doc["scenarios"]:
        for label in CONFIGS:
            if not s["runs"].get(label):
                continue
            parts = s["runs"][label][0]["per_call"]["by_part"]
            lines.append(f"| {s['scenario']} | {label} | "
                         + " | ".join(_n(parts.get(c, 0)) for c in callgrind.CATEGORIES) + " |")
    lines += ["", "Per message, by what Kamailio did with it (instructions per message, first run):", "",
              "| scenario | message | per call | native | python | P-N | P/N | of P: libpython / KSR glue |",
              "|---|---|---|---|---|---|---|---|"]
    for s in doc["scenarios"]:
        if s["scenario"] not in KIND_TABLE or not (s["runs"]["native"] and s["runs"]["python"]):
            continue
        nk, pk = s["runs"]["native"][0]["per_kind"], s["runs"]["python"][0]["per_kind"]
        for kind in sorted(set(nk) | set(pk)):
            n, p = nk.get(kind, {}).get("Ir"), pk.get(kind, {}).get("Ir")
            per = (pk.get(kind) or nk.get(kind))["per_call"]
            parts = pk.get(kind, {}).get("by_part", {})
            lines.append(f"| {s['scenario']} | {kind} | {per:g} | {_n(n)} | {_n(p)} | "
                         f"{_n(p - n) if n and p else '-'} | {f'{p / n:.2f}' if n and p else '-'} | "
                         f"{_n(parts.get('libpython', 0))} / {_n(parts.get('ksr_glue', 0))} |")
    return "\n".join(lines) + "\n"


# docs/benchmark.md: the tables between these markers are written by --publish
MARKS = {False: ("<!-- instructions-table:start (written by `python3 -m bench.instructions --publish`) -->",
                 "<!-- instructions-table:end -->"),
         True: ("<!-- instructions-table-debian13:start (written by `python3 -m bench.instructions --publish "
                "--debian13`) -->", "<!-- instructions-table-debian13:end -->")}
DOC = PROJECT_ROOT / "docs" / "benchmark.md"


def publish(doc: dict, debian13: bool, path: Path = DOC) -> Path:
    start, end = MARKS[debian13]
    text = path.read_text()
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        raise SystemExit(f"bench.instructions: no {start!r} ... {end!r} markers in {path}")
    path.write_text(text[:a] + start + "\n\n" + markdown(doc) + "\n" + end + text[b + len(end):])
    return path


def valgrind_version() -> str:
    try:
        return subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


def embedded_python() -> str:
    import sysconfig
    return sysconfig.get_python_version()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", help=f"comma-separated (default: {','.join(DEFAULT_SCENARIOS)}; also "
                                        f"call-held-100 and call-held-1000, slow: the held calls go through valgrind)")
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help=f"comma-separated, of {','.join(CONFIGS)} (python-compiled: make compile first)")
    ap.add_argument("--runs", type=int, default=2, help="runs per scenario and config (they must agree)")
    ap.add_argument("--calls", type=int, default=MEASURED_CALLS, help="measured calls per run")
    ap.add_argument("--cache-sim", action="store_true", help="callgrind's cache simulation too (I1/D1/LL misses)")
    ap.add_argument("--footprint", action="store_true",
                    help="per-instruction profiles: the 64-byte code lines each message runs (what a cold "
                         "instruction cache must fetch)")
    ap.add_argument("--count-entries", action="store_true",
                    help="metrics.count_python_entries on, as make bench runs (off: production default)")
    ap.add_argument("--keep-profiles", action="store_true",
                    help="keep callgrind's files (/tmp/kemi-instrSLOT/SCENARIO-CONFIG-RUN/callgrind)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--name", default="instructions", help="output file names (NAME.json, NAME.md)")
    ap.add_argument("--publish", action="store_true",
                    help="no run: write the tables of OUT/NAME.json into docs/benchmark.md")
    ap.add_argument("--debian13", action="store_true", help="with --publish: the Debian 13 run "
                    "(bench/results-trixie/), into its own place")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="no run: OUT/NAME.json from these runs' files, a later file's scenario replacing "
                         "an earlier one's (a scenario re-run alone)")
    args = ap.parse_args(argv)
    if args.merge:
        doc = merge([json.loads(f.read_text()) for f in args.merge])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        (args.out / f"{args.name}.md").write_text(markdown(doc))
        log(f"bench.instructions: merged {len(args.merge)} runs into {args.out / (args.name + '.json')}")
        return 0
    if args.publish:
        out = RESULTS_DIR.parent / "results-trixie" if args.debian13 and args.out == RESULTS_DIR else args.out
        doc = json.loads((out / f"{args.name}.json").read_text())
        log(f"bench.instructions: wrote {publish(doc, args.debian13)}")
        return 0
    if os.geteuid() != 0:
        print("bench.instructions: run as root (it starts Kamailio, MariaDB and SIPp)", file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is missing: scripts/install.sh --bench", file=sys.stderr)
        return 2
    scenarios = select(args.scenarios.split(",") if args.scenarios else list(DEFAULT_SCENARIOS))
    configs = args.configs.split(",")
    if set(configs) - set(CONFIGS):
        print(f"bench.instructions: unknown configs {sorted(set(configs) - set(CONFIGS))}", file=sys.stderr)
        return 2
    from kemi_tools.stack import kamailio as kemi_kamailio
    env = InstrEnv(Path(f"/tmp/kemi-instr{SLOT or ''}"), "1", "0", 1, kemi_kamailio.MEMORY_MANAGER)
    env.configs = tuple(configs)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    info = machine()
    info.update(valgrind=valgrind_version(), warmup=WARMUP_CALLS, measured=args.calls, rates=RATE,
                embedded_python=embedded_python(), cache_sim=args.cache_sim, count_entries=args.count_entries,
                footprint=args.footprint)
    results: list[dict] = []
    started = time.monotonic()
    engine = None
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> dict:                     # after every scenario: a later failure loses nothing
        info["elapsed_s"] = round(time.monotonic() - started)
        doc = build(results, info)
        (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        (args.out / f"{args.name}.md").write_text(markdown(doc))
        return doc

    info["not_measured"] = {}
    try:
        env.start()
        for scenario in scenarios:
            log(f"\n== {scenario.name}: {scenario.title}")
            media = None
            if scenario.media:
                engine = engine or rtpengine_daemon(PORT_BASE + 70, MEDIA_PORT_MIN, MEDIA_PORT_MAX)
                if env.rtpengine is None:
                    env.rtpengine = start_rtpengine(engine, env.workdir, env.load_cpus)
                media = media_table(engine)
            try:
                for run in range(args.runs):
                    for label in (configs if run % 2 == 0 else configs[::-1]):
                        r = measure_with_retries(env, scenario, label, run, media, args)
                        results.append(r)
                        pc = r["per_call"]
                        log(f"  {label:6} run {run}: {pc['Ir']:>10,} instructions per call "
                            f"({pc['messages']} messages; start {r['start_s']} s, {r['wall_s']} s in all)")
            except StartError as exc:       # this scenario only: say so, go on with the next
                info["not_measured"][scenario.name] = str(exc)
                print(f"bench.instructions: {scenario.name} not measured: {exc}", file=sys.stderr)
            save()
    except KeyboardInterrupt:
        log("bench.instructions: interrupted; stopping what it started")
    except StartError as exc:
        print(f"bench.instructions: {exc}", file=sys.stderr)
        return 1
    finally:
        env.stop()
    doc = save()
    log("\n" + markdown(doc))
    log(f"bench.instructions: {info['elapsed_s']} s; wrote {args.out / (args.name + '.json')}, "
        f"{args.out / (args.name + '.md')}")
    return 1 if info["not_measured"] else 0


def measure_with_retries(env: InstrEnv, scenario: Scenario, label: str, run: int, media: dict | None,
                         args) -> dict:
    for attempt in range(1 + RETRIES):
        try:
            return measure_run(env, scenario, label, run, media, args.cache_sim, args.calls, args.keep_profiles,
                               args.count_entries, args.footprint)
        except Unclean as exc:      # a stall of the shared machine (valgrind is ~50x slower, T1 is
            if attempt == RETRIES:  # 500 ms): the run is repeated
                raise StartError(str(exc)) from None
            log(f"  {exc}; again in {RETRY_PAUSE_S} s")
            time.sleep(RETRY_PAUSE_S)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
