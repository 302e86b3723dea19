"""One soak phase (registrar or SBC): stack up, the mix for N requests, samples, the verdict."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kemi.observe.memory import MEMORY_DIR
from kemi.settings import PROJECT_ROOT

from bench.soak import judge as judging
from bench.soak import net as soaknet
from bench.soak.load import MAPPED_DIDS, SOFT_EXIT_WAIT_S, Scanner, registrar_mix, sbc_mix
from bench.soak.sample import Sampler
from bench.soak.stack import SoakStack, settings_tables

# after the load: transactions and sessions must be gone by then. An INVITE whose caller gave
# up (a lost CANCEL, a timed-out caller) lives until tm's fr_inv_timer (120 s) ends it with a
# 408, plus tm's wait timer: that is the proxy's normal work, not a leak
SETTLE_S = 150
SCANNER_RATE = 10.0
# the answered calls must have gone through, or the soak measured nothing useful
MIN_ANSWERED_SHARE = 0.95


def log(text: str) -> None:
    print(f"soak: {text}", flush=True)


@dataclass
class PhaseConfig:
    mode: str                       # "registrar" or "sbc"
    requests: int                   # stop once Kamailio has received this many requests
    max_seconds: float              # ... or after this long, whichever comes first
    sample_every: float = 10.0
    reload_every: float = 180.0     # seconds between two `make reload`s; 0: none
    warmup: float = 0.25            # share of the requests before the slopes are judged
    scale: float = 1.0              # the mix's rates times this
    router: str | None = None       # python.router (a control: a leaking subclass)
    router_path: str | None = None
    python_memory_interval: int = 0  # 0: sample_every, rounded; -1: the hook off (no python.* series)
    settle_s: float = SETTLE_S      # at most this long for transactions and sessions to go
    # the answered calls must have gone through, or the soak measured nothing useful
    min_answered_share: float = MIN_ANSWERED_SHARE


def phase_ok(phase: dict) -> bool:
    """A phase passes: every judged series flat, nothing left, the calls answered, Kamailio never
    exited, the scanner sent something, every reload went out."""
    return (not phase["failed_series"] and not phase["leftovers"]["problems"]
            and phase["answered_share"] >= phase["config"]["min_answered_share"]
            and not any("Kamailio exited" in note for note in phase["notes"])
            and phase["scanner"]["sent"] > 0
            and all(r["ok"] for r in phase["reloads"]))


def rejudge(phase: dict) -> dict:
    """A phase's verdicts computed again from its samples (the judge changed, the run did not)."""
    verdicts = judging.judge(phase["samples"][:phase["load_samples"]], phase["config"]["warmup"],
                             [r["requests"] for r in phase["reloads"]])
    phase.update(verdicts=[v.as_dict() for v in verdicts], failed_series=[v.series for v in verdicts if not v.ok])
    phase["ok"] = phase_ok(phase)
    return phase


def make_reload(settings_file: Path) -> tuple[bool, str]:
    """`make reload SETTINGS=...` as an operator runs it."""
    done = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), "reload", f"SETTINGS={settings_file}"],
                          capture_output=True, text=True, timeout=120)
    return done.returncode == 0, (done.stdout + done.stderr).strip()[-300:]


