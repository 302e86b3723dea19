"""`make bench-overload`: the Python routing and bench/native.cfg offered 1.5x and 3x the
highest clean rate `make bench` measured, registrations and calls, with the early refusal on
([overload], pipelimit's NETWORK pipe) and, as the control, off.

    python3 -m bench.overload [--seconds 60] [--factors 1.5,3] [--scenarios register-db1,call]
                              [--no-control] [--queue-limit BYTES] [--rates FILE] [--out DIR]

make bench's stack (bench/run.py Env: MariaDB, the subscribers, both Kamailios pinned to one CPU
with 4 workers, SIPp on the other). The load is make bench's own SIPp scenarios (REGISTER with
digest; INVITE/407/INVITE/180/200/ACK/BYE to a callee SIPp), but with a phone's patience: SIPp
retransmits as RFC 3261 says (T1 500 ms, up to MAX_RETRANS times) and gives up after
ANSWER_WAIT_S, and a 503 to the first request ends the attempt as a phone does
(kemi_tools/scenarios: final=503). Each attempt ends one of four ways, from SIPp's log:

    served      the whole registration or call succeeded (final=200)
    refused     503 + Retry-After to the first request (the early refusal)
    other       another final answer (e.g. 408 or 500 from a callee that timed out)
    unanswered  nothing final within ANSWER_WAIT_S: the caller gave up (what overload must prevent)

During the load, OPTIONS every 0.5 s to the SIP socket and to the health socket
(overload.health_listen, its own worker). After it, from the moment the last attempt was
created: an unauthenticated REGISTER every 0.25 s until one is challenged within
NORMAL_LATENCY_S, then one full registration and one full call (SIPp, no retransmission) until
both succeed within NORMAL_LATENCY_S: `recovered_s` is when they did.

The rates come from bench/results/bench.json (--rates): per scenario the higher of the two
routings' max clean rate, offered to both. Where make bench found no failure (its max rate is a
lower bound) "1.5x" may still be within capacity: the table says whether anything was lost.
Results: OUT/overload.json and OUT/overload.md; docs/reliability.md has the figures.
Everything it started is stopped by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kemi.settings import PROJECT_ROOT
from kemi_tools.stack.process import StartError

from bench.load import percentile
from bench.run import LOADS, PORT_BASE, SLOT, Env, Load, log, machine
from bench.scenarios import select
from bench.soak.overload import Watcher, answered_within, describe_probes, probe

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SCENARIOS = ("register-db1", "call")
FACTORS = (1.5, 3.0)
CONTROL_FACTOR = 3.0            # the control (refusal off) runs at this multiple only
SECONDS = 60.0
MAX_SECONDS = 120.0             # --seconds is bounded: every run stops by itself
MAX_RETRANS = 4                 # a phone's retransmissions: 0.5, 1, 2, 4 s after the first send
ANSWER_WAIT_S = 8.0             # SIPp's receive timeout: an answer later than this is none
OPEN_ATTEMPTS_S = 20            # SIPp's -l: rate x this many seconds of attempts open at once
NORMAL_LATENCY_S = 0.25         # an idle registration or call is answered in ~10-20 ms
RECOVERY_LIMIT_S = 5.0          # the issue: a new registration and call succeed within 5 s
RECOVERY_GIVE_UP_S = 30.0
HEALTH_EVERY_S, PROMPT_S = 0.5, 0.5
PROBE_ATTEMPTS = 3              # the recovery's SIPp registration / call: attempts per try
REFUSED = "503"


@dataclass
class OverloadRun:
    scenario: str
    routing: str                 # python | native
    refusal: bool                # [overload] enabled
    factor: float
    rate: float                  # attempts offered per second
    seconds: float
    created: int = 0
    served: int = 0
    refused: int = 0
    other: int = 0
    unanswered: int = 0
    retransmissions: int = 0
    served_p50_ms: float | None = None
    served_p99_ms: float | None = None
    sipp_busy: float = 0.0       # SIPp's CPU share (caller and callee): near 1, SIPp was the limit
    kamailio_cpu_s: float = 0.0
    alive: bool = True
    sip_options: str = ""
    health_options: str = ""
    health_prompt: int = 0       # health socket probes answered within PROMPT_S
    health_probes: int = 0
    challenged_after_s: float | None = None
    recovered_s: float | None = None
    recovery_note: str = ""
    finals: dict = field(default_factory=dict)

    @property
    def goodput(self) -> float:
        return self.served / self.seconds

    def summary(self) -> dict:
        out = asdict(self)
        out.update(goodput=round(self.goodput, 1),
                   unanswered_share=round(self.unanswered / max(1, self.created), 3),
                   offered_rate=round(self.created / self.seconds, 1))
        return out


def clean_rates(path: Path) -> dict[str, float]:
    """scenario -> the higher of the two routings' max clean rate in make bench's JSON."""
    doc = json.loads(path.read_text())
    return {s["name"]: float(max(s["max_rate"].values())) for s in doc["scenarios"] if s.get("max_rate")}


def run_overload(env: Env, load: Load, trials: dict[str, Load], label: str, rate: float, factor: float,
                 seconds: float, refusal: bool, health_port: int) -> OverloadRun:
    kam = env.kamailios[label]
    kam.wait_idle(timeout=60, window=0.5)
    run = OverloadRun(load.scenario.name, label, refusal, factor, rate, seconds)
    calls = int(rate * seconds)
    workdir = env.workdir / "overload" / f"{load.scenario.name}-{label}-{'on' if refusal else 'off'}-{factor:g}"
    sipp = load.sipp(kam, rate, calls, env.port("client"), workdir)
    # a phone's patience, and what it does with a 503; every attempt's final answer logged
    sipp.max_retrans, sipp.recv_timeout = MAX_RETRANS, ANSWER_WAIT_S
    sipp.limit, sipp.logs, sipp.timeout = int(rate * OPEN_ATTEMPTS_S), True, seconds + ANSWER_WAIT_S * 3 + 15
    sipp.extra = [e for e in sipp.extra if e not in ("-default_behaviors", "all,-abortunexp")]
    sip = Watcher(("127.0.0.1", kam.port), HEALTH_EVERY_S, 2.0)
    health = Watcher(("127.0.0.1", health_port), HEALTH_EVERY_S, 2.0)
    cpu_before = kam.cpu_seconds()
    callee_cpu = env.callee.cpu_so_far() if env.callee else 0.0
    sip.start()
    health.start()
    started = time.monotonic()
    sipp.start()
    time.sleep(seconds)                    # SIPp creates its last attempt about now
    sip.stop()
    health.stop()
    run.challenged_after_s, run.recovered_s, run.recovery_note = recover(env, trials, label, started + seconds)
    out = sipp.wait()
    run.alive = not kam.lost()
    run.kamailio_cpu_s = round(kam.cpu_seconds() - cpu_before, 2)
    sipp_cpu = out.cpu_s + ((env.callee.cpu_so_far() - callee_cpu) if env.callee else 0.0)
    run.sipp_busy = round(sipp_cpu / (time.monotonic() - started), 3)
    stats = out.stats
    run.created = int(stats.get("TotalCallCreated", 0) or 0)
    run.retransmissions = int(stats.get("Retransmissions(C)", 0) or 0)
    finals: dict[str, int] = {}
    for code in out.values("final"):
        finals[code] = finals.get(code, 0) + 1
    run.finals = finals
    run.served = finals.get("200", 0)
    run.refused = finals.get(REFUSED, 0)
    run.other = sum(finals.values()) - run.served - run.refused
    run.unanswered = max(0, run.created - sum(finals.values()))
    rtts = [int(ms) for ms in out.rtts_ms]
    if rtts:
        run.served_p50_ms, run.served_p99_ms = round(percentile(rtts, 50)), round(percentile(rtts, 99))
    sip_probes, health_probes = sip.result(), health.result()
    run.sip_options = describe_probes(sip_probes, PROMPT_S)
    run.health_options = describe_probes(health_probes, PROMPT_S)
    run.health_prompt, run.health_probes = answered_within(health_probes, PROMPT_S), len(health_probes)
    s = run.summary()
    log(f"  {run.scenario:13} {label:6} refusal {'on ' if refusal else 'off'} {factor:g}x {rate:g}/s: "
        f"created {run.created}, served {run.served} ({s['goodput']}/s), refused {run.refused}, "
        f"other {run.other}, unanswered {run.unanswered} ({s['unanswered_share']:.1%}), retrans "
        f"{run.retransmissions}, p50/p99 {run.served_p50_ms}/{run.served_p99_ms} ms, health {run.health_options}, "
        f"recovered {run.recovered_s} s {run.recovery_note}")
    return run


def recover(env: Env, trials: dict[str, Load], label: str, stopped: float) -> tuple[float | None, float | None, str]:
    """(seconds after `stopped` until an unauthenticated REGISTER was challenged within
    NORMAL_LATENCY_S, seconds until a full registration and a full call both succeeded that
    fast, why not)."""
    kam = env.kamailios[label]
    challenged = None
    while time.monotonic() < stopped + RECOVERY_GIVE_UP_S:
        got = probe(("127.0.0.1", kam.port), timeout=1.0)
        if got and got[0] == 401 and got[1] <= NORMAL_LATENCY_S:
            challenged = round(time.monotonic() - stopped, 2)
            break
        time.sleep(0.25)
    if challenged is None:
        return None, None, f"no fast challenge within {RECOVERY_GIVE_UP_S:.0f} s"
    why = ""
    while time.monotonic() < stopped + RECOVERY_GIVE_UP_S:
        why = ""
        for kind, trial in trials.items():
            workdir = env.workdir / "overload" / f"recovery-{label}-{kind}-{time.monotonic_ns()}"
            sipp = trial.sipp(kam, 10, PROBE_ATTEMPTS, env.port("client"), workdir)
            sipp.timeout = 10
            res = sipp.start().wait()
            succeeded = int(res.stats.get("SuccessfulCall(C)", 0) or 0)
            slowest = max(res.rtts_ms, default=0.0)
            if succeeded != PROBE_ATTEMPTS or slowest > NORMAL_LATENCY_S * 1000:
                why = f"{kind}: {succeeded}/{PROBE_ATTEMPTS} succeeded, slowest {slowest:.0f} ms"
                break
        if not why:
            return challenged, round(time.monotonic() - stopped, 2), ""
        time.sleep(0.25)
    return challenged, None, why


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.overload", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help=f"load per run (at most {MAX_SECONDS:g})")
    ap.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS), help="multiples of the clean rate")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="make bench scenarios (register or call kind)")
    ap.add_argument("--no-control", action="store_true", help="skip the runs with the refusal off")
    ap.add_argument("--queue-limit", type=int, help="overload.queue_limit (default: the setting's default)")
    ap.add_argument("--rates", type=Path, default=RESULTS_DIR / "bench.json", help="make bench's JSON")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--kamailio-cpus", default="1")
    ap.add_argument("--sipp-cpus", default="0")
    ap.add_argument("--children", type=int, default=4)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.overload: run as root (it starts Kamailio, MariaDB and SIPp)", file=sys.stderr)
        return 2
    seconds = min(args.seconds, MAX_SECONDS)
    factors = [float(f) for f in args.factors.split(",")]
    scenarios = select(args.scenarios.split(","))
    if any(s.kind not in ("register", "call") or s.media or s.held_calls for s in scenarios):
        print("bench.overload: only register and call scenarios without media or held calls", file=sys.stderr)
        return 2
    rates = clean_rates(args.rates)
    missing = [s.name for s in scenarios if s.name not in rates]
    if missing:
        print(f"bench.overload: {args.rates} has no max clean rate for {', '.join(missing)}: run make bench",
              file=sys.stderr)
        return 2
    from kemi_tools.stack import kamailio as kemi_kamailio
    env = Env(Path(f"/tmp/kemi-bench-overload{SLOT or ''}"), args.kamailio_cpus, args.sipp_cpus, args.children,
              getattr(kemi_kamailio, "MEMORY_MANAGER", ""))
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    info = machine()
    runs: list[OverloadRun] = []
    health_ports = {label: PORT_BASE + 65 + n for n, label in enumerate(("native", "python"))}
    plan = [(True, factors)] + ([] if args.no_control else [(False, [CONTROL_FACTOR])])
    try:
        env.start()
        # the recovery's registration and call (CallLoad's setup starts the callee SIPp, kept
        # running to the end: env.stop() stops it)
        trials: dict[str, Load] = {}
        for kind, name in (("register", "register-db1"), ("call", "call")):
            trials[kind] = LOADS[kind](env, select([name])[0])
            trials[kind].setup()
        for refusal, run_factors in plan:
            for label, kam in env.kamailios.items():
                overload = {"enabled": refusal, "health_listen": f"127.0.0.1:{health_ports[label]}"}
                if args.queue_limit:
                    overload["queue_limit"] = args.queue_limit
                kam.extra = {"overload": overload}
            env.state = None                   # restart both with the new [overload]
            for scenario in scenarios:
                env.use_state(scenario)
                load = trials[scenario.kind] if scenario.name == trials[scenario.kind].scenario.name \
                    else LOADS[scenario.kind](env, scenario)
                if load is not trials[scenario.kind]:
                    load.setup()
                if env.callee is None:
                    env.start_callee()
                for i, factor in enumerate(run_factors):
                    order = ("python", "native") if i % 2 == 0 else ("native", "python")
                    for label in order:
                        runs.append(run_overload(env, load, trials, label, factor * rates[scenario.name], factor,
                                                 seconds, refusal, health_ports[label]))
                        if not runs[-1].alive:          # the next runs would measure a dead one
                            env.state = None
                            env.use_state(scenario)
    except KeyboardInterrupt:
        log("bench.overload: interrupted; stopping what it started")
    except StartError as exc:
        print(f"bench.overload: {exc}", file=sys.stderr)
        return 1
    finally:
        env.stop()
    info.update(elapsed_s=round(time.monotonic() - started), seconds=seconds, max_retrans=MAX_RETRANS,
                queue_limit=args.queue_limit or "default",
                answer_wait_s=ANSWER_WAIT_S, clean_rates={s.name: rates[s.name] for s in scenarios},
                rates_from=str(args.rates), pinning={"kamailio": args.kamailio_cpus, "sipp": args.sipp_cpus},
                children=args.children, load_after=Path("/proc/loadavg").read_text().split()[:3])
    doc = {"machine": info, "runs": [r.summary() for r in runs]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(doc, indent=1) + "\n")
    table = markdown(doc)
    (args.out / "overload.md").write_text(table)
    log("\n" + table)
    log(f"bench.overload: {info['elapsed_s']}s; wrote {args.out / 'overload.json'}, {args.out / 'overload.md'}")
    return 0


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"Measured on: {m.get('cpu', '?')}; {m.get('kamailio', '')}; Kamailio pinned to CPU "
             f"{m['pinning']['kamailio']}, {m['children']} workers, SIPp on CPU {m['pinning']['sipp']}; "
             f"overload.queue_limit {m.get('queue_limit', 'default')}; {m['seconds']:g} s per run; "
             f"a phone's retransmissions (up to {m['max_retrans']}) and "
             f"{m['answer_wait_s']:g} s patience; clean rates from {Path(m['rates_from']).name}: "
             + ", ".join(f"{k} {v:g}/s" for k, v in m["clean_rates"].items()) + f". Took {m['elapsed_s']} s.", "",
             "| scenario | routing | refusal | offered (x clean) | attempts | served (goodput/s) | refused 503 | "
             "other final | unanswered | retransmissions | served p50 / p99 ms | health socket within 500 ms | "
             "SIP socket OPTIONS | recovered s | SIPp CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        recovered = "-" if r["recovered_s"] is None else f"{r['recovered_s']:.2f}"
        if r["recovery_note"]:
            recovered += f" ({r['recovery_note']})"
        lines.append(
            f"| {r['scenario']} | {r['routing']} | {'on' if r['refusal'] else 'off'} | "
            f"{r['offered_rate']:g}/s ({r['factor']:g}x) | {r['created']:,} | {r['served']:,} ({r['goodput']:g}) | "
            f"{r['refused']:,} | {r['other']:,} | {r['unanswered']:,} ({r['unanswered_share']:.1%}) | "
            f"{r['retransmissions']:,} | {r['served_p50_ms']} / {r['served_p99_ms']} | "
            f"{r['health_prompt']}/{r['health_probes']} | {r['sip_options']} | {recovered} | "
            f"{r['sipp_busy']:.0%}" + ("" if r["alive"] else " **Kamailio lost**") + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
