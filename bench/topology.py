"""`make bench-topology`: what topology hiding costs per call, hiding off against hiding on.

    python3 -m bench.topology [--calls N] [--rate R] [--rounds K] [--out DIR]

The bench's SBC on loopback sides (bench/stack.py: public 127.0.1.1, private 127.0.2.1; the
trunk on the public side calls through the dispatcher to two private gateways, rtpengine
between the sides), the Python routing only (bench/native.cfg has no topology hiding), in two
Kamailios started side by side from the same settings except one key, sbc.public.hide_topology,
both pinned to the same CPU. Every round offers the same calls (INVITE/180/200/ACK/BYE, 100 ms
held) to each, alternating which goes first, at a rate both carry without failures, and
measures per call:

* Kamailio's CPU (user + system of all its processes, /proc);
* MariaDB's CPU (mariadbd, /proc): the SERVER IS SHARED with whatever else uses it on this
  machine (other test runs), so this column is an upper bound of topos's database work;
* entries into Python (settings metrics.count_python_entries, both Kamailios);
* topos records written (rows added to topos_d and topos_t).

The machine is shared and noisy: medians over the rounds, and each round, are printed and
written to OUT/topology.json and OUT/topology.md. Everything it started is stopped by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import StartError

from bench.load import FIXTURES_DIR, SCENARIO_DIR, Sipp, client_argv, read_stats, server_argv
from bench.stack import (PRIVATE_GATEWAYS, PUBLIC_GATEWAY, PYTHON_CFG, SBC_PUBLIC, BenchDatabase, BenchKamailio,
                         media_table, rtpengine_daemon, start_rtpengine, wait_until)

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT + 700          # clear of the tests' and make bench's ports in the slot
MEDIA_PORT_MIN = 20000 + 2000 * SLOT if SLOT <= 5 else 6000 + 2000 * (SLOT - 6)     # the slot's media range
MEDIA_PORT_MAX = MEDIA_PORT_MIN + 1999
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
ROUTE_SECRET = "bench-topology-secret-0123456789abcdef"
MODES = ("off", "on")
CALL_HOLD_MS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(text, flush=True)


def mariadb_cpu_seconds() -> float:
    """user+system CPU of every mariadbd process so far (the shared server)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        if raw[raw.find("(") + 1:raw.rfind(")")] != "mariadbd":
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])
    return total / CLK_TCK


