"""SIPp as the load generator: one run at one rate, and what it measured.

A run offers `calls` calls at `rate` calls/s against one Kamailio and reports: calls created,
successful and failed (SIPp's own counters), retransmissions, response times from
-trace_rtt, the Kamailio CPU it cost (from /proc) and SIPp's own CPU (to tell when SIPp,
not Kamailio, is the bottleneck).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kemi_tools.sipp import Sipp

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
        out = {k: v for k, v in asdict(self).items() if k not in ("rtt1_ms", "server_us")}
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


def client(scenario: str, target: str, inf: Path, workdir: Path, port: int, calls: int, rate: float, cpus: str,
           local_ip: str, keys: dict | None = None, sets: dict | None = None, limit: int | None = None,
           timeout: float | None = None, measure: bool = True, extra: list[str] | None = None) -> Sipp:
    """The load: `calls` calls at `rate`/s, each one good only when it went the scenario's
    success path (fail_refused: a refused call is a failed one in SIPp's counters)."""
    return Sipp(scenario, workdir, local_ip, port, target=target, inf=inf, keys=keys or {},
                sets={"fail_refused": 1, **(sets or {})}, calls=calls, rate=rate, limit=limit,
                timeout=timeout or calls / rate + DRAIN_TIMEOUT_S, timeout_error=False,
                recv_timeout=RECV_TIMEOUT_MS / 1000, max_retrans=MAX_RETRANS, logs=False, trace_rtt=measure,
                extra=extra or [], cpus=cpus)


def server(scenario: str, workdir: Path, port: int, cpus: str, local_ip: str = "127.0.0.1") -> Sipp:
    """A callee (or gateway) SIPp taking any number of calls until it is stopped."""
    return Sipp(scenario, workdir, local_ip, port, calls=None, timeout=None, recv_timeout=None, logs=False,
                trace_rtt=False, cpus=cpus)
