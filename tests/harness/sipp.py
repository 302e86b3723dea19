"""Run SIPp scenarios from fixtures/sipp/ and read what they logged."""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.stack import free_port

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "sipp"
_FINAL = re.compile(r"^(\w+)=(\S+)(?: call-id=(\S+))?")


def auth_row(user: str, password: str, domain: str, target: str = "x", auth_user: str | None = None) -> str:
    """One -inf CSV row: caller, domain, [authentication], callee."""
    return f"{user};{domain};[authentication username={auth_user or user} password={password}];{target}"


@dataclass
class SippResult:
    rc: int
    log: list[str]
    messages: str
    stdout: str

    def values(self, key: str) -> list[str]:
        """All values logged as key=value (e.g. final=200) in order."""
        return [m.group(2) for line in self.log if (m := _FINAL.match(line)) and m.group(1) == key]

    @property
    def finals(self) -> list[int]:
        return [int(v) for v in self.values("final")]

    def received(self) -> list[str]:
        """Every SIP message this SIPp received, as text (from its -trace_msg file)."""
        out = []
        for block in re.split(r"^-{20,}.*$", self.messages, flags=re.M):
            head, _, text = block.strip().partition("\n")
            if "message received" in head:
                out.append(text.strip())
        return out

    def received_requests(self, method: str) -> list[str]:
        return [m for m in self.received() if m.startswith(method + " ")]


@dataclass
class Sipp:
    """One SIPp run. Client mode when `target` is set, server mode otherwise.

    `calls=None` runs until stopped (a gateway); `netns` runs it in that network namespace.
    """
    scenario: str
    workdir: Path
    target: str | None = None
    rows: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    local_ip: str = "127.0.0.1"
    local_port: int | None = None
    calls: int = 1
    rate: float | None = None
    timeout: float = 30
    extra: list[str] = field(default_factory=list)
    netns: str | None = None
    proc: subprocess.Popen | None = None

    def argv(self, tag: str) -> list[str]:
        argv = ["sipp"]
        if self.target:
            argv.append(self.target)
        argv += ["-sf", str(SCENARIOS / self.scenario), "-i", self.local_ip]
        if self.calls is not None:
            argv += ["-m", str(self.calls)]
        argv += ["-nostdin", "-trace_logs", "-log_file", str(self.workdir / f"{tag}.log"),
                 "-trace_msg", "-message_file", str(self.workdir / f"{tag}.msg"),
                 "-trace_err", "-error_file", str(self.workdir / f"{tag}.err"),
                 "-timeout", f"{int(self.timeout)}s", "-timeout_error", "-recv_timeout", "10s"]
        # always a port of this run's slot: SIPp's default (5060) may belong to someone else
        argv += ["-p", str(self.local_port or free_port())]
        if self.rate:
            argv += ["-r", str(self.rate)]
        if self.rows:
            csv = self.workdir / f"{tag}.csv"
            csv.write_text("SEQUENTIAL\n" + "\n".join(self.rows) + "\n")
            argv += ["-inf", str(csv)]
        for k, v in self.keys.items():
            argv += ["-key", k, str(v)]
        for k, v in self.sets.items():
            argv += ["-set", k, str(v)]
        argv += self.extra
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self) -> "Sipp":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tag = f"{Path(self.scenario).stem}-{self.local_port or 'c'}-{time.monotonic_ns()}"
        self._out = open(self.workdir / f"{self._tag}.out", "w")
        self.proc = subprocess.Popen(self.argv(self._tag), stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        return self

    def wait(self) -> SippResult:
        try:
            rc = self.proc.wait(self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._out.close()
        read = lambda suffix: (self.workdir / f"{self._tag}{suffix}").read_text(errors="replace") \
            if (self.workdir / f"{self._tag}{suffix}").exists() else ""
        return SippResult(rc, read(".log").splitlines(), read(".msg"), read(".out"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def run(self) -> SippResult:
        return self.start().wait()
