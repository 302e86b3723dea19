"""The benchmark's outputs: a JSON document, a text table, a Markdown table and a PNG plot."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


# the targets for Python / native. p99: of Kamailio's own response times, timed by
# capture (µs); SIPp's whole-millisecond clock (and its ~4 ms idle sleep) cannot resolve them
TARGETS = {"max_rate": (">=", 0.95), "cpu_per_1000": ("<=", 1.15), "p99_server_us": ("<=", 1.2),
           "route_time_extra_us": ("<=", 15)}


PLOT_FLOOR_MS = 0.5


def ratio(python, native):
    if python is None or native is None or native == 0 or any(
            isinstance(v, float) and math.isnan(v) for v in (python, native)):
        return None
    return python / native


def meets(key: str, value) -> bool | None:
    if value is None:
        return None
    op, limit = TARGETS[key]
    return value >= limit if op == ">=" else value <= limit


def route_extra(route_time: dict) -> float | None:
    """Python's mean route time per request minus native's, µs."""
    n = route_time.get("native", {}).get("request", {}).get("mean_us")
    p = route_time.get("python", {}).get("request", {}).get("mean_us")
    return p - n if n is not None and p is not None else None


def build(results, info: dict) -> dict:
    scenarios = []
    for res in results:
        n, p = res.at_common.get("native", {}), res.at_common.get("python", {})
        extra = route_extra(res.route_time)
        ratios = {
            "max_rate": ratio(res.max_rate.get("python"), res.max_rate.get("native")),
            "cpu_per_1000": ratio(p.get("cpu_per_1000"), n.get("cpu_per_1000")),
            "p99_server_us": ratio(p.get("server_p99_us"), n.get("server_p99_us")),
            "p99_ms": ratio(p.get("p99_ms"), n.get("p99_ms")),
            "p50_ms": ratio(p.get("p50_ms"), n.get("p50_ms")),
        }
        scenarios.append({
            "name": res.scenario.name, "title": res.scenario.title, "kind": res.scenario.kind,
            "usrloc_db_mode": res.scenario.usrloc_db_mode, "contacts": res.scenario.contacts,
            "held_calls": res.scenario.held_calls,
            "max_rate": res.max_rate, "common_rate": res.common_rate, "at_common_rate": res.at_common,
            "route_time": res.route_time, "route_time_extra_us": extra,
            "route_time_at_common_rate": res.route_time_common,
            "route_time_extra_at_common_us": route_extra(res.route_time_common),
            "python_entries_per_call": res.entries,
            "ratios": ratios,
            "targets_met": {**{k: meets(k, v) for k, v in ratios.items() if k in TARGETS},
                            "route_time_extra_us": meets("route_time_extra_us", extra)},
            "notes": res.notes,
            "runs": [r.summary() for r in res.runs],
        })
    return {"machine": info, "targets": TARGETS, "scenarios": scenarios}


def _f(value, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def rows(doc: dict) -> list[list[str]]:
    out = []
    for s in doc["scenarios"]:
        n, p = s["at_common_rate"].get("native", {}), s["at_common_rate"].get("python", {})
        r = s["ratios"]
        entries = s.get("python_entries_per_call", {})
        out.append([
            s["name"],
            _f(entries.get("total"), "{:g}"),
            f"{_f(s['max_rate'].get('native'), '{:g}')} / {_f(s['max_rate'].get('python'), '{:g}')}",
            _f(r["max_rate"]),
            f"{_f(s['common_rate'], '{:g}')}",
            f"{_f(n.get('cpu_per_1000'), '{:.3f}')} / {_f(p.get('cpu_per_1000'), '{:.3f}')}",
            _f(r["cpu_per_1000"]),
            f"{_f(n.get('server_p50_us'), '{:.0f}')} / {_f(p.get('server_p50_us'), '{:.0f}')}",
            f"{_f(n.get('server_p99_us'), '{:.0f}')} / {_f(p.get('server_p99_us'), '{:.0f}')}",
            _f(r.get("p99_server_us")),
            _f(s["route_time_extra_us"], "{:+.0f}"),
            _f(s.get("route_time_extra_at_common_us"), "{:+.0f}"),
            f"{_f(n.get('p99_ms'))} / {_f(p.get('p99_ms'))}",
        ])
    return out


HEADER = ["scenario", "entries into Python per call", "max clean rate/s N / P", "P/N", "compared at /s",
          "CPU s per 1000 calls N / P", "P/N", "Kamailio p50 µs N / P", "Kamailio p99 µs N / P", "P/N",
          "route P-N µs, low rate", "route P-N µs, compared rate", "SIPp p99 ms N / P"]


def text_table(doc: dict) -> str:
    table = [HEADER] + rows(doc)
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    out = [f"Measured on: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb')} GB, kernel {m.get('kernel')}; "
           f"{m.get('kamailio')}; {m.get('sipp')}; {m.get('mariadb')}; Kamailio memory manager "
           f"{m.get('memory_manager')}, {m.get('children')} SIP workers, pinned to CPU {m['pinning']['kamailio']}, "
           f"SIPp on CPU {m['pinning']['sipp']}. Load average before/after: {' '.join(m.get('load_before', []))} / "
           f"{' '.join(m.get('load_after', []))}. Run took {m.get('elapsed_s')} s.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in rows(doc)]
    out.append("")
    notes = [f"- {s['name']}: {n}" for s in doc["scenarios"] for n in s["notes"]]
    if notes:
        out += ["Notes:", *notes, ""]
    return "\n".join(out)


def plot(doc: dict, path: Path) -> Path | None:
    """Rate vs p99 response time, native and Python, one panel per scenario."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    scenarios = doc["scenarios"]
    if not scenarios:
        return None
    cols = min(3, len(scenarios))
    rows_n = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    for ax, s in zip(axes.flat, scenarios, strict=False):      # the grid may have a cell or two more
        for label, style in (("native", "o-"), ("python", "s--")):
            by_rate: dict[float, list[float]] = {}
            for r in s["runs"]:
                if r["config"] == label and r["p99_ms"] == r["p99_ms"]:
                    by_rate.setdefault(r["rate"], []).append(r["p99_ms"])
            if by_rate:
                xs = sorted(by_rate)
                # log scale; SIPp's ms clock makes sub-ms p99s noise: floor them at PLOT_FLOOR_MS
                ax.plot(xs, [max(PLOT_FLOOR_MS, statistics.median(by_rate[x])) for x in xs], style,
                        label=label, markersize=4)
            if s["max_rate"].get(label):
                ax.axvline(s["max_rate"][label], color="C0" if label == "native" else "C1", alpha=0.3)
        ax.set_title(s["name"], fontsize=10)
        ax.set_xlabel("offered calls/s")
        ax.set_ylabel("p99 response time, ms")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.suptitle("kemi: Python routing vs native cfg (median p99 per offered rate; "
                 "vertical lines: highest clean rate)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- publishing: the table into the README and docs/benchmark.md, between markers ------------

MARK_START = "<!-- bench-table:start (written by `python3 -m bench.report --publish`) -->"
MARK_END = "<!-- bench-table:end -->"
# the Debian 13 run's table (make bench-debian13; --publish --debian13) has markers of its own
MARKS = {"debian12": (MARK_START, MARK_END),
         "debian13": ("<!-- bench-table-debian13:start (written by `python3 -m bench.report --publish --debian13`) -->",
                      "<!-- bench-table-debian13:end -->")}
TARGET_NAMES = {"max_rate": "highest clean rate ≥ 0.95", "cpu_per_1000": "CPU per call ≤ 1.15",
                "p99_server_us": "p99 response time ≤ 1.2 (Kamailio's, by capture)",
                "route_time_extra_us": "route time ≤ +15 µs per request (low rate)"}


def targets_summary(doc: dict) -> str:
    """Markdown table: each target, in how many scenarios it is met, where it is missed."""
    out = ["| target (Python/native) | met | missed in |", "|---|---|---|"]
    for key, name in TARGET_NAMES.items():
        met, missed = 0, []
        for s in doc["scenarios"]:
            ok = s["targets_met"].get(key)
            value = s["route_time_extra_us"] if key == "route_time_extra_us" else s["ratios"].get(key)
            if ok:
                met += 1
            else:
                missed.append(f"{s['name']} {_f(value, '{:+.0f}' if key == 'route_time_extra_us' else '{:.2f}')}")
        out.append(f"| {name} | {met} of {len(doc['scenarios'])} | {', '.join(missed) or '-'} |")
    return "\n".join(out)


def published_block(doc: dict, platform: str = "debian12") -> str:
    start, end = MARKS[platform]
    return "\n".join([start, "", markdown(doc), targets_summary(doc), "", end])


def replace_between_markers(text: str, block: str, platform: str = "debian12") -> str:
    mark_start, mark_end = MARKS[platform]
    start, end = text.find(mark_start), text.find(mark_end)
    if start < 0 or end < start:
        raise ValueError(f"no {mark_start!r} ... {mark_end!r} markers")
    return text[:start] + block + text[end + len(mark_end):]


def publish(doc: dict, files: list[Path], platform: str = "debian12") -> list[Path]:
    block = published_block(doc, platform)
    for f in files:
        f.write_text(replace_between_markers(f.read_text(encoding="utf-8"), block, platform), encoding="utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(prog="python3 -m bench.report",
                                 description="Print (or publish) the table of a make bench run.")
    ap.add_argument("--json", type=Path, default=root / "bench" / "results" / "bench.json")
    ap.add_argument("--publish", action="store_true",
                    help="write it into README.md and docs/benchmark.md between the bench-table markers")
    ap.add_argument("--debian13", action="store_true",
                    help="the Debian 13 run (make bench-debian13): bench/results-trixie/, its own markers")
    args = ap.parse_args(argv)
    platform = "debian13" if args.debian13 else "debian12"
    trixie = args.debian13 and args.json == ap.get_default("json")
    json_file = root / "bench" / "results-trixie" / "bench.json" if trixie else args.json
    doc = json.loads(json_file.read_text())
    if args.publish:
        for f in publish(doc, [root / "README.md", root / "docs" / "benchmark.md"], platform):
            print(f"bench: table written into {f}")
    else:
        print(published_block(doc, platform))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
