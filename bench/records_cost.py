"""`make bench-records`: what call records and HEP capture cost, Kamailio CPU per call, A/B.

    python3 -m bench.records_cost [--calls N] [--rate R] [--rounds K] [--media] [--out FILE]

One Kamailio per configuration (the Python routing, the same settings but for [records] and
[capture]), all pinned to the same CPU, each with its own database holding the same
subscribers and contacts; SIPp on the other CPU. Each round runs the same call load (INVITE
with digest auth, 180, 200, ACK, BYE) through every configuration in turn, and reads each
Kamailio's CPU (user+system of its processes, /proc) before and after; the figure is the
median over the rounds of CPU ms per call. Capture sends HEP to a UDP sink in this process
(a capture node's own cost is not the proxy's). With --media, rtpengine anchors every call
(and records ask it for the figures at the BYE: one more ng round trip per call).

The machine is shared and noisy (other test runs, its MariaDB serves them too): the figures
are medians of alternating runs, and MariaDB's CPU is printed for what it is worth.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.stack import (CALLER_IP, DOMAIN, PASSWORD, PYTHON_CFG, BenchDatabase, BenchKamailio, extension,
                         media_table, rtpengine_daemon, start_rtpengine)
from kemi.settings import PROJECT_ROOT
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import StartError

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT + 700            # clear of the tests' and make bench's ports
MEDIA_PORT_MIN = (20000 + 2000 * SLOT if SLOT <= 5 else 6000 + 2000 * (SLOT - 6)) + 1000
SUBSCRIBERS = 200
CONFIGS = {
    "plain": {},
    "records": {"records": {"enabled": True}},
    "capture": {"capture": {"enabled": True}},
    "records+capture": {"records": {"enabled": True}, "capture": {"enabled": True}},
}
HOLD_MS = 100
RESULTS = PROJECT_ROOT / "bench" / "results" / "records-cost.json"
# the project's SIPp scenarios (a caller with digest auth, a callee answering every call), where
# this checkout keeps them
SCENARIO_DIRS = (PROJECT_ROOT / "kemi_tools" / "scenarios", PROJECT_ROOT / "fixtures" / "sipp")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RECV_TIMEOUT_MS = 2000
SHARED_MARIADB_USERS = Path("/run/kemi-test-mariadb")


def scenario(name: str) -> Path:
    for folder in SCENARIO_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise StartError(f"SIPp scenario {name} not found in {', '.join(map(str, SCENARIO_DIRS))}")


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of one process so far (/proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sipp:
    """One SIPp process pinned to `cpus`, stopped by PID."""

    def __init__(self, argv: list[str], workdir: Path, cpus: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self._out = open(workdir / "sipp.out", "w")     # noqa: SIM115 (SIPp writes it until stop())
        self.proc = subprocess.Popen(["taskset", "-c", cpus, *argv], cwd=workdir, stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def caller_argv(target: str, csv: Path, port: int, calls: int, rate: float) -> list[str]:
    """Calls with digest auth, each up HOLD_MS; a late 180 is no failure (parallel workers)."""
    return ["sipp", target, "-sf", str(scenario("uac_call.xml")), "-inf", str(csv), "-i", CALLER_IP,
            "-p", str(port), "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-nostdin",
            "-max_retrans", "0", "-recv_timeout", str(RECV_TIMEOUT_MS), "-timeout", f"{int(calls / rate + 15)}s",
            "-set", "hold_ms", str(HOLD_MS), "-default_behaviors", "all,-abortunexp"]


def callee_argv(port: int) -> list[str]:
    return ["sipp", "-sf", str(scenario("uas_callee.xml")), "-i", "127.0.0.1", "-p", str(port), "-nostdin"]


class ConfigKamailio(BenchKamailio):
    """BenchKamailio with more settings tables (records, capture) over the bench's own."""
    extra: dict = {}

    def write_settings(self):
        super().write_settings()
        file = self.workdir / "settings.toml"
        text = file.read_text()
        from kemi.settings import load_settings, toml_dump
        file.write_text(text + "\n" + toml_dump(self.extra))
        self.settings = load_settings(file)
        return self.settings


