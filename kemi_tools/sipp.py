"""SIPp from Python: one process running a scenario of kemi_tools/scenarios/, and what it wrote.

The tests (tests/harness/sipp.py), the SIPp kit (kemi_tools/kit) and the benchmark (bench/)
all run SIPp through `Sipp`. A run writes its files into `workdir`, named after the run's tag
(`<name>-<port>`): .log (the scenario's <log> lines, key=value), .err (SIPp's errors), .msg
(every message, with trace_msg), .stat.csv (SIPp's own counters, every second), .csv (the
-inf rows), .out (SIPp's screen); the response times go to <scenario>_<pid>_rtt.csv (SIPp
names that file itself, in its working directory: the workdir).

A run is reaped with wait4, never through Popen, so its CPU time (rusage) is known: the
benchmark tells by it when SIPp, not Kamailio, is the limit.
"""
from __future__ import annotations

import csv
import math
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = "sipp"
# the scenarios log "name=value call-id=..." lines (final=200, bye=200)
LOG_LINE_RE = re.compile(r"^(\w+)=(\S+)(?: call-id=(\S+))?")
# "2026-11-22<TAB>15:45:36.149886<TAB>1795362336.149886: " before each -trace_err line
ERROR_STAMP_RE = re.compile(r"^\S+\s+\S+\s+[\d.]+:\s*")
# the line -trace_msg writes before each message: "----- ... message received [N] bytes :"
MESSAGE_SEPARATOR_RE = re.compile(r"^-{20,}.*$", re.M)
# the response time the scenarios measure: start_rtd="1" ... rtd="1"
RTD = "1"
# seconds after its own -timeout before a SIPp that has not exited is killed
KILL_GRACE = 15
# how often wait() looks whether SIPp has exited
POLL_S = 0.02
CLK_TCK = os.sysconf("SC_CLK_TCK")


def auth_row(user: str, password: str, domain: str, callee: str = "x", auth_user: str | None = None) -> str:
    """One -inf CSV row the scenarios read: user, domain, [authentication], callee."""
    return f"{user};{domain};[authentication username={auth_user or user} password={password}];{callee}"


def uri_host(ip: str) -> str:
    """An address as the host part of a SIP URI (IPv6 in brackets)."""
    return f"[{ip}]" if ":" in ip else ip


def free_port(ip: str = "127.0.0.1") -> int:
    """A UDP port the kernel has free on `ip` now."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class SippResult:
    """What one SIPp run wrote."""
    rc: int
    log: list[str]                                       # the scenario's <log> lines
    rtts_ms: list[float] = field(default_factory=list)   # rtd 1 of each call that reached it, in ms
    stats: dict[str, str] = field(default_factory=dict)  # the last row of -trace_stat, {} if none
    stdout: str = ""
    killed: bool = False                                 # it outlived wait()'s time and was killed
    errors: list[str] = field(default_factory=list)      # -trace_err lines, timestamps removed
    messages: str = ""                                   # -trace_msg's text (trace_msg runs)
    cpu_s: float = 0.0                                   # SIPp's user+system CPU (0 if not reaped here)

    def values(self, key: str) -> list[str]:
        """Every value the scenario logged as key=value (e.g. final=200), in order."""
        return [m.group(2) for line in self.log if (m := LOG_LINE_RE.match(line)) and m.group(1) == key]

    @property
    def finals(self) -> list[int]:
        return [int(v) for v in self.values("final")]

    def sipp_count(self, name: str) -> int | None:
        """A cumulative counter of SIPp's statistics, e.g. SuccessfulCall, FailedCall."""
        value = self.stats.get(f"{name}(C)")
        return int(value) if value and value.isdigit() else None

    def traced(self, kind: str = "received") -> list[str]:
        """Every SIP message this SIPp traced as `kind` ("received" or "sent"), as text."""
        out = []
        for block in MESSAGE_SEPARATOR_RE.split(self.messages):
            head, _, text = block.strip().partition("\n")
            if f"message {kind}" in head:
                out.append(text.strip())
        return out

    def received(self) -> list[str]:
        return self.traced("received")

    def received_requests(self, method: str) -> list[str]:
        return [m for m in self.received() if m.startswith(method + " ")]


