"""SIPp as the load generator: one run at one rate, and what it measured.

A run offers `calls` calls at `rate` calls/s against one Kamailio and reports: calls created,
successful and failed (SIPp's own counters), retransmissions, response times from
-trace_rtt, the Kamailio CPU it cost (from /proc) and SIPp's own CPU (to tell when SIPp,
not Kamailio, is the bottleneck).
"""
from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from bench.stack import process_cpu_seconds

SCENARIO_DIR = Path(__file__).resolve().parent / "sipp"
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sipp"
# SIPp fails a call when one of its requests is unanswered after T1 (500 ms), before any
# retransmission: a call counts as good only when the proxy keeps up, not when
# retransmissions rescue it (-max_retrans 0)
MAX_RETRANS = 0
RECV_TIMEOUT_MS = 2000
DRAIN_TIMEOUT_S = 15       # after the last call is created, how long in-flight calls may take


@dataclass
class RunResult:
    config: str
    rate: float
    calls: int
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    wall_s: float = 0.0
    kamailio_cpu_s: float = 0.0
    sipp_cpu_s: float = 0.0
    rtt1_ms: list[int] = field(default_factory=list, repr=False)
    rtt2_ms: list[int] = field(default_factory=list, repr=False)
    note: str = ""
    tag: str = ""             # which phase of the scenario it belongs to
    latency_logged: bool = False   # Kamailio logged route times meanwhile (costs it CPU)
    # with a capture: how long Kamailio held each message, µs, from kernel timestamps
    # (kemi_tools/capture.py SipTimes): SIPp's millisecond clock cannot resolve it
    server_us: list[float] = field(default_factory=list, repr=False)
    captured: bool = False
    entries: dict = field(default_factory=dict)    # Python: entries per callback during the run

    @property
    def ok(self) -> bool:
        """Every call offered was made and succeeded."""
        return self.failed == 0 and self.successful == self.calls

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.kamailio_cpu_s / self.successful if self.successful else float("nan")

    @property
    def sipp_busy(self) -> float:
        """Fraction of one CPU SIPp (caller and callee) used while the calls were offered."""
        return self.sipp_cpu_s / (self.calls / self.rate) if self.calls and self.rate else 0.0

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("rtt1_ms", "rtt2_ms", "server_us")}
        out.update(ok=self.ok, cpu_per_1000=self.cpu_per_1000, sipp_busy=round(self.sipp_busy, 3),
                   p50_ms=percentile(self.rtt1_ms, 50), p99_ms=percentile(self.rtt1_ms, 99),
                   mean_ms=mean(self.rtt1_ms))
        if self.server_us:
            out.update(server_messages=len(self.server_us), server_p50_us=exact_percentile(self.server_us, 50),
                       server_p99_us=exact_percentile(self.server_us, 99),
                       server_p999_us=exact_percentile(self.server_us, 99.9))
        return out


def percentile(values_ms: list[int], pct: float) -> float:
    """Percentile of SIPp's whole-millisecond response times, interpolated within the
    millisecond: a sample k stands for [k - 0.5, k + 0.5) ms (SIPp's clock ticks in ms)."""
    if not values_ms:
        return float("nan")
    counts: dict[int, int] = {}
    for v in values_ms:
        counts[v] = counts.get(v, 0) + 1
    rank, seen = pct / 100 * len(values_ms), 0
    for k in sorted(counts):
        if seen + counts[k] >= rank:
            return max(0.0, k - 0.5 + (rank - seen) / counts[k])
        seen += counts[k]
    return float(max(values_ms))


def exact_percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of exact samples (the capture's microseconds)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass
class Sipp:
    """One SIPp process, pinned to `cpus`; its rusage is collected when it ends."""
    argv: list[str]
    workdir: Path
    cpus: str
    proc: subprocess.Popen | None = None
    cpu_s: float = 0.0
    rc: int | None = None

    def start(self) -> "Sipp":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.workdir / "sipp.out", "w")
        self.proc = subprocess.Popen(["taskset", "-c", self.cpus, *self.argv], cwd=self.workdir,
                                     stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout: float) -> int:
        """Wait for SIPp to end (kill it after `timeout` s); returns its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                return self.rc
            time.sleep(0.02)
        self.stop()
        return self.rc

    def exited(self) -> bool:
        """Reaps SIPp if it has ended (never through Popen, which would lose its rusage)."""
        if self.rc is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.rc is not None

    def stop(self) -> None:
        """SIGKILL by PID (a zombie not yet reaped is still ours), then reap."""
        if self.proc and not self.exited():
            os.kill(self.proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(self.proc.pid, 0)
            self._reaped(status, usage)

    def _reaped(self, status, usage) -> None:
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.rc = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.rc
        self._out.close()

    def cpu_so_far(self) -> float:
        """CPU used until now, whether it still runs or not."""
        return self.cpu_s if self.rc is not None else process_cpu_seconds(self.proc.pid)

    def output(self) -> str:
        path = self.workdir / "sipp.out"
        return path.read_text(errors="replace") if path.exists() else ""


def client_argv(target: str, scenario: Path, csv_file: Path, local_port: int, calls: int, rate: float,
                keys: dict | None = None, sets: dict | None = None, limit: int | None = None,
                measure: bool = True, local_ip: str = "127.0.0.1") -> list[str]:
    argv = ["sipp", target, "-sf", str(scenario), "-inf", str(csv_file), "-i", local_ip,
            "-p", str(local_port), "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-nostdin",
            "-max_retrans", str(MAX_RETRANS), "-recv_timeout", str(RECV_TIMEOUT_MS),
            "-timeout", f"{int(calls / rate + DRAIN_TIMEOUT_S)}s"]
    if measure:
        # -rtt_freq 1: SIPp keeps rtt samples in memory and writes them every N calls, but
        # never writes the last partial batch
        argv += ["-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1"]
    if limit:
        argv += ["-l", str(limit)]
    for k, v in (keys or {}).items():
        argv += ["-key", k, str(v)]
    for k, v in (sets or {}).items():
        argv += ["-set", k, str(v)]
    return argv


def server_argv(scenario: Path, local_port: int, local_ip: str = "127.0.0.1") -> list[str]:
    """A callee SIPp taking any number of calls until it is stopped."""
    return ["sipp", "-sf", str(scenario), "-i", local_ip, "-p", str(local_port), "-nostdin"]


def read_stats(workdir: Path) -> dict | None:
    """The last (cumulative) row of SIPp's -trace_stat file."""
    files = sorted(workdir.glob("*_.csv"), key=lambda f: f.stat().st_mtime)
    if not files:
        return None
    with open(files[-1], newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows[-1] if rows else None


def read_rtt(workdir: Path) -> tuple[list[int], list[int]]:
    rtt = {1: [], 2: []}
    for path in workdir.glob("*_rtt.csv"):
        with open(path) as f:
            next(f, None)
            for line in f:
                parts = line.strip().split(";")
                if len(parts) == 3 and parts[2] in ("1", "2"):
                    rtt[int(parts[2])].append(int(float(parts[1])))
    return rtt[1], rtt[2]
