"""The script app_python3 loads (modparam "load" in kamailio.cfg). Keep it tiny.

Kamailio imports it once, before forking; mod_init() returns the object whose methods are
the routes. Where the project and the settings file are comes from kamailio-settings.cfg
(#!define KEMI_ROOT / KEMI_SETTINGS), so Python reads the same settings as kamailio.cfg.

`kamcmd app_python.reload` (make reload) runs this file again in each process, in the same
module namespace, then mod_init(): kemi/reload.py swaps in the edited code or, when it does
not load, keeps the previous router (docs/reload.md).
"""
import importlib.machinery
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, cast

import KSR

if TYPE_CHECKING:
    from kemi.reload import Loaded


def _define(name: str) -> str:
    value = KSR.kx.get_def(name)
    if not value:
        raise RuntimeError(f"#!define {name} is missing: kamailio.cfg must include kamailio-settings.cfg")
    return value.strip('"')


class _GuardedLoader(importlib.machinery.SourceFileLoader):
    """Runs this file again on a reload; an error in it is logged, never raised: app_python3
    5.6 would retry the reload on every message and, after a few, stop routing at all."""

    def exec_module(self, module):
        try:
            super().exec_module(module)
        except BaseException as exc:
            where = f"{exc.filename}:{exc.lineno}: " if isinstance(exc, SyntaxError) else ""
            KSR.err(f"kemi: {self.path} not reloaded, the running one stays: {where}{exc!r}\n")


class _EntryFinder:
    """How a reload finds this file: importlib.reload looks the module up again, and its
    folder (kemi/) is no longer on sys.path (below)."""

    def find_spec(self, name, path=None, target=None):
        if name != __name__:
            return None
        return importlib.util.spec_from_file_location(name, __file__, loader=_GuardedLoader(name, __file__))


if not any(type(f).__name__ == "_EntryFinder" for f in sys.meta_path):
    sys.meta_path.insert(0, _EntryFinder())

_root = _define("KEMI_ROOT")
# app_python3 puts this file's folder (kemi/) first on sys.path; import the package from its
# parent (kemi/sip.py must not shadow a 'sip' module)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") not in (_root, os.path.join(_root, "kemi"))]
sys.path.insert(0, _root)
# settings python.compiled: the mypyc-built modules (make compile) come first; `kemi` is a
# namespace package, so what was not compiled still loads from _root (kemi/compiled.py)
_compiled = (KSR.kx.get_def("KEMI_COMPILED") or "").strip('"')
if _compiled:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _compiled]
    sys.path.insert(0, _compiled)

# The cfg variable `make reload` bumps (rendered into kamailio-settings.cfg, starts at 0).
# Written here, not imported: this file must work while the package does not import.
GENERATION_PV = "$sel(cfg_get.kemi_reload.generation)"


class _Handler:
    """The object app_python3 calls (mod_init's result, the same one for the whole run): it
    forwards every route to the running router, after checking the reload generation.

    app_python3 5.6 looks for its own reload (kamcmd app_python.reload) only when no other
    process is inside Python at that instant (lock_try in apy_exec), so under traffic a worker
    can serve several more messages with the old code. `make reload` bumps the cfg variable
    kemi_reload.generation instead: each worker compares it on every call (one KSR call) and
    loads the new code before the message in hand.
    """

    def __init__(self):
        self.generation = "0"            # the rendered start value (a select gives it as text)

    def _router(self):
        generation = KSR.pv.get(GENERATION_PV)
        if generation != self.generation and generation is not None:
            self.generation = generation      # first: a failing load is tried, and logged, once
            _reload()
        return _loaded.router

    def child_init(self, rank):
        from kemi import stderr
        stderr.line_buffered()          # Kamailio's log lines whole (-E, glibc 2.37+): kemi/stderr.py
        return _loaded.router.child_init(rank)      # no message yet: nothing to compare

    # the hot callbacks, spelled out (no __getattr__ on the per-message path)
    def ksr_request_route(self, msg):
        return self._router().ksr_request_route(msg)

    def ksr_on_sl_reply(self, msg, *event):
        return self._router().ksr_on_sl_reply(msg, *event)

    def ksr_branch_manage(self, msg):
        return self._router().ksr_branch_manage(msg)

    def ksr_onreply_manage(self, msg):
        return self._router().ksr_onreply_manage(msg)

    def ksr_failure_manage(self, msg):
        return self._router().ksr_failure_manage(msg)

    def ksr_xhttp_event(self, msg, *event):
        return self._router().ksr_xhttp_event(msg, *event)

    def ksr_topos_event(self, msg, *event):
        return self._router().ksr_topos_event(msg, *event)

    def __getattr__(self, name):
        # the other callbacks, route names a Router subclass adds
        return getattr(self._router(), name)