def run_phase(cfg: PhaseConfig, workdir: Path) -> dict:
    interval = max(0, cfg.python_memory_interval) if cfg.python_memory_interval else max(1, round(cfg.sample_every))
    log(f"{cfg.mode}: {cfg.requests} requests (at most {cfg.max_seconds:.0f} s), scale {cfg.scale}, "
        f"sampling every {cfg.sample_every:g} s, reload every {cfg.reload_every:g} s"
        + (f", router {cfg.router}" if cfg.router else ""))
    # the Python memory reports of an earlier run in this workdir must not be read as this one's
    shutil.rmtree(workdir / "run" / MEMORY_DIR, ignore_errors=True)
    n = soaknet.build(cfg.mode)
    stack: SoakStack | None = None
    streams: list = []
    scanner: Scanner | None = None
    result: dict = {"mode": cfg.mode, "config": asdict(cfg), "notes": []}
    try:
        stack = SoakStack.start(
            n, workdir, lambda db: settings_tables(n, db, workdir, interval, cfg.router, cfg.router_path),
            dids=MAPPED_DIDS if cfg.mode == "sbc" else None)
        sampler = Sampler(stack)
        sampler.learn_processes()
        log(f"{cfg.mode}: Kamailio {stack.kamailio.pid if stack.kamailio else '?'} with "
            f"{len(sampler.roles)} processes, rtpengine {stack.rtpengine.pid if stack.rtpengine else '?'}")
        streams = (registrar_mix if cfg.mode == "registrar" else sbc_mix)(n, cfg.scale)
        for s in streams:
            if not s.client:
                s.start(workdir / "sipp", cfg.max_seconds)
        time.sleep(0.5)
        for s in streams:          # every phone registered before the first call
            if s.scenario == "register.xml" and s.name != "guesser":
                ok, total = s.register_all(workdir / "sipp")
                if ok < total:
                    result["notes"].append(f"{s.name}: {total - ok} of {total} phones did not register at start")
        for s in streams:
            if s.client:
                s.start(workdir / "sipp", cfg.max_seconds)
        # (the SBC's scanner is on the public side: sent to the private address, it sent nothing)
        scanner = Scanner(n.attack_ns, n.scanner_ip, (n.attack_address, soaknet.SIP_PORT), SCANNER_RATE * cfg.scale)
        scanner.start()
        started = time.monotonic()
        deadline = started + cfg.max_seconds
        samples = [sampler.sample()]
        reloads: list[dict] = []
        next_reload = started + cfg.reload_every if cfg.reload_every else float("inf")
        next_sample = started + cfg.sample_every
        last_log = started
        while True:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += cfg.sample_every
            samples.append(sampler.sample())
            now = time.monotonic()
            done = samples[-1]["core.requests"]
            if now - last_log >= 60:
                last_log = now
                log(f"{cfg.mode}: {done:.0f} requests after {now - started:.0f} s")
            if stack.kamailio is None or not stack.kamailio.alive():
                result["notes"].append(f"Kamailio exited after {done:.0f} requests")
                break
            if done >= cfg.requests or now >= deadline:
                break
            if now >= next_reload:
                next_reload = now + cfg.reload_every
                ok, out = make_reload(stack.settings_file)
                reloads.append({"t": round(now - started, 1), "requests": done, "ok": ok, "output": out})
                log(f"{cfg.mode}: make reload at {done:.0f} requests: {'sent' if ok else 'FAILED: ' + out}")
        load_samples = len(samples)
        elapsed = time.monotonic() - started
        # the end: no new calls, those in progress finish, then the phones and gateways go
        scanner.stop()
        for s in streams:
            if s.client:
                s.soft_exit()
        end_wait = time.monotonic() + SOFT_EXIT_WAIT_S
        for s in streams:
            if s.client and s.sipp:
                while not s.sipp.exited() and time.monotonic() < end_wait:
                    time.sleep(0.2)
                if not s.sipp.exited():
                    result["notes"].append(f"SIPp {s.name} still had calls {SOFT_EXIT_WAIT_S} s after its soft exit")
                    s.sipp.stop()
        for s in streams:
            if not s.client and s.sipp:
                s.sipp.stop()
        # settle: what the load left behind must go by itself
        settle_end = time.monotonic() + cfg.settle_s
        while time.monotonic() < settle_end:
            samples.append(sampler.sample())
            if samples[-1].get("tm.inuse", 0) == 0 and samples[-1].get("rtpengine.sessions", 0) == 0:
                break
            time.sleep(2)
        final = samples[-1]
        load = samples[:load_samples]
        x0, x1 = load[0]["core.requests"], load[-1]["core.requests"]
        warm_x = x0 + cfg.warmup * (x1 - x0)
        warm = next((s for s in load if s["core.requests"] >= warm_x), load[-1])
        leftovers = judging.Leftovers(
            transactions=int(final.get("tm.inuse", 0)), rtpengine_sessions=int(final.get("rtpengine.sessions", 0)),
            mysql_connections=int(final.get("mysql.connections", 0)),
            mysql_connections_at_start=int(warm.get("mysql.connections", 0)),
            kamailio_processes_lost=sorted(set(sampler.roles) - set(sampler.alive_pids())),
            scanner_replies=scanner.replies)
        verdicts = judging.judge(load, cfg.warmup, [r["requests"] for r in reloads])
        counts = {s.name: s.counts() for s in streams if s.client}
        answered = counts.get("calls", {})
        answered_share = answered.get("successful", 0) / max(1, answered.get("created", 0))
        if answered_share < cfg.min_answered_share:
            result["notes"].append(f"only {answered_share:.1%} of the answered calls succeeded: the load did not "
                                   "go through as it should")
        if scanner.sent == 0:      # it could not reach Kamailio: the "never answered" check proved nothing
            result["notes"].append("the scanner sent nothing: its target was unreachable")
        failed = [v.series for v in verdicts if not v.ok]
        result.update(
            requests=int(x1 - x0), seconds=round(elapsed, 1), rate=round((x1 - x0) / elapsed, 1) if elapsed else 0,
            warmup_requests=int(warm_x - x0), samples=samples, load_samples=load_samples,
            verdicts=[v.as_dict() for v in verdicts], failed_series=failed, leftovers=leftovers.as_dict(),
            streams=counts, answered_share=round(answered_share, 4), reloads=reloads,
            scanner={"sent": scanner.sent, "replies": scanner.replies},
            roles={str(pid): name for pid, name in sampler.roles.items()},
            python_top=sampler.python_tops(), kamailio_log=str(workdir / "kamailio.log"))
        result["ok"] = phase_ok(result)
        log(f"{cfg.mode}: {result['requests']} requests in {elapsed:.0f} s ({result['rate']}/s), "
            f"{len(reloads)} reloads, answered calls {answered_share:.1%}; "
            + ("PASS" if result["ok"] else f"FAIL: series {failed}, leftovers {leftovers.problems}, "
                                             f"notes {result['notes']}"))
        return result
    finally:
        if scanner:
            scanner.stop()
        for s in streams:
            if s.sipp and not s.sipp.exited():
                s.sipp.stop()
        if stack:
            for problem in stack.stop():
                log(f"while stopping: {problem}")
        for problem in n.teardown():
            log(f"while removing the namespaces: {problem}")


def workdir_for(mode: str) -> Path:
    slot = os.environ.get("KEMI_TEST_SLOT", "0")
    return Path(f"/tmp/kemi-soak{'' if slot == '0' else slot}") / mode
