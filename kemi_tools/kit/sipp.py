"""One SIPp process of the kit: its command line, and what it wrote (logs, response times, stats)."""
from __future__ import annotations

import csv
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = "sipp"
# the scenarios log "name=value call-id=..." lines (final=200, bye=200)
LOG_LINE_RE = re.compile(r"^(\w+)=(\S+)(?: call-id=(\S+))?")
# "2026-11-22<TAB>15:45:36.149886<TAB>1795362336.149886: " before each -trace_err line
ERROR_STAMP_RE = re.compile(r"^\S+\s+\S+\s+[\d.]+:\s*")
# SIPp's clock step (default 10 ms): response times are whole ticks of it
TIMER_RESOLUTION_MS = 1
# seconds after its own -timeout before a SIPp that has not exited is killed
KILL_GRACE = 15


def auth_row(user: str, password: str, domain: str, callee: str = "x") -> str:
    """One -inf CSV row the scenarios read: user, domain, [authentication], callee."""
    return f"{user};{domain};[authentication username={user} password={password}];{callee}"


@dataclass
class SippOutput:
    rc: int
    log: list[str]
    rtts_ms: list[float]          # rtd 1 of each call that reached it, in ms
    stats: dict                   # the last row of -trace_stat (SIPp's own counters), {} if none
    stdout: str
    killed: bool = False
    errors: list[str] = field(default_factory=list)    # -trace_err lines, timestamps removed

    def values(self, key: str) -> list[str]:
        """Every value the scenario logged as key=value, in order."""
        return [m.group(2) for line in self.log if (m := LOG_LINE_RE.match(line)) and m.group(1) == key]

    def sipp_count(self, name: str) -> int | None:
        """A cumulative counter of SIPp's statistics, e.g. SuccessfulCall, FailedCall."""
        value = self.stats.get(f"{name}(C)")
        return int(value) if value and value.isdigit() else None


@dataclass
class Sipp:
    """A SIPp run: client mode with `target`, server mode (a callee) without."""
    scenario: str
    workdir: Path
    local_ip: str
    local_port: int
    target: str | None = None
    rows: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    calls: int = 1
    rate: float | None = None
    timeout: float = 30            # SIPp's -timeout: the whole run
    recv_timeout: float = 5        # one expected message (a call without it fails)
    proc: subprocess.Popen | None = None

    @property
    def tag(self) -> str:
        return f"{Path(self.scenario).stem}-{self.local_port}"

    def argv(self) -> list[str]:
        files = self.workdir / self.tag
        argv = [SIPP] + ([self.target] if self.target else [])
        argv += ["-sf", str(SCENARIOS / self.scenario), "-i", self.local_ip, "-p", str(self.local_port),
                 "-m", str(self.calls), "-nostdin",
                 "-trace_logs", "-log_file", f"{files}.log",
                 "-trace_err", "-error_file", f"{files}.err",
                 "-trace_rtt", "-rtt_freq", "1", "-timer_resol", str(TIMER_RESOLUTION_MS),
                 "-trace_stat", "-stf", f"{files}.stat.csv", "-fd", "1",
                 "-timeout", f"{max(1, round(self.timeout))}s", "-timeout_error",
                 "-recv_timeout", f"{max(1, round(self.recv_timeout * 1000))}"]
        if self.rate:
            argv += ["-r", _number(self.rate)]
        if self.rows:
            csv_file = self.workdir / f"{self.tag}.csv"
            csv_file.write_text("SEQUENTIAL\n" + "\n".join(self.rows) + "\n")
            argv += ["-inf", str(csv_file)]
        for k, v in self.keys.items():
            argv += ["-key", k, str(v)]
        for k, v in self.sets.items():
            argv += ["-set", k, str(v)]
        return argv

    def start(self) -> "Sipp":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.workdir / f"{self.tag}.out", "w")
        # cwd = workdir: -trace_rtt has no file option, SIPp writes it in the working directory
        self.proc = subprocess.Popen(self.argv(), stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        return self

    def wait(self, timeout: float | None = None) -> SippOutput:
        """Wait for SIPp (at most its -timeout plus a grace, or `timeout`), kill it past that."""
        killed = False
        try:
            rc = self.proc.wait(self.timeout + KILL_GRACE if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc, killed = self.proc.wait(), True
        self._out.close()
        errors = [ERROR_STAMP_RE.sub("", line) for line in _read(self.workdir / f"{self.tag}.err").splitlines()
                  if line.strip() and not line.startswith("The following events")]
        return SippOutput(rc, _read(self.workdir / f"{self.tag}.log").splitlines(), self._rtts(),
                          self._stats(), _read(self.workdir / f"{self.tag}.out"), killed, errors)

    def logged(self, key: str) -> int:
        """How many key=value lines the running scenario has logged so far."""
        return sum(1 for line in _read(self.workdir / f"{self.tag}.log").splitlines()
                   if (m := LOG_LINE_RE.match(line)) and m.group(1) == key)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def run(self) -> SippOutput:
        return self.start().wait()

    def _rtts(self) -> list[float]:
        """Response times (ms) of rtd 1 from <scenario>_<pid>_rtt.csv."""
        path = self.workdir / f"{Path(self.scenario).stem}_{self.proc.pid}_rtt.csv"
        out = []
        for row in _csv_rows(path):
            try:
                if row.get("rtd_no", "").strip() in ("1", "rtd1", ""):
                    out.append(float(row["response_time_ms"]))
            except (KeyError, ValueError):
                continue
        return out

    def _stats(self) -> dict:
        rows = _csv_rows(self.workdir / f"{self.tag}.stat.csv")
        return rows[-1] if rows else {}


def _csv_rows(path: Path) -> list[dict]:
    text = _read(path)
    if not text.strip():
        return []
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(text.splitlines(), delimiter=";")]


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def wait_all(runs: list[Sipp], deadline: float) -> None:
    """Give running SIPps until the monotonic `deadline` to finish on their own."""
    while any(r.proc and r.proc.poll() is None for r in runs) and time.monotonic() < deadline:
        time.sleep(0.1)