class HepSink:
    """A UDP socket that takes the HEP packets (and counts them)."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            if data[:4] == b"HEP3":
                self.packets += 1

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def mariadb_pid() -> int | None:
    try:
        return int(Path("/run/mysqld/mysqld.pid").read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.records_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--media", action="store_true", help="rtpengine anchors the calls")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = Path(f"/tmp/kemi-bench-records-{SLOT}")
    kamailio_cpus, load_cpus = ("0", "1") if (os.cpu_count() or 1) > 1 else ("0", "0")
    started, kams, dbs = [], {}, []
    sink = HepSink(PORT_BASE + 90)
    rtpe = None
    # the machine's MariaDB, shared with test sessions: say we use it (tests/harness/stack.py's
    # convention), so a session that ends meanwhile does not stop it under us
    user = SHARED_MARIADB_USERS / f"user-{os.getpid()}"
    SHARED_MARIADB_USERS.mkdir(parents=True, exist_ok=True)
    user.touch()
    own_mariadb = None
    try:
        own_mariadb = mariadb.start(workdir)
        media = None
        if args.media:
            engine = rtpengine_daemon(PORT_BASE + 91, MEDIA_PORT_MIN, MEDIA_PORT_MIN + 999)
            rtpe = start_rtpengine(engine, workdir, load_cpus)
            media = media_table(engine)
        callee_port = PORT_BASE + 10
        for n, (label, extra) in enumerate(CONFIGS.items()):
            db = BenchDatabase(f"kemi_benchrec{SLOT or ''}_{n}", workdir)
            db.create(SUBSCRIBERS)
            dbs.append(db)
            kam = ConfigKamailio(label, PYTHON_CFG, PORT_BASE + n, db, workdir / label.replace("+", "-"),
                                 kamailio_cpus, 2, media=media)
            where = {"records": {"spool_dir": str(kam.workdir / "spool")},
                     "capture": {"address": f"127.0.0.1:{PORT_BASE + 90}"}}
            kam.extra = {table: dict(values, **where[table]) for table, values in extra.items()}
            db.load_contacts(SUBSCRIBERS, SUBSCRIBERS, callee_port, kam.socket)
            kam.start()
            kams[label] = kam
        callee = Sipp(callee_argv(callee_port), workdir / "callee", load_cpus)
        started.append(callee)
        csv = workdir / "calls.csv"
        csv.write_text("SEQUENTIAL\n" + "\n".join(
            f"{extension(i)};{DOMAIN};[authentication username={extension(i)} password={PASSWORD}];"
            f"{extension((i + SUBSCRIBERS // 2) % SUBSCRIBERS)}" for i in range(SUBSCRIBERS)) + "\n")
        per_call: dict[str, list[float]] = {label: [] for label in CONFIGS}
        db_per_call: dict[str, list[float]] = {label: [] for label in CONFIGS}
        hep: dict[str, int] = {}
        failed: dict[str, int] = {label: 0 for label in CONFIGS}
        port = PORT_BASE + 20
        for round_ in range(args.rounds):
            order = list(CONFIGS) if round_ % 2 == 0 else list(reversed(CONFIGS))
            for label in order:
                kam = kams[label]
                kam.wait_idle()
                port += 1
                argv = caller_argv(kam.target, csv, port, args.calls, args.rate)
                db_pid = mariadb_pid()
                db_before = process_cpu_seconds(db_pid) if db_pid else 0.0
                before, hep_before = kam.cpu_seconds(), sink.packets
                sipp = Sipp(argv, workdir / "runs" / f"{label}-{round_}", load_cpus)
                rc = sipp.wait(args.calls / args.rate + 60)
                time.sleep(0.5)                       # acc's last rows, the last BYEs
                used = kam.cpu_seconds() - before
                db_used = (process_cpu_seconds(db_pid) - db_before) if db_pid else float("nan")
                if rc != 0:
                    failed[label] += 1
                per_call[label].append(used * 1000 / args.calls)
                db_per_call[label].append(db_used * 1000 / args.calls)
                hep[label] = sink.packets - hep_before
                print(f"round {round_ + 1} {label:16s} {used * 1000 / args.calls:6.3f} ms CPU/call "
                      f"(MariaDB {db_used * 1000 / args.calls:6.3f}), SIPp rc {rc}, HEP packets {hep[label]}",
                      flush=True)
        rows = {label: {"kamailio_ms_per_call": round(statistics.median(v), 3),
                        "runs": [round(x, 3) for x in v],
                        "mariadb_ms_per_call": round(statistics.median(db_per_call[label]), 3),
                        "hep_packets_last_run": hep[label], "failed_runs": failed[label]}
                for label, v in per_call.items()}
        for label, row in rows.items():
            # paired: each round's difference to plain in the same round (the load around both
            # is about the same), then the median and the spread of those
            diffs = sorted(x - p for x, p in zip(per_call[label], per_call["plain"], strict=True))
            row["over_plain_ms"] = round(statistics.median(diffs), 3)
            row["over_plain_range_ms"] = [round(diffs[0], 3), round(diffs[-1], 3)]
        result = {"calls_per_run": args.calls, "rate": args.rate, "rounds": args.rounds, "media": args.media,
                  "children": 2, "kamailio_cpus": kamailio_cpus, "configs": rows,
                  "records_rows": {label: kams[label].db.count("kemi_acc") for label in CONFIGS}}
        print(json.dumps(result, indent=1))
        out = args.out or RESULTS.with_name(f"records-cost{'-media' if args.media else ''}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written to {out}")
        return 0
    except StartError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        for thing in started:
            thing.stop()
        for kam in kams.values():
            kam.stop()
        for db in dbs:
            db.drop()
        if rtpe:
            rtpe.stop()
        user.unlink(missing_ok=True)
        if own_mariadb is not None and not any(SHARED_MARIADB_USERS.glob("user-*")):
            own_mariadb.stop()


if __name__ == "__main__":
    sys.exit(main())