# statistics-module variables, one per callback (kemi/names.py ENTRY_STATS, declared by the
# rendered kamailio-settings.cfg): spelled out here too, this file must run without the package
_STAT = "kemi_entries_"


class _CountingHandler(_Handler):
    """_Handler that counts each entry into Python per callback (metrics.count_python_entries:
    #!define KEMI_COUNT_ENTRIES). One more KSR call per entry, so it is off by default."""

    def ksr_request_route(self, msg):
        KSR.statistics.update_stat(_STAT + "request_route", 1)
        return self._router().ksr_request_route(msg)

    def ksr_on_sl_reply(self, msg, *event):
        KSR.statistics.update_stat(_STAT + "on_sl_reply", 1)
        return self._router().ksr_on_sl_reply(msg, *event)

    def ksr_branch_manage(self, msg):
        KSR.statistics.update_stat(_STAT + "branch_manage", 1)
        return self._router().ksr_branch_manage(msg)

    def ksr_onreply_manage(self, msg):
        KSR.statistics.update_stat(_STAT + "onreply_manage", 1)
        return self._router().ksr_onreply_manage(msg)

    def ksr_failure_manage(self, msg):
        KSR.statistics.update_stat(_STAT + "failure_manage", 1)
        return self._router().ksr_failure_manage(msg)

    def ksr_xhttp_event(self, msg, *event):
        KSR.statistics.update_stat(_STAT + "xhttp_event", 1)
        return self._router().ksr_xhttp_event(msg, *event)

    def ksr_topos_event(self, msg, *event):
        KSR.statistics.update_stat(_STAT + "topos_event", 1)
        return self._router().ksr_topos_event(msg, *event)

    def __getattr__(self, name):
        method = getattr(self._router(), name)
        if not callable(method):
            return method

        def counted(*args):
            KSR.statistics.update_stat(_STAT + "other", 1)
            return method(*args)
        return counted


def _reload() -> None:
    """Swap in the edited code; on any error keep the running one (kemi/reload.py logs why)."""
    global _loaded
    try:        # the kemi.reload that loaded the running code swaps in the edited one
        _loaded = _loaded.reloader.load(KSR, _define("KEMI_SETTINGS"), _loaded)
    except BaseException as exc:   # load() catches everything itself; this is the last net
        KSR.err(f"kemi: reload failed, still running the previous code: {exc!r}\n")


# survives a reload: re-running this file keeps the module's globals. Both are None until the
# first mod_init sets them, and Kamailio calls nothing else before it.
_loaded = cast("Loaded", globals().get("_loaded"))
_handler = cast("_Handler", globals().get("_handler"))


# app_python3s (kamailio.cfg, Kamailio 6+) calls functions of this module by name, with no
# message object (app_python3 calls the methods of the object mod_init returns): the same
# handler serves both
def ksr_request_route(*_):
    return _handler.ksr_request_route(None)


def ksr_on_sl_reply(*event):
    return _handler.ksr_on_sl_reply(None, *event)


def ksr_branch_manage(*_):
    return _handler.ksr_branch_manage(None)


def ksr_onreply_manage(*_):
    return _handler.ksr_onreply_manage(None)


def ksr_failure_manage(*_):
    return _handler.ksr_failure_manage(None)


def ksr_xhttp_event(*event):
    return _handler.ksr_xhttp_event(None, *event)


def ksr_topos_event(*event):
    return _handler.ksr_topos_event(None, *event)


def ksr_records_replay(*event):
    return _handler.ksr_records_replay(None, *event)


def child_init(rank):
    return _handler.child_init(rank)


def __getattr__(name):
    """Any other callback name (a route a Router subclass arms), as app_python3 finds it."""
    handler = globals().get("_handler")
    if handler is None or name.startswith("__"):
        raise AttributeError(name)
    method = getattr(handler, name)
    return lambda *args: method(None, *args)


def mod_init():
    global _loaded, _handler
    if _loaded is not None:         # kamcmd app_python.reload: this file ran again
        _reload()
        return _handler
    _handler = _CountingHandler() if KSR.kx.get_def("KEMI_COUNT_ENTRIES") else _Handler()
    from kemi import reload
    from kemi.settings import SettingsError

    try:
        _loaded = reload.load(KSR, _define("KEMI_SETTINGS"))
    except SettingsError as exc:
        KSR.crit(f"kemi: cannot start: {exc}\n")
        raise
    return _handler
