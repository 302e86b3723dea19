"""Kamailio with our kamailio.cfg and a settings file, started in the foreground (-DD)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal

from kemi.settings import PROJECT_ROOT, Settings, write_kamailio_defines
from kemi import interpreter
from kemi_tools.stack.process import Daemon, StartError, sip_options_ok, wait_for

KAMAILIO_CFG = PROJECT_ROOT / "kamailio.cfg"
# modules and modparams, included by kamailio.cfg and bench/native.cfg alike
COMMON_CFG = PROJECT_ROOT / "kamailio-common.cfg"
# Kamailio's memory manager (-x; pkg follows shm). Its default, qm, finds a free block by
# scanning its free lists from the requested size up: in a process whose free memory is one
# large block, which is what a Kamailio worker running Python routing keeps, every allocation
# scans ~2,000 buckets, and that cost the Python routing ~70 µs per request in make bench.
# tlsf finds a block in constant time (see docs/benchmark.md).
MEMORY_MANAGER = "tlsf"


def prepare(settings: Settings, workdir: Path, cfg: Path = KAMAILIO_CFG, kemi_root: Path = PROJECT_ROOT) -> Path:
    """Render the settings beside a copy of kamailio.cfg in `workdir`; returns the cfg path.

    kamailio.cfg includes "kamailio-settings.cfg" and "kamailio-common.cfg" relative to
    itself, so each instance (make run, every test) gets its own set and several can run
    side by side. `cfg` may be another top file including the same two (bench/native.cfg);
    `kemi_root` holds the kemi package Kamailio loads (a test's copy, which it may edit).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "kamailio.cfg"
    if cfg.resolve() != target.resolve():
        shutil.copyfile(cfg, target)
    if COMMON_CFG.resolve() != (workdir / COMMON_CFG.name).resolve():
        shutil.copyfile(COMMON_CFG, workdir / COMMON_CFG.name)
    write_kamailio_defines(settings, workdir, kemi_root)
    Path(settings.runtime.dir).mkdir(parents=True, exist_ok=True)
    return target


def check_config(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60,
                          cwd=cfg.parent, env=interpreter.environment())


def require_valid_config(cfg: Path) -> None:
    """StartError with Kamailio's own words when `kamailio -c` rejects `cfg`."""
    checked = check_config(cfg)
    if checked.returncode != 0:
        raise StartError(f"kamailio -c rejected {cfg}:\n{checked.stdout}{checked.stderr}")


def command(cfg: Path, pid_file: str | None = None, memory_manager: str = MEMORY_MANAGER) -> list[str]:
    """Kamailio in the foreground, logging to stderr, with our memory manager (docs/benchmark.md).
    Run it with cwd = the cfg's folder: include_file looks in the working directory first.

    It starts through `env PYTHONHOME=...`: whatever python3 comes first on the caller's PATH,
    the embedded interpreter is the system one (kemi/interpreter.py). env execs
    Kamailio, so the PID is Kamailio's."""
    argv = ["env", interpreter.shell_prefix(), "kamailio", "-DD", "-E"]
    if memory_manager:
        argv += ["-x", memory_manager]
    argv += ["-f", str(cfg)]
    if pid_file:
        argv += ["-P", pid_file]
    return argv


def start(settings: Settings, workdir: Path, cfg: Path = KAMAILIO_CFG, timeout: float = 30,
          log: Path | None | Literal["default"] = "default", kemi_root: Path = PROJECT_ROOT) -> Daemon:
    """Start Kamailio on `cfg` rendered for `settings` in `workdir`; output to workdir/kamailio.log
    (or to our stdout with log=None)."""
    cfg_path = prepare(settings, workdir, cfg, kemi_root)
    require_valid_config(cfg_path)
    first = settings.sip.listen[0]
    # Kamailio binds UDP with SO_REUSEADDR: a second instance on the same port starts fine
    # and silently shares the traffic. Refuse instead.
    if first.proto == "udp" and sip_options_ok(first.host, first.port):
        raise StartError(f"something already answers SIP on {first.socket}: stop it first")
    Path(settings.ctl_socket).unlink(missing_ok=True)
    # cwd = the cfg's folder: Kamailio resolves include_file "kamailio-settings.cfg" against
    # the working directory FIRST, so another folder's rendered file would win silently
    daemon = Daemon("kamailio", command(cfg_path, settings.pid_file),
                    workdir / "kamailio.log" if log == "default" else log, cwd=cfg_path.parent)
    try:
        if first.proto == "udp":
            wait_for(lambda: sip_options_ok(first.host, first.port), timeout,
                     f"Kamailio to answer OPTIONS on {first.socket}", daemon, interval=0.2)
        else:
            wait_for(lambda: Path(settings.ctl_socket).exists(), timeout, "Kamailio's control socket", daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon
