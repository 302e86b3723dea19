"""The soak's verdict: every series flat after warm-up, nothing left at the end.

How a slope is judged. Samples are taken every few seconds against the requests Kamailio has
received so far (core:rcv_requests, the x axis). Samples before `warmup` (a share of the run's
requests) are left out: caches fill, pymalloc's arenas and usrloc's contacts settle there.
On the rest the slope is the Theil-Sen estimate (the median of the slopes between every pair
of samples: a spike or a few outliers do not move it, a steady climb does). The series
passes when that slope times the judged window (its growth over the window, in the series'
unit) stays within its tolerance: max(relative x the series' median level, an absolute floor).
A falling series always passes. The tolerances are per kind of series (TOLERANCES), stated
in the report, and the same for the short run in make test and the long one.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

MIB = 1 << 20
# series name prefix -> (relative tolerance, absolute floor, unit): growth over the judged
# window allowed = max(relative x median level, floor). First match wins (longest first).
TOLERANCES: dict[str, tuple[float, float, str]] = {
    "kamailio.rss_anon/": (0.05, 2 * MIB, "bytes"),     # private memory of each Kamailio process
    "kamailio.pkg/": (0.05, 256 * 1024, "bytes"),        # Kamailio's pkg heap, per process
    "kamailio.fds/": (0.0, 2, "fds"),
    "kamailio.shm": (0.05, 2 * MIB, "bytes"),
    "python.gc_objects/": (0.03, 3000, "objects"),
    "python.blocks/": (0.03, 5000, "blocks"),
    "python.traced/": (0.05, MIB, "bytes"),
    "rtpengine.rss_anon": (0.10, 4 * MIB, "bytes"),
    "rtpengine.sessions": (0.25, 10, "sessions"),       # concurrent calls come and go
    "tm.inuse": (0.25, 20, "transactions"),
    "mysql.connections": (0.0, 2, "connections"),       # a reload closes one and opens one
    "usrloc.contacts": (0.05, 20, "contacts"),
}
# reported and drawn, not judged: VmRSS counts the shm pages a process has touched (it climbs
# to the shm in use and stays), rtpengine's fds follow the calls up, htables the bans of the moment
MIN_SAMPLES = 5


def tolerance_for(series: str) -> tuple[float, float, str] | None:
    for prefix in sorted(TOLERANCES, key=len, reverse=True):
        if series == prefix or series.startswith(prefix):
            return TOLERANCES[prefix]
    return None


def theil_sen(xs: list[float], ys: list[float]) -> float:
    """Median of the pairwise slopes (pairs with equal x are skipped)."""
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if xs[j] != xs[i]]
    return statistics.median(slopes) if slopes else 0.0


@dataclass
class SeriesVerdict:
    series: str
    unit: str
    first: float            # the very first sample
    start: float            # first sample after warm-up
    end: float              # last sample
    level: float            # median after warm-up
    slope_per_million: float    # units per 1,000,000 requests (Theil-Sen)
    growth: float           # slope x the judged window
    allowed: float
    ok: bool

    def as_dict(self) -> dict:
        return asdict(self)


def judge_series(series: str, xs: list[float], ys: list[float], warmup_x: float) -> SeriesVerdict | None:
    """The verdict for one series, None when it is not judged or has too few samples."""
    tol = tolerance_for(series)
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= warmup_x]
    if tol is None or len(pairs) < MIN_SAMPLES:
        return None
    rel, floor, unit = tol
    px, py = [p[0] for p in pairs], [p[1] for p in pairs]
    slope = theil_sen(px, py)
    growth = slope * (px[-1] - px[0])
    level = statistics.median(py)
    allowed = max(rel * abs(level), floor)
    return SeriesVerdict(series, unit, ys[0], py[0], py[-1], level, slope * 1_000_000, growth, allowed,
                         growth <= allowed)


def judge(samples: list[dict], warmup_share: float) -> list[SeriesVerdict]:
    """Every judged series of a run's samples (dicts from Sampler.sample)."""
    if not samples:
        return []
    first_x, last_x = samples[0]["core.requests"], samples[-1]["core.requests"]
    warmup_x = first_x + warmup_share * (last_x - first_x)
    names = sorted({k for s in samples for k in s} - {"t", "core.requests", "core.replies"})
    out = []
    for name in names:
        xs = [s["core.requests"] for s in samples if name in s]
        ys = [s[name] for s in samples if name in s]
        verdict = judge_series(name, xs, ys, warmup_x)
        if verdict:
            out.append(verdict)
    return out


@dataclass
class Leftovers:
    """What must be back to normal once the load has stopped."""
    transactions: int
    rtpengine_sessions: int
    mysql_connections: int
    mysql_connections_at_start: int        # at the end of warm-up (the Python side opens lazily)
    kamailio_processes_lost: list[int]     # PIDs of the start that are gone (a crash, a restart)
    scanner_replies: int                   # the scanner must never have been answered

    @property
    def problems(self) -> list[str]:
        out = []
        if self.transactions:
            out.append(f"{self.transactions} transactions left")
        if self.rtpengine_sessions:
            out.append(f"{self.rtpengine_sessions} rtpengine sessions left")
        if self.mysql_connections > self.mysql_connections_at_start:
            out.append(f"{self.mysql_connections} MySQL connections, {self.mysql_connections_at_start} after warm-up")
        if self.kamailio_processes_lost:
            out.append(f"Kamailio processes gone: {self.kamailio_processes_lost}")
        if self.scanner_replies:
            out.append(f"the scanner got {self.scanner_replies} replies")
        return out

    def as_dict(self) -> dict:
        return {**asdict(self), "problems": self.problems}
