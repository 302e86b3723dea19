"""Live reload: `kamcmd app_python.reload` (`make reload`) makes every worker run edited code.

How app_python3 5.6 reloads (apy_exec -> apy_reload_script, in each process on its next
Python call after the RPC bumped a shared counter): importlib.reload() of kamailio_entry,
then mod_init() again; the object mod_init returns replaces the handler, then its
child_init(rank) runs. Any exception there is logged by the C side, the old handler stays,
and the same reload is tried again on EVERY following message of that worker (a full
re-import and a traceback per message; on 5.6.3, after the third failure the worker stopped
answering at all, docs/reload.md).

So mod_init never fails on a reload. load() imports the new code in isolation: every module
of the kemi package (and of settings python.path) leaves sys.modules, is imported fresh from
its source and a new Router is built (settings read and validated again). On any error the
new modules are thrown away, the old ones put back, ONE line says file:line and why, and the
previous router is returned: the worker keeps serving with the code that worked.

The copy of this module loaded with the running code performs the swap (kamailio_entry keeps
it); the edited copy, once it loaded without error, does the next one.

    python3 -m kemi.reload [SETTINGS]   check the edited code, then send app_python.reload
"""
from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import py_compile
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

# the cfg variable (kamailio-settings.cfg, starts at 0) `make reload` increments; every worker
# compares it on each call (kemi/kamailio_entry.py spells the same select out: it must run
# even when this package does not import)
from kemi.check import check as check_settings
from kemi.check import describe_failure
from kemi.interpreter import SYSTEM_PYTHON as KAMAILIO_PYTHON  # the one app_python3 embeds
from kemi.names import RELOAD_GENERATION_GROUP, RELOAD_GENERATION_PV, RELOAD_GENERATION_VAR  # noqa: F401

if TYPE_CHECKING:
    from kemi.routing import Router
    from kemi.settings import Settings

PACKAGE = "kemi"
# A .pyc beside its source is trusted when the source's size and mtime (whole seconds) match:
# an edit of the same length within that second would load the old code. So a reload imports
# with its own pycache folder (under runtime.dir), holding only what `python3 -m kemi.reload`
# compiled as CHECKED hash-based pycs (PEP 552): Python uses one only if the source's hash
# still matches, and compiles anything else from its source, writing nothing. Every process
# reloads at the same moment; compiling ~100 modules in each was half of a reload's CPU (an SBC
# with 16 workers on 2 cores answered nothing for seconds, docs/reliability.md).
RELOAD_CACHE = "reload-pycache"


@dataclass
class Loaded:
    """What one process runs: its router, and what restarting would have to change."""
    router: Router
    kamailio_defines: str       # kamailio-settings.cfg as rendered from the settings at start
    reloader: ModuleType        # the kemi.reload module loaded with this code: does the next swap


# what make reload says when the compiled core runs (settings python.compiled)
COMPILED_NOTE = ("kemi: python.compiled = true: the compiled kemi package (build/compiled) stays as "
                 "Kamailio loaded it, only the modules of python.path (a site's Router) reload; "
                 "a change to kemi/ needs `make compile` and a Kamailio restart")


class RestartNeeded(Exception):
    """The edited settings change kamailio-settings.cfg: only a restart applies them."""


def load(ksr, settings_file: str, previous: Loaded | None = None) -> Loaded:
    """mod_init's work: the first load raises on any error (Kamailio must not start broken);
    a reload (previous given) never raises: on error it logs one line and keeps `previous`."""
    if previous is None:
        router = _build(ksr, settings_file)
        return Loaded(router, _defines(router.settings), sys.modules[__name__])
    roots, package = _roots(previous.router), _package_reloads(previous.router)
    saved = _take_modules(roots, package)
    try:
        with _from_sources(reload_cache(previous.router.settings.runtime.dir)):
            router = _build(ksr, settings_file)
            changed = changed_defines(previous.kamailio_defines, _defines(router.settings))
            reloader = importlib.import_module(__name__)    # the edited kemi/reload.py
        if changed:
            raise RestartNeeded(f"the settings change kamailio-settings.cfg ({', '.join(changed)}): "
                                "restart Kamailio to apply them")
    except BaseException as exc:    # nothing may reach app_python3 (docs/reload.md, Limits)
        _take_modules(roots, package)        # the half-imported new code goes
        sys.modules.update(saved)
        ksr.err(f"kemi: reload failed, still running the previous code: {describe_failure(exc)}\n")
        return previous
    router.take_over(previous.router)     # the Record-Route secret of this Kamailio run
    ksr.notice(f"kemi: reloaded {type(router).__module__}.{type(router).__name__} from {settings_file}\n")
    previous.router.close()     # its DB connection closes now, not whenever the cyclic GC runs
    gc.collect()
    return Loaded(router, previous.kamailio_defines, reloader)


def _build(ksr, settings_file: str):
    from kemi.app import create_router_from_file
    return create_router_from_file(ksr, settings_file)


def _defines(settings) -> str:
    from kemi.settings import render_kamailio_defines
    return render_kamailio_defines(settings)


