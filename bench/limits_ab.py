"""What the call limits cost, bench-style A/B: `python3 -m bench.limits_ab [--calls N] [--rate R] [--rounds K]`.

One SBC Kamailio (kamailio.cfg, the Python routing; loopback sides and gateways as make bench's
sbc scenario, bench/stack.py; media off, so the figure is the signalling's alone), started in
turn with each configuration below. Each start gets the same load: N trunk calls at R calls/s
(SIPp from the public gateway's address, kemi_tools/scenarios/trunk_call.xml, held 100 ms) to two private
gateways (SIPp). Measured: Kamailio's CPU (user + system of all its processes, from /proc) per
call, less what it uses idle over the same time (measured for 5 s before each load); every
call must succeed (none refused: the limits are far above the load; SIPp may retransmit).

    none    no [limits]: no dialog module, no pipelimit
    calls   every concurrent limit of a gateway call: side, trunk (both sides) and gateway (both
            ends) counted per call, dialog profiles (5 set + 5 sizes read)
    all     calls, plus gateway_cps and trunk_cps (2 pipelimit checks per INVITE)

Rounds alternate the configurations (none, calls, all, none, ...) so a change of the machine's
load hits each alike; the table has every round and each configuration's median. The machine
is shared and noisy: read the medians of several rounds, and the spread beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

from bench.load import client, server
from bench.stack import (PRIVATE_GATEWAYS, PUBLIC_GATEWAY, PYTHON_CFG, SBC_PUBLIC, BenchDatabase, BenchKamailio,
                         toml_dump)
from kemi.settings import load_settings
from kemi_tools.stack import mariadb

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT + 900          # clear of the test ranges' Kamailio and SIPp ports
HIGH = 100_000                                   # limits that never refuse this load
CONFIGS = {
    "none": {},
    "calls": {"trunk_calls": {"public": HIGH, "private": HIGH}, "side_calls": {"public": HIGH, "private": HIGH},
              "gateway_calls": HIGH},
    "all": {"trunk_calls": {"public": HIGH, "private": HIGH}, "side_calls": {"public": HIGH, "private": HIGH},
            "gateway_calls": HIGH, "gateway_cps": HIGH, "trunk_cps": {"public": HIGH, "private": HIGH}},
}
HOLD_MS = 100
IDLE_WINDOW = 5.0                                # s of idle Kamailio measured before each load


class LimitsKamailio(BenchKamailio):
    """The bench's SBC Kamailio with a [limits] table."""
    limits: dict = {}

    def write_settings(self):
        super().write_settings()
        file = self.workdir / "settings.toml"
        file.write_text(file.read_text() + "\n" + toml_dump({"limits": self.limits}))
        self.settings = load_settings(file)
        return self.settings


def run_once(kam: LimitsKamailio, workdir: Path, calls: int, rate: float, load_cpus: str) -> dict:
    csv = workdir / "trunk.csv"
    csv.write_text("SEQUENTIAL\n" + "\n".join(f"1555999{i:04d};1555010{i:04d};{SBC_PUBLIC}" for i in range(calls))
                   + "\n")
    gateways = [server("gw_answer.xml", workdir / f"gw-{a}", PORT_BASE + 11, load_cpus, local_ip=a).start()
                for a in PRIVATE_GATEWAYS]
    try:
        time.sleep(0.3)
        kam.wait_idle()
        # what Kamailio's processes use doing nothing (timers, the dialog and pipelimit timers
        # among them), per second: subtracted from the load's CPU over its wall time
        before, started = kam.cpu_seconds(), time.monotonic()
        time.sleep(IDLE_WINDOW)
        idle = (kam.cpu_seconds() - before) / (time.monotonic() - started)
        before, started = kam.cpu_seconds(), time.monotonic()
        # CPU, not response times, is measured: SIPp may retransmit (a busy shared machine
        # delays answers now and then; make bench's zero-retransmission rule would fail calls)
        load = client("trunk_call.xml", kam.sbc_target, csv, workdir / "load", PORT_BASE + 12, calls, rate,
                      load_cpus, PUBLIC_GATEWAY, sets={"hold_ms": HOLD_MS}, timeout=calls / rate + 60,
                      extra=["-default_behaviors", "all,-abortunexp"])
        load.max_retrans, load.recv_timeout = 5, 10.0
        result = load.start().wait()
        cpu, wall = kam.cpu_seconds() - before, time.monotonic() - started
        ok = result.sipp_count("SuccessfulCall") or 0
        failed = result.sipp_count("FailedCall") or 0
        net = cpu - idle * wall
        return {"calls": calls, "successful": ok, "failed": failed, "cpu_s": round(cpu, 3),
                "idle_cpu_per_s": round(idle, 4), "wall_s": round(wall, 1),
                "cpu_us_per_call": round(1e6 * net / ok, 1) if ok else None,
                "raw_us_per_call": round(1e6 * cpu / ok, 1) if ok else None}
    finally:
        for g in gateways:
            g.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.limits_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/limits-ab.json")
    args = parser.parse_args(argv)
    # SIGTERM stops it like Ctrl-C: the finally blocks stop Kamailio and the SIPps by PID
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(f"/tmp/kemi-limits-ab-{SLOT}")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cpus = sorted(os.sched_getaffinity(0))
    kam_cpus, load_cpus = str(cpus[0]), ",".join(map(str, cpus[1:] or cpus))
    started_db = mariadb.start(workdir)
    db = BenchDatabase(f"kemi_limits_ab{SLOT}", workdir)
    db.create(10)
    results: list[dict] = []
    kam = None
    try:
        for round_no in range(1, args.rounds + 1):
            for label, limits in CONFIGS.items():
                kam = LimitsKamailio("python", PYTHON_CFG, PORT_BASE, db, workdir / f"{label}-{round_no}",
                                     kam_cpus, 2, memory_manager="tlsf", sbc_gateway_port=PORT_BASE + 11)
                kam.limits = limits
                kam.start()
                try:
                    row = {"round": round_no, "config": label,
                           **run_once(kam, kam.workdir, args.calls, args.rate, load_cpus)}
                finally:
                    kam.stop()
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if kam:
            kam.stop()
        db.drop()
        if started_db:
            started_db.stop()
    medians = {label: statistics.median(r["cpu_us_per_call"] for r in results
                                        if r["config"] == label and r["cpu_us_per_call"])
               for label in CONFIGS}
    spread = {label: [r["cpu_us_per_call"] for r in results if r["config"] == label] for label in CONFIGS}
    print("\nconfig  median CPU µs/call, idle subtracted  (each round)")
    for label in CONFIGS:
        print(f"{label:6}  {medians[label]:8.1f}           {spread[label]}")
    base = medians["none"]
    for label in ("calls", "all"):
        print(f"{label} - none: {medians[label] - base:+.1f} µs per call ({100 * (medians[label] / base - 1):+.0f} %)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"calls": args.calls, "rate": args.rate, "rounds": results, "median_us": medians,
                               "machine": {"cpus": len(cpus), "load_avg": os.getloadavg()}}, indent=1) + "\n")
    ok = all(r["failed"] == 0 and r["successful"] == args.calls for r in results)
    print("every call succeeded" if ok else "SOME CALLS FAILED: the figures are not comparable", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
