"""The script app_python3 loads (modparam "load" in kamailio.cfg). Keep it tiny.

Kamailio imports it once, before forking; mod_init() returns the object whose methods are
the routes. Where the project and the settings file are comes from kamailio-settings.cfg
(#!define KEMI_ROOT / KEMI_SETTINGS), so Python reads the same settings as kamailio.cfg.

`kamcmd app_python.reload` (make reload) runs this file again in each process, in the same
module namespace, then mod_init(): kemi/reload.py swaps in the edited code or, when it does
not load, keeps the previous router (docs/reload.md).
"""
import os
import sys

import KSR


def _define(name: str) -> str:
    value = KSR.kx.get_def(name)
    if not value:
        raise RuntimeError(f"#!define {name} is missing: kamailio.cfg must include kamailio-settings.cfg")
    return value.strip('"')


_root = _define("KEMI_ROOT")
_here = os.path.join(_root, "kemi")
# app_python3 puts this file's folder (kemi/) first on sys.path: import the package from its
# parent instead. kemi/ stays, last: a reload looks this file up on sys.path again, and
# there it shadows no real module (kemi/sip.py vs a 'sip' package)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") not in (_root, _here)]
sys.path.insert(0, _root)
sys.path.append(_here)

# survives a reload: re-running this file keeps the module's globals
_loaded = globals().get("_loaded")


def mod_init():
    global _loaded
    if _loaded is not None:
        try:        # the kemi.reload that loaded the running code swaps in the edited one
            _loaded = _loaded.reloader.load(KSR, _define("KEMI_SETTINGS"), _loaded)
        except Exception as exc:   # load() catches everything itself; this is the last net
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
