"""The soak's outputs: JSON (every sample, every verdict), a PNG per phase, the Markdown tables
docs/reliability.md publishes (`python3 -m bench.soak --publish`)."""
from __future__ import annotations

from pathlib import Path

MIB = 1 << 20


def _human(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / MIB:.2f} MiB"
    return f"{value:.0f} {unit}" if abs(value) >= 10 or value == int(value) else f"{value:.2f} {unit}"


def _steps(verdict: dict, unit: str) -> str:
    """The steps at reloads when they were judged apart (bench/soak/judge.py), else '-'."""
    steps = verdict.get("steps")
    if not steps:
        return "-"
    return f"{', '.join(_human(s, unit) for s in steps)} ({_human(verdict['late_steps'], unit)})"


def markdown(doc: dict) -> str:
    """The figures of a soak run (every phase): totals, the per-series verdicts, leftovers."""
    out = []
    for phase in doc["phases"]:
        lo = phase.get("leftovers", {})
        out += [f"**{phase['mode']}** ({'PASS' if phase.get('ok') else 'FAIL'}): {phase.get('requests', 0):,} requests "
                f"in {phase.get('seconds', 0):.0f} s ({phase.get('rate', 0):.0f}/s), "
                f"warm-up {phase.get('warmup_requests', 0):,} "
                f"requests, {len(phase.get('reloads', []))} `make reload`s, answered calls "
                f"{phase.get('answered_share', 0):.1%} successful, scanner {phase.get('scanner', {}).get('sent', 0)} "
                f"requests sent / {phase.get('scanner', {}).get('replies', 0)} answered.",
                "",
                f"Left at the end: {lo.get('transactions')} transactions, {lo.get('rtpengine_sessions')} rtpengine "
                f"sessions, {lo.get('mysql_connections')} MySQL connections ({lo.get('mysql_connections_at_start')} "
                f"after warm-up), Kamailio processes lost: {lo.get('kamailio_processes_lost') or 'none'}."
                + (f" Notes: {'; '.join(phase['notes'])}." if phase.get("notes") else ""),
                "",
                "| series | first | after warm-up | end | slope per 1M requests | growth over the window | "
                "steps at reloads (their later half) | allowed | |",
                "|---|---|---|---|---|---|---|---|---|"]
        for v in phase.get("verdicts", []):
            unit = v["unit"]
            out.append(f"| {v['series']} | {_human(v['first'], unit)} | {_human(v['start'], unit)} | "
                       f"{_human(v['end'], unit)} | {_human(v['slope_per_million'], unit)} | "
                       f"{_human(v['growth'], unit)} | {_steps(v, unit)} | {_human(v['allowed'], unit)} | "
                       f"{'ok' if v['ok'] else '**FAIL**'} |")
        out.append("")
    return "\n".join(out)


def plot(phase: dict, path: Path) -> Path | None:
    """The phase's series against requests received: memory per process, shm, Python, fds,
    connections, sessions and transactions. Warm-up shaded, reloads dashed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = phase["samples"]
    if not samples:
        return None
    x0 = samples[0]["core.requests"]

    def xs(name):
        return [(s["core.requests"] - x0) / 1000 for s in samples if name in s]

    def ys(name, scale=1.0):
        return [s[name] / scale for s in samples if name in s]

    names = sorted({k for s in samples for k in s})
    panels = [
        ("Kamailio private memory (RssAnon), MiB", [n for n in names if n.startswith("kamailio.rss_anon/")], MIB),
        ("Kamailio pkg in use, KiB", [n for n in names if n.startswith("kamailio.pkg/")], 1024),
        ("shm in use, rtpengine private memory, MiB", ["kamailio.shm", "rtpengine.rss_anon"], MIB),
        ("Python blocks (pymalloc), thousands", [n for n in names if n.startswith("python.blocks/")], 1000),
        ("tracemalloc: bytes traced, MiB", [n for n in names if n.startswith("python.traced/")], MIB),
        ("open fds (sum of Kamailio's), MySQL connections", ["fds", "mysql.connections", "rtpengine.fds"], 1),
        ("rtpengine sessions, transactions, contacts/10, bans", ["rtpengine.sessions", "tm.inuse", "usrloc.contacts",
                                                                  "htable.ipban", "htable.authfail"], 1),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.0 * len(panels)), sharex=True)
    warm_x = phase.get("warmup_requests", 0) / 1000
    for ax, (title, series, scale) in zip(axes, panels, strict=True):
        for name in series:
            if name == "fds":
                fd_names = [n for n in names if n.startswith("kamailio.fds/")]
                pts = [((s["core.requests"] - x0) / 1000, sum(s.get(n, 0) for n in fd_names)) for s in samples]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label="Kamailio fds", lw=1)
                continue
            div = 10 if name == "usrloc.contacts" else scale
            if any(name in s for s in samples):
                ax.plot(xs(name), ys(name, div), label=name.split("/", 1)[-1] if "/" in name else name, lw=1)
        ax.axvspan(0, warm_x, color="0.9", zorder=0)
        for r in phase.get("reloads", []):
            ax.axvline((r["requests"] - x0) / 1000, color="0.5", ls="--", lw=0.7)
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        if len(series) <= 12:
            ax.legend(fontsize=6, ncol=6, loc="upper left")
    axes[-1].set_xlabel("requests received by Kamailio, thousands (grey: warm-up, dashed: make reload)")
    fig.suptitle(f"make soak, {phase['mode']}: {phase.get('requests', 0):,} requests "
                 f"in {phase.get('seconds', 0):.0f} s "
                 f"({'PASS' if phase.get('ok') else 'FAIL'})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