@dataclass
class Sipp:
    """One SIPp run: client mode with `target`, server mode (a callee, a gateway) without.

    `calls=None` takes calls until stopped; `timeout=None` sets no -timeout (a server the
    caller stops); `netns` runs it in that network namespace; `cpus` pins it (taskset -c).
    """
    scenario: str                  # a file of SCENARIOS (or a path)
    workdir: Path
    local_ip: str = "127.0.0.1"
    local_port: int | None = None  # None: pick_port()
    target: str | None = None
    rows: list[str] = field(default_factory=list)   # -inf rows, written to <tag>.csv
    inf: Path | None = None        # or an -inf file already written (the bench's 10,000 users)
    keys: dict = field(default_factory=dict)        # -key name value ([name] in the scenario)
    sets: dict = field(default_factory=dict)        # -set name value (a <Global> variable)
    calls: int | None = 1          # -m
    rate: float | None = None      # -r, calls per second
    limit: int | None = None       # -l, calls open at once
    timeout: float | None = 30     # -timeout, s: the whole run
    timeout_error: bool = True     # reaching -timeout is an error (exit status)
    recv_timeout: float | None = 10  # s: one expected message (the call fails without it)
    max_retrans: int | None = None
    logs: bool = True              # -trace_logs (the scenario's <log> lines) and -trace_err
    trace_msg: bool = False        # every message sent and received (SippResult.traced)
    trace_rtt: bool = True         # every call's response time (SippResult.rtts_ms)
    timer_resol_ms: int | None = None  # SIPp's clock step (default 10 ms)
    extra: list[str] = field(default_factory=list)
    netns: str | None = None
    cpus: str | None = None
    name: str | None = None        # the files' prefix (default: the scenario's name)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    cpu_s: float = 0.0             # user+system CPU, known once it is reaped
    rc: int | None = None

    def __post_init__(self) -> None:
        if self.local_port is None:
            self.local_port = self.pick_port()
        self._tag: str | None = None
        self._out: IO[str] | None = None
        self._killed = False

    def pick_port(self) -> int:
        """The port of a run given none (SIPp's own default, 5060, may belong to someone else)."""
        return free_port(self.local_ip)

    @property
    def tag(self) -> str:
        """`<name>-<port>`, with -2, -3 ... when an earlier run in the workdir had it."""
        if self._tag is None:
            base = f"{self.name or Path(self.scenario).stem}-{self.local_port}"
            tag, n = base, 1
            while any(self.workdir.glob(f"{tag}.*")):
                n += 1
                tag = f"{base}-{n}"
            self._tag = tag
        return self._tag

    def file(self, suffix: str) -> Path:
        return self.workdir / f"{self.tag}{suffix}"

    def argv(self) -> list[str]:
        argv = [SIPP] + ([self.target] if self.target else [])
        argv += ["-sf", str(SCENARIOS / self.scenario), "-i", self.local_ip, "-p", str(self.local_port), "-nostdin"]
        if self.calls is not None:
            argv += ["-m", str(self.calls)]
        if self.rate:
            argv += ["-r", f"{self.rate:g}"]
        if self.limit:
            argv += ["-l", str(self.limit)]
        if self.timeout is not None:
            argv += ["-timeout", f"{max(1, math.ceil(self.timeout))}s"]
            if self.timeout_error:
                argv += ["-timeout_error"]
        if self.recv_timeout is not None:
            argv += ["-recv_timeout", str(max(1, round(self.recv_timeout * 1000)))]
        if self.max_retrans is not None:
            argv += ["-max_retrans", str(self.max_retrans)]
        if self.logs:
            argv += ["-trace_logs", "-log_file", str(self.file(".log")),
                     "-trace_err", "-error_file", str(self.file(".err"))]
        if self.trace_msg:
            argv += ["-trace_msg", "-message_file", str(self.file(".msg"))]
        # SIPp's counters every second: cheap, and a running SIPp can be watched (stats())
        argv += ["-trace_stat", "-stf", str(self.file(".stat.csv")), "-fd", "1"]
        if self.trace_rtt:
            # -rtt_freq 1: SIPp keeps the samples in memory and writes them every N calls, but
            # never writes the last partial batch
            argv += ["-trace_rtt", "-rtt_freq", "1"]
        if self.timer_resol_ms:
            argv += ["-timer_resol", str(self.timer_resol_ms)]
        if self.rows:
            csv_file = self.file(".csv")
            csv_file.parent.mkdir(parents=True, exist_ok=True)
            csv_file.write_text("SEQUENTIAL\n" + "\n".join(self.rows) + "\n")
            argv += ["-inf", str(csv_file)]
        elif self.inf:
            argv += ["-inf", str(self.inf)]
        # the host of the Contact a scenario registers (register.xml): this SIPp, unless given
        for k, v in {"contact_host": uri_host(self.local_ip), **self.keys}.items():
            argv += ["-key", k, str(v)]
        for k, v in self.sets.items():
            argv += ["-set", k, str(v)]
        argv += self.extra
        if self.cpus:
            argv = ["taskset", "-c", self.cpus, *argv]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        self._out = open(self.file(".out"), "w")  # noqa: SIM115 (SIPp's stdout while it runs; closed when reaped)
        # cwd = workdir: -trace_rtt has no file option, SIPp writes it in the working directory
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        return self

    def exited(self) -> bool:
        """Whether it has ended; reaps it (wait4, for its rusage) if so."""
        if self.rc is None and self.proc is not None:
            if self.proc.returncode is not None:          # someone waited through Popen: no rusage
                self._reaped(self.proc.returncode, None)
            else:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self._reaped(os.waitstatus_to_exitcode(status), usage)
        return self.rc is not None

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end (at most its -timeout plus KILL_GRACE, or `timeout` s), kill it
        past that; then read what it wrote. Can be called again."""
        if self.proc is None:
            raise RuntimeError(f"SIPp {self.tag}: wait() before start()")
        if timeout is None and self.timeout is not None:
            timeout = self.timeout + KILL_GRACE
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() >= deadline:
                self._killed = True
                self.stop()
                break
            time.sleep(POLL_S)
        return self.result()

    def run(self) -> SippResult:
        return self.start().wait()

    def stop(self, grace: float = 0) -> None:
        """End it by PID: SIGTERM and `grace` s to write its files, then SIGKILL; reaps it."""
        if self.proc is None or self.exited():
            return
        if grace:
            os.kill(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.exited():
                    return
                time.sleep(POLL_S)
        os.kill(self.proc.pid, signal.SIGKILL)         # a zombie not yet reaped is still ours
        _, status, usage = os.wait4(self.proc.pid, 0)
        self._reaped(os.waitstatus_to_exitcode(status), usage)

    def _reaped(self, rc: int, usage) -> None:
        assert self.proc is not None
        self.rc = self.proc.returncode = rc
        if usage is not None:
            self.cpu_s = usage.ru_utime + usage.ru_stime
        if self._out:
            self._out.close()

    def cpu_so_far(self) -> float:
        """CPU used until now, whether it still runs or not."""
        if self.rc is not None or self.proc is None:
            return self.cpu_s
        return process_cpu_seconds(self.proc.pid)

    # --- what it wrote (also while it runs) ---------------------------------------------------

    def result(self) -> SippResult:
        assert self.rc is not None, "result() of a SIPp still running: wait() for it"
        errors = [ERROR_STAMP_RE.sub("", line) for line in _read(self.file(".err")).splitlines()
                  if line.strip() and not line.startswith("The following events")]
        return SippResult(self.rc, _read(self.file(".log")).splitlines(), self.rtts_ms(), self.stats(),
                          self.output(), self._killed, errors, _read(self.file(".msg")), self.cpu_s)

    def logged(self, key: str) -> int:
        """How many key=value lines the scenario has logged so far."""
        return sum(1 for line in _read(self.file(".log")).splitlines()
                   if (m := LOG_LINE_RE.match(line)) and m.group(1) == key)

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's counters (-trace_stat, written every second), {} if none yet."""
        rows = _csv_rows(self.file(".stat.csv"))
        return rows[-1] if rows else {}

    def rtts_ms(self) -> list[float]:
        """Response times (ms) of rtd 1, from <scenario>_<pid>_rtt.csv."""
        if self.proc is None:
            return []
        out = []
        for row in _csv_rows(self.workdir / f"{Path(self.scenario).stem}_{self.proc.pid}_rtt.csv"):
            try:
                if row.get("rtd_no", "") in (RTD, f"rtd{RTD}", ""):
                    out.append(float(row["response_time_ms"]))
            except (KeyError, ValueError):
                continue
        return out

    def output(self) -> str:
        """What SIPp printed (its screen)."""
        return _read(self.file(".out"))


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of one process so far, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return 0.0
    rest = raw[raw.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def _csv_rows(path: Path) -> list[dict[str, str]]:
    text = _read(path)
    if not text.strip():
        return []
    # a row longer than the header puts its rest under None as a list: dropped
    return [{k.strip(): v.strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
            for row in csv.DictReader(text.splitlines(), delimiter=";")]


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
