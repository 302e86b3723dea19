"""The script app_python3 loads (modparam "load" in kamailio.cfg). Keep it tiny.

Kamailio imports it once, before forking; mod_init() returns the object whose methods are
the routes. Where the project and the settings file are comes from kamailio-settings.cfg
(#!define KEMI_ROOT / KEMI_SETTINGS), so Python reads the same settings as kamailio.cfg.
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
# app_python3 puts this file's folder (kemi/) first on sys.path; import the package from its parent
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.join(_root, "kemi")]
sys.path.insert(0, _root)


def mod_init():
    from kemi.app import create_router_from_file
    from kemi.settings import SettingsError

    try:
        return create_router_from_file(KSR, _define("KEMI_SETTINGS"))
    except SettingsError as exc:
        KSR.crit(f"kemi: cannot start: {exc}\n")
        raise
