"""python3 -m bench.soak: see bench/soak/__init__.py and docs/reliability.md."""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT

from bench.soak import report
from bench.soak.run import PhaseConfig, log, rejudge, run_phase, workdir_for

RESULTS = PROJECT_ROOT / "bench" / "results"
MODES = ("registrar", "sbc")
# make soak: about a million requests, most of them through the registrar
REGISTRAR_SHARE = 0.6


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.soak", description="make soak: a long run, memory watched")
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests Kamailio receives, all phases")
    ap.add_argument("--mode", choices=(*MODES, "both"), default="both")
    ap.add_argument("--max-minutes", type=float, default=90, help="time limit for all phases")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--reload-every", type=float, default=180.0, help="seconds between make reloads (0: none)")
    ap.add_argument("--warmup", type=float, default=0.25, help="share of requests before slopes are judged")
    ap.add_argument("--scale", type=float, default=1.0, help="the traffic mix's rates times this")
    ap.add_argument("--router", help="python.router for the run (e.g. a control that leaks)")
    ap.add_argument("--router-path", help="python.path for --router")
    ap.add_argument("--no-python-memory", action="store_true",
                    help="the Python memory hook off (tracemalloc slows the workers; no python.* series)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--rejudge", type=Path, metavar="SOAK_JSON",
                    help="no run: judge a soak.json's samples again (the judge changed) and write OUT's files")
    args = ap.parse_args(argv)
    if args.rejudge:
        judged = json.loads(args.rejudge.read_text())
        for phase in judged["phases"]:
            rejudge(phase)
        judged["ok"] = bool(judged["phases"]) and all(p.get("ok") for p in judged["phases"])
        judged["rejudged"] = True
        return write(judged, args.out)
    if os.geteuid() != 0:
        print("soak: run as root (network namespaces, Kamailio, MariaDB, rtpengine, SIPp)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    modes = MODES if args.mode == "both" else (args.mode,)
    shares = {"registrar": REGISTRAR_SHARE, "sbc": 1 - REGISTRAR_SHARE} if args.mode == "both" else {args.mode: 1.0}
    started = time.monotonic()
    doc: dict = {"machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                       "load_before": Path("/proc/loadavg").read_text().split()[:3]},
           "phases": []}
    try:
        for mode in modes:
            cfg = PhaseConfig(mode, int(args.requests * shares[mode]), args.max_minutes * 60 * shares[mode],
                              args.sample_every, args.reload_every, args.warmup, args.scale,
                              args.router, args.router_path, -1 if args.no_python_memory else 0)
            doc["phases"].append(run_phase(cfg, workdir_for(mode)))
    except KeyboardInterrupt:
        log("interrupted; what it started is stopped")
    except Exception as exc:          # the phases done so far are still written
        log(f"stopped by {type(exc).__name__}: {exc}")
        doc["error"] = f"{type(exc).__name__}: {exc}"
    doc["machine"]["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    doc["seconds"] = round(time.monotonic() - started)
    doc["ok"] = bool(doc["phases"]) and all(p.get("ok") for p in doc["phases"])
    return write(doc, args.out)


def write(doc: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "soak.md").write_text(report.markdown(doc))
    for phase in doc["phases"]:
        report.plot(phase, out / f"soak-{phase['mode']}.png")
    log(f"{'PASS' if doc['ok'] else 'FAIL'} in {doc['seconds']} s; wrote {out / 'soak.json'}, soak.md, "
        + ", ".join(f"soak-{p['mode']}.png" for p in doc["phases"]))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
