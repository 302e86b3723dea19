"""`make bench-topology`: what topology hiding costs per call, hiding off against hiding on.

    python3 -m bench.topology [--calls N] [--rate R] [--rounds K] [--out DIR]

The bench's SBC on loopback sides (bench/stack.py: public 127.0.1.1, private 127.0.2.1; the
trunk on the public side calls through the dispatcher to two private gateways, rtpengine
between the sides), the Python routing only (bench/native.cfg has no topology hiding), in three
Kamailios started side by side from the same settings but for hiding: off, on (the public side
hides: topos's event callback set), both (both sides hide: the same calls hidden, no callback),
all pinned to the same CPU. Every round offers the same calls (INVITE/180/200/ACK/BYE, 100 ms
held) to each, in alternating order, at a rate all carry without failures, and measures per call:

* Kamailio's CPU (user + system of all its processes, /proc);
* the database's CPU and statements: both Kamailios use a MariaDB of the bench's own (own
  datadir, socket and port; MariaDB's defaults, so every write is a commit with its fsync),
  which nothing else uses: its CPU (/proc) and its statement counters are the calls' alone;
* entries into Python (settings metrics.count_python_entries, both Kamailios);
* topos records written (rows added to topos_d and topos_t).

The machine is shared and noisy (other test runs use the same two cores): medians over the
rounds, and the range, are printed and written to OUT/topology.json and OUT/topology.md.
Everything it started is stopped by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT, parse_settings
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import StartError

from bench.load import client, server
from bench.stack import (PRIVATE_GATEWAYS, PUBLIC_GATEWAY, PYTHON_CFG, SBC_PUBLIC, BenchDatabase, BenchKamailio,
                         media_table, rtpengine_daemon, start_rtpengine)
from kemi_tools.sipp import process_cpu_seconds

# the fault tests' private MariaDB (tests/harness/own_mariadb.py), outside mypy's files
sys.path.insert(0, str(PROJECT_ROOT / "tests"))
from harness.own_mariadb import OwnMariaDB  # type: ignore[import-not-found]

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT + 700          # clear of the tests' and make bench's ports in the slot
MEDIA_PORT_MIN = 20000 + 2000 * SLOT if SLOT <= 5 else 6000 + 2000 * (SLOT - 6)     # the slot's media range
MEDIA_PORT_MAX = MEDIA_PORT_MIN + 1999
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
ROUTE_SECRET = "bench-topology-secret-0123456789abcdef"
# off: nothing hides; on: the public side hides (topos's event callback set: one side hides);
# both: both sides hide (the same calls hidden, no event callback: what the callback costs)
MODES = ("off", "on", "both")
CALL_HOLD_MS = 100
DB_NAME, DB_USER, DB_PASSWORD = "kemi_topology", "kemi_topology", "kemi_topology_pw"
# the database's statements and commit flushes (SHOW GLOBAL STATUS of the bench's own server)
DB_COUNTERS = ("Com_select", "Com_insert", "Com_update", "Com_delete", "Innodb_data_fsyncs")


def log(text: str) -> None:
    print(text, flush=True)


class BenchDb(BenchDatabase):
    """What BenchKamailio needs of its database: the URLs (the bench's own server, over TCP)."""

    def __init__(self, port: int):     # not BenchDatabase's: no database on the shared server
        self.name = DB_NAME
        self.url = f"mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{port}/{DB_NAME}"
        self.ro_url = f"mysql://{DB_USER}_ro:{DB_PASSWORD}@127.0.0.1:{port}/{DB_NAME}"


class Bench:
    def __init__(self, workdir: Path, kamailio_cpus: str, load_cpus: str, children: int, flush_at_commit: int = 1):
        self.workdir, self.kamailio_cpus, self.load_cpus, self.children = workdir, kamailio_cpus, load_cpus, children
        self.flush_at_commit = flush_at_commit
        self.owned: list = []
        self.server = OwnMariaDB(PORT_BASE + 40, name=f"kemi-bench-topology{SLOT}")
        self.db = BenchDb(self.server.port)
        self.kamailios: dict[str, BenchKamailio] = {}
        self.gateway_port, self.caller_port = PORT_BASE + 10, PORT_BASE + 20

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server.install().start()
        self.owned.append(self.server)
        # 1 (MariaDB's default): every commit is flushed to disk; 2: once a second
        self.server.sql(f"SET GLOBAL innodb_flush_log_at_trx_commit = {self.flush_at_commit};")
        mariadb.provision(parse_settings({"database": {"url": self.db.url, "ro_url": self.db.ro_url}}),
                          socket=self.server.socket)
        engine = rtpengine_daemon(PORT_BASE + 30, MEDIA_PORT_MIN, MEDIA_PORT_MAX)
        self.owned.append(start_rtpengine(engine, self.workdir, self.load_cpus))
        for n, mode in enumerate(MODES):
            kam = BenchKamailio(
                f"python-hiding-{mode}", PYTHON_CFG, PORT_BASE + n, self.db, self.workdir / mode,
                self.kamailio_cpus, self.children, media=media_table(engine), sbc_gateway_port=self.gateway_port,
                extra={"security": {"route_secret": ROUTE_SECRET},
                       "sbc.public": {"hide_topology": mode != "off"},
                       "sbc.private": {"hide_topology": mode == "both"}})
            kam.start()
            self.owned.append(kam)
            self.kamailios[mode] = kam
        for address in PRIVATE_GATEWAYS:
            gw = server("gw_answer.xml", self.workdir / f"gateway-{address}", self.gateway_port, self.load_cpus,
                        local_ip=address).start()
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
        self.server.remove()

    def db_state(self) -> tuple[float, dict[str, int], int]:
        """(the server's CPU seconds, its counters, topos rows) now."""
        status = dict(line.split("\t") for line in self.server.sql("SHOW GLOBAL STATUS;").splitlines() if "\t" in line)
        rows = int(self.server.sql("SELECT (SELECT COUNT(*) FROM topos_d) + (SELECT COUNT(*) FROM topos_t);",
                                   DB_NAME).strip())
        return process_cpu_seconds(self.server.daemon.pid), {k: int(status[k]) for k in DB_COUNTERS}, rows

    def run(self, mode: str, calls: int, rate: float, round_no: int) -> dict:
        kam = self.kamailios[mode]
        kam.wait_idle()
        before = (kam.cpu_seconds(), sum(kam.python_entries().values()), *self.db_state())
        workdir = self.workdir / f"{mode}-{round_no}"
        sipp = client("trunk_call.xml", kam.sbc_target, self.csv, workdir, self.caller_port, calls, rate,
                      self.load_cpus, local_ip=PUBLIC_GATEWAY, sets={"hold_ms": CALL_HOLD_MS}, measure=False,
                      extra=["-default_behaviors", "all,-abortunexp"]).start()
        stats = sipp.wait(calls / rate + 60).stats
        kam.wait_idle()
        after = (kam.cpu_seconds(), sum(kam.python_entries().values()), *self.db_state())
        ok = int(stats.get("SuccessfulCall(C)", 0))
        failed = int(stats.get("FailedCall(C)", 0))
        per = max(ok, 1)
        counters = {k: (after[3][k] - before[3][k]) / per for k in DB_COUNTERS}
        return {"mode": mode, "round": round_no, "calls": calls, "rate": rate, "successful": ok, "failed": failed,
                "kamailio_cpu_ms_per_call": 1000 * (after[0] - before[0]) / per,
                "mariadb_cpu_ms_per_call": 1000 * (after[2] - before[2]) / per,
                "db_statements_per_call": sum(v for k, v in counters.items() if k.startswith("Com_")),
                "db_writes_per_call": counters["Com_insert"] + counters["Com_update"] + counters["Com_delete"],
                "db_log_fsyncs_per_call": counters["Innodb_data_fsyncs"],
                "python_entries_per_call": (after[1] - before[1]) / per,
                "topos_rows_per_call": (after[4] - before[4]) / per}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(results: list[dict]) -> str:
    keys = [("kamailio_cpu_ms_per_call", "Kamailio CPU ms/call", 2), ("mariadb_cpu_ms_per_call",
            "MariaDB CPU ms/call", 2), ("db_statements_per_call", "SQL statements/call", 1),
            ("db_writes_per_call", "of them writes", 1), ("db_log_fsyncs_per_call", "InnoDB fsyncs/call", 1),
            ("python_entries_per_call", "entries into Python/call", 1), ("topos_rows_per_call", "topos rows/call", 1)]
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
    off, on, both = ([r for r in results if r["mode"] == m] for m in MODES)
    cpu = "kamailio_cpu_ms_per_call"
    lines.append("")
    lines.append(f"off: nothing hides; on: sbc.public.hide_topology (topos's event callback set); both: both "
                 f"sides hide (no callback). Medians over the rounds, ranges in brackets. Hiding (on) adds "
                 f"{median(on, cpu) - median(off, cpu):.2f} ms of Kamailio CPU per call; the event callback "
                 f"(on - both) {median(on, cpu) - median(both, cpu):.2f} ms.")
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
    ap.add_argument("--flush-at-commit", type=int, choices=(1, 2), default=1,
                    help="the bench database's innodb_flush_log_at_trx_commit (1: MariaDB's default)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.topology: run as root (it starts Kamailio, rtpengine and SIPp)", file=sys.stderr)
        return 2
    bench = Bench(Path(f"/tmp/kemi-bench-topology{SLOT or ''}"), args.kamailio_cpus, args.sipp_cpus, args.children,
                  args.flush_at_commit)
    results: list[dict] = []
    try:
        bench.start()
        for n in range(args.rounds):
            order = MODES if n % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                res = bench.run(mode, args.calls, args.rate, n)
                results.append(res)
                log(f"bench.topology: round {n + 1} hiding {mode}: {res['successful']} ok, {res['failed']} failed, "
                    f"Kamailio {res['kamailio_cpu_ms_per_call']:.2f} ms/call, MariaDB "
                    f"{res['mariadb_cpu_ms_per_call']:.2f} ms/call, {res['db_statements_per_call']:.1f} statements "
                    f"({res['db_writes_per_call']:.1f} writes, {res['db_log_fsyncs_per_call']:.1f} fsyncs)/call, "
                    f"{res['python_entries_per_call']:.1f} Python entries/call")
    except (StartError, KeyboardInterrupt) as exc:
        log(f"bench.topology: stopped: {exc}")
        return 1
    finally:
        bench.stop()
    text = table(results)
    log("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    setup = (f"{args.calls} calls at {args.rate:g}/s per run, {args.rounds} rounds, sip.children {args.children}, "
             f"innodb_flush_log_at_trx_commit {args.flush_at_commit}; load average after the run: {' '.join(load)} "
             f"(a shared machine)")
    (args.out / "topology.json").write_text(json.dumps({"setup": setup, "runs": results}, indent=1) + "\n")
    (args.out / "topology.md").write_text(setup + ".\n\n" + text + "\n")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