def changed_defines(before: str, after: str) -> list[str]:
    """Names of the kamailio-settings.cfg lines that differ (never values: DBURL has a password)."""
    def named(text: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line.startswith("#!define "):
                name = line.split()[1]
            elif line.startswith("#"):
                continue                         # the header comment
            else:
                name = line.split("=", 1)[0]     # listen=, alias=: several lines share a name
            out.setdefault(name, []).append(line)
        return out

    old, new = named(before), named(after)
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def _roots(router) -> list[str]:
    """Folders whose modules a reload re-imports: settings python.path (a site's own router)."""
    return [os.path.abspath(p) + os.sep for p in router.settings.python.path]


def _package_reloads(router) -> bool:
    """False with settings python.compiled: the kemi package stays as loaded. An extension
    module cannot be re-imported (Python hands back the one already loaded), so re-importing
    it would silently keep the old code; the settings check at the reload refuses a compiled
    copy older than the sources (kemi/compiled.py), and only a restart loads a new one."""
    return not router.settings.python.compiled


def _take_modules(roots: list[str], package: bool = True) -> dict:
    """Remove the kemi package (unless `package` is false) and modules from `roots` from
    sys.modules; returns them."""
    taken = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if (package and (name == PACKAGE or name.startswith(PACKAGE + "."))) or any(file.startswith(r) for r in roots):
            taken[name] = sys.modules.pop(name)
    return taken


def reload_cache(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, RELOAD_CACHE)


@contextmanager
def _from_sources(cache: str):
    """Within: imports use only the checked pycs in `cache` (see RELOAD_CACHE), else compile
    from source, and write no .pyc."""
    saved = sys.pycache_prefix, sys.dont_write_bytecode
    sys.pycache_prefix, sys.dont_write_bytecode = cache, True
    importlib.invalidate_caches()                # files added since the last import are seen
    try:
        yield
    finally:
        sys.pycache_prefix, sys.dont_write_bytecode = saved


# --- python3 -m kemi.reload: check, then signal -------------------------------------------


def check(settings_file: str | None) -> str | None:
    """What would make the workers refuse the new code (None: nothing found), checked in this
    fresh process: every file of the package compiles, the settings load, the router imports."""
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as exc:
            return describe_failure(exc)
    _, problems = check_settings(settings_file)      # what `kemi check` checks: settings, router
    return "; ".join(problems) or None


def compile_for_reload(settings: Settings) -> int:
    """Compile what the workers will re-import, the package (unless python.compiled keeps it)
    and the site's python.path, into the reload cache as checked hash-based pycs
    (RELOAD_CACHE); returns how many. Best effort: a file not written is compiled by each
    worker from its source, as before."""
    cache = reload_cache(settings.runtime.dir)
    # the paths as imports see them (not resolved: a symlinked folder keeps its name there)
    sources = list(Path(os.path.abspath(__file__)).parent.rglob("*.py")) if not settings.python.compiled else []
    for root in settings.python.path:
        sources += Path(os.path.abspath(root)).rglob("*.py")
    saved = sys.pycache_prefix
    sys.pycache_prefix = cache                   # cache_from_source() maps each source into it
    written = 0
    try:
        for path in sources:
            try:
                py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)), doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
                written += 1
            except (py_compile.PyCompileError, OSError):
                continue
    finally:
        sys.pycache_prefix = saved
    return written


def signal_reload(ctl_socket: str) -> subprocess.CompletedProcess:
    """Increment kemi_reload.generation: each worker sees it on its next message and reloads.

    (Not app_python.reload: app_python3 5.6 checks for that only when no other process is in
    Python at that instant, so a busy worker may answer several more messages with old code.)
    """
    def kamcmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kamcmd", "-s", f"unix:{ctl_socket}", *args],
                              capture_output=True, text=True, timeout=15)

    current = kamcmd("cfg.get", RELOAD_GENERATION_GROUP, RELOAD_GENERATION_VAR)
    if current.returncode != 0 or not current.stdout.strip().lstrip("-").isdigit():
        return subprocess.CompletedProcess(current.args, current.returncode or 1, current.stdout, current.stderr)
    return kamcmd("cfg.seti", RELOAD_GENERATION_GROUP, RELOAD_GENERATION_VAR,
                  str(int(current.stdout.strip()) + 1))


def main(argv: list[str]) -> int:
    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    settings_file = args[0] if args else None
    problem = check(settings_file)
    if problem:
        print(f"kemi: the edited code would not load: {problem}", file=sys.stderr)
        if "No module named" in problem and os.path.realpath(sys.executable) != os.path.realpath(KAMAILIO_PYTHON):
            print(f"kemi: note: this check ran on {sys.executable}; Kamailio embeds {KAMAILIO_PYTHON}: "
                  f"run {KAMAILIO_PYTHON} -m kemi.reload (make reload does)", file=sys.stderr)
        if not force:
            print("kemi: reload NOT sent; fix it and run again (--force sends it anyway: the "
                  "workers then log the error and keep the previous code)", file=sys.stderr)
            return 1
    from kemi.settings import SettingsError, load_settings
    try:
        settings = load_settings(settings_file)
    except SettingsError as exc:
        print(f"kemi: {exc}", file=sys.stderr)
        return 1
    ctl = settings.ctl_socket
    if settings.python.compiled:
        print(COMPILED_NOTE)
    if not os.path.exists(ctl):
        print(f"kemi: no control socket at {ctl}: is Kamailio running with these settings? "
              "(make reload SETTINGS=... names the file make run used)", file=sys.stderr)
        return 1
    compile_for_reload(settings)
    done = signal_reload(ctl)
    if done.returncode != 0:
        print(f"kemi: kamcmd cfg.seti {RELOAD_GENERATION_GROUP} {RELOAD_GENERATION_VAR} failed: "
              f"{done.stdout}{done.stderr} (a kamailio-settings.cfg rendered before live reload existed? "
              "restart Kamailio once)", file=sys.stderr)
        return 1
    print(f"kemi: reload sent to the Kamailio at {ctl}; each worker loads the new code before "
          "its next message (errors: Kamailio's log, 'kemi: reload failed')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