class Bench:
    def __init__(self, workdir: Path, kamailio_cpus: str, load_cpus: str, children: int):
        self.workdir, self.kamailio_cpus, self.load_cpus, self.children = workdir, kamailio_cpus, load_cpus, children
        self.owned: list = []
        self.db = BenchDatabase(f"kemi_bench_topology{SLOT or ''}", workdir)
        self.kamailios: dict[str, BenchKamailio] = {}
        self.gateway_port, self.caller_port = PORT_BASE + 10, PORT_BASE + 20

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        daemon = mariadb.start(self.workdir)
        if daemon:
            self.owned.append(daemon)
        self.db.create(10)
        engine = rtpengine_daemon(PORT_BASE + 30, MEDIA_PORT_MIN, MEDIA_PORT_MAX)
        self.owned.append(start_rtpengine(engine, self.workdir, self.load_cpus))
        for n, mode in enumerate(MODES):
            kam = BenchKamailio(
                f"python-hiding-{mode}", PYTHON_CFG, PORT_BASE + n, self.db, self.workdir / mode,
                self.kamailio_cpus, self.children, media=media_table(engine), sbc_gateway_port=self.gateway_port,
                extra={"security": {"route_secret": ROUTE_SECRET},
                       "sbc.public": {"hide_topology": mode == "on"}})
            kam.start()
            self.owned.append(kam)
            self.kamailios[mode] = kam
        for address in PRIVATE_GATEWAYS:
            gw = Sipp(server_argv(FIXTURES_DIR / "gw_answer.xml", self.gateway_port, local_ip=address),
                      self.workdir / f"gateway-{address}", self.load_cpus).start()
            self.owned.append(gw)
        time.sleep(0.3)
        self.csv = self.workdir / "trunk.csv"
        self.csv.write_text("SEQUENTIAL\n" + "\n".join(f"1555999{i:04d};1555010{i:04d};{SBC_PUBLIC}"
                                                       for i in range(1000)) + "\n")

    def stop(self) -> None:
        for thing in reversed(self.owned):
            try:
                thing.stop()
            except Exception as exc:       # stop everything else all the same
                log(f"bench: stopping {thing}: {exc}")
        self.db.drop()

    def run(self, mode: str, calls: int, rate: float, round_no: int) -> dict:
        kam = self.kamailios[mode]
        kam.wait_idle()
        before = (kam.cpu_seconds(), mariadb_cpu_seconds(), sum(kam.python_entries().values()),
                  self.db.count("topos_d") + self.db.count("topos_t"))
        workdir = self.workdir / f"{mode}-{round_no}"
        argv = client_argv(kam.sbc_target, SCENARIO_DIR / "trunk.xml", self.csv, self.caller_port, calls, rate,
                           local_ip=PUBLIC_GATEWAY, sets={"hold_ms": CALL_HOLD_MS}, measure=True) + [
            "-default_behaviors", "all,-abortunexp"]
        sipp = Sipp(argv, workdir, self.load_cpus).start()
        sipp.wait(calls / rate + 60)
        kam.wait_idle()
        after = (kam.cpu_seconds(), mariadb_cpu_seconds(), sum(kam.python_entries().values()),
                 self.db.count("topos_d") + self.db.count("topos_t"))
        stats = read_stats(workdir) or {}
        ok = int(stats.get("SuccessfulCall(C)", 0))
        failed = int(stats.get("FailedCall(C)", 0))
        per = max(ok, 1)
        return {"mode": mode, "round": round_no, "calls": calls, "rate": rate, "successful": ok, "failed": failed,
                "kamailio_cpu_ms_per_call": 1000 * (after[0] - before[0]) / per,
                "mariadb_cpu_ms_per_call": 1000 * (after[1] - before[1]) / per,
                "python_entries_per_call": (after[2] - before[2]) / per,
                "topos_rows_per_call": (after[3] - before[3]) / per}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(results: list[dict]) -> str:
    keys = [("kamailio_cpu_ms_per_call", "Kamailio CPU ms/call", 3), ("mariadb_cpu_ms_per_call",
            "MariaDB CPU ms/call (shared server)", 3), ("python_entries_per_call", "entries into Python/call", 1),
            ("topos_rows_per_call", "topos rows written/call", 1)]
    lines = ["| hiding | " + " | ".join(title for _, title, _ in keys) + " | calls ok / failed |",
             "|---|" + "---|" * (len(keys) + 1)]
    for mode in MODES:
        rows = [r for r in results if r["mode"] == mode]
        cells = []
        for key, _, digits in keys:
            values = [r[key] for r in rows]
            cells.append(f"{median(rows, key):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})")
        done = f"{sum(r['successful'] for r in rows)} / {sum(r['failed'] for r in rows)}"
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {done} |")
    off, on = ([r for r in results if r["mode"] == m] for m in MODES)
    lines.append("")
    lines.append(f"Hiding adds {median(on, 'kamailio_cpu_ms_per_call') - median(off, 'kamailio_cpu_ms_per_call'):.3f} "
                 f"ms of Kamailio CPU per call (medians; ranges in brackets over the rounds).")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.topology", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300, help="calls per run")
    ap.add_argument("--rate", type=float, default=30, help="calls/s offered (both must carry it cleanly)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--kamailio-cpus", default="1")
    ap.add_argument("--sipp-cpus", default="0")
    ap.add_argument("--children", type=int, default=4)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.topology: run as root (it starts Kamailio, rtpengine and SIPp)", file=sys.stderr)
        return 2
    bench = Bench(Path(f"/tmp/kemi-bench-topology{SLOT or ''}"), args.kamailio_cpus, args.sipp_cpus, args.children)
    results: list[dict] = []
    try:
        bench.start()
        for n in range(args.rounds):
            order = MODES if n % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                res = bench.run(mode, args.calls, args.rate, n)
                results.append(res)
                log(f"bench.topology: round {n + 1} hiding {mode}: {res['successful']} ok, {res['failed']} failed, "
                    f"Kamailio {res['kamailio_cpu_ms_per_call']:.3f} ms/call, MariaDB "
                    f"{res['mariadb_cpu_ms_per_call']:.3f} ms/call, {res['python_entries_per_call']:.1f} Python "
                    f"entries/call, {res['topos_rows_per_call']:.1f} topos rows/call")
    except (StartError, KeyboardInterrupt) as exc:
        log(f"bench.topology: stopped: {exc}")
        return 1
    finally:
        bench.stop()
    text = table(results)
    log("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3]
    (args.out / "topology.json").write_text(json.dumps({"load_after": load, "runs": results}, indent=1) + "\n")
    (args.out / "topology.md").write_text(f"Load average after the run: {' '.join(load)} (a shared machine).\n\n"
                                          + text + "\n")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
