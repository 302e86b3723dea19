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

Reloads. A `make reload` re-imports the routing in every process at once: a worker's memory
steps up there (new module objects, the old ones collected later) and is flat between
reloads. One slope fitted through such steps is the steps' average, not a leak's. With at least
STEPS_JUDGED_FROM reloads after warm-up the two are judged apart: the slope from pairs of
samples between the same two reloads only (the sample right after a reload left out), its
growth over the time between reloads; and the steps: the level (median) of the samples between
two reloads minus that of the ones before, at each reload (the median, since for a few samples
after a reload the old and the new modules are both alive). The later half of the steps must
add up to no more than the same tolerance, i.e. the level after the last reload is at most that
much above the level at the middle one: steps that shrink to nothing pass, a reload that leaks
the same amount every time fails. With fewer reloads the steps count in the one slope.
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
STEPS_JUDGED_FROM = 4       # reloads after warm-up for the steps to be judged apart
SETTLE_SAMPLES = 1          # samples right after a reload left out of the slope


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
    growth: float           # slope x the judged window (between reloads when they are judged apart)
    allowed: float
    ok: bool
    steps: list[float] | None = None    # at each reload after warm-up, when judged apart
    late_steps: float = 0.0             # the sum of their later half (judged against `allowed`)

    def as_dict(self) -> dict:
        return asdict(self)


def judge_series(series: str, xs: list[float], ys: list[float], warmup_x: float,
                 reloads_x: list[float] | tuple[float, ...] = ()) -> SeriesVerdict | None:
    """The verdict for one series, None when it is not judged or has too few samples.
    `reloads_x`: where (x) each `make reload` was made."""
    tol = tolerance_for(series)
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= warmup_x]
    if tol is None or len(pairs) < MIN_SAMPLES:
        return None
    rel, floor, unit = tol
    px, py = [p[0] for p in pairs], [p[1] for p in pairs]
    level = statistics.median(py)
    allowed = max(rel * abs(level), floor)
    inside = [r for r in reloads_x if px[0] < r <= px[-1]]
    if len(inside) >= STEPS_JUDGED_FROM:
        segments = split_at_reloads(pairs, inside)
        slope = theil_sen_within(segments)
        growth = slope * sum(seg[-1][0] - seg[0][0] for seg in segments if seg)
        steps = reload_steps(segments)
        late = sum(steps[(len(steps) + 1) // 2:])
        return SeriesVerdict(series, unit, ys[0], py[0], py[-1], level, slope * 1_000_000, growth, allowed,
                             growth <= allowed and late <= allowed, steps, late)
    slope = theil_sen(px, py)
    growth = slope * (px[-1] - px[0])
    return SeriesVerdict(series, unit, ys[0], py[0], py[-1], level, slope * 1_000_000, growth, allowed,
                         growth <= allowed)


def split_at_reloads(pairs: list[tuple[float, float]], reloads_x: list[float]) -> list[list[tuple[float, float]]]:
    """The samples between two reloads each (before the first, between, after the last), the
    first SETTLE_SAMPLES after each reload left out; a segment may be empty."""
    segments: list[list[tuple[float, float]]] = [[] for _ in range(len(reloads_x) + 1)]
    for x, y in pairs:
        segments[sum(1 for r in reloads_x if r < x)].append((x, y))
    return [segments[0]] + [seg[SETTLE_SAMPLES:] for seg in segments[1:]]


def theil_sen_within(segments: list[list[tuple[float, float]]]) -> float:
    """Theil-Sen over pairs of samples inside the same segment only."""
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for seg in segments for i, a in enumerate(seg) for b in seg[i + 1:]
              if b[0] != a[0]]
    return statistics.median(slopes) if slopes else 0.0


def reload_steps(segments: list[list[tuple[float, float]]]) -> list[float]:
    """At each reload, the level of the samples up to the next reload minus the level of those
    since the one before (medians: the few samples in which old and new modules are both alive
    move neither); an empty segment makes one step of two reloads."""
    levels = [statistics.median([y for _, y in seg]) for seg in segments if seg]
    return [after - before for before, after in zip(levels, levels[1:], strict=False)]


def judge(samples: list[dict], warmup_share: float, reloads_x: list[float] | tuple[float, ...] = ()
          ) -> list[SeriesVerdict]:
    """Every judged series of a run's samples (dicts from Sampler.sample); `reloads_x`: the
    requests received when each `make reload` was made."""
    if not samples:
        return []
    first_x, last_x = samples[0]["core.requests"], samples[-1]["core.requests"]
    warmup_x = first_x + warmup_share * (last_x - first_x)
    names = sorted({k for s in samples for k in s} - {"t", "core.requests", "core.replies"})
    out = []
    for name in names:
        xs = [s["core.requests"] for s in samples if name in s]
        ys = [s[name] for s in samples if name in s]
        verdict = judge_series(name, xs, ys, warmup_x, reloads_x)
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
