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

import KSR


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

# survives a reload: re-running this file keeps the module's globals
_loaded = globals().get("_loaded")


def mod_init():
    global _loaded
    if _loaded is not None:
        try:        # the kemi.reload that loaded the running code swaps in the edited one
            _loaded = _loaded.reloader.load(KSR, _define("KEMI_SETTINGS"), _loaded)
        except BaseException as exc:   # load() catches everything itself; this is the last net
            KSR.err(f"kemi: reload failed, still running the previous code: {exc!r}\n")
        return _loaded.router
    from kemi import reload
    from kemi.settings import SettingsError

    try:
        _loaded = reload.load(KSR, _define("KEMI_SETTINGS"))
    except SettingsError as exc:
        KSR.crit(f"kemi: cannot start: {exc}\n")
        raise
    return _loaded.router
