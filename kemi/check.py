"""What `kemi check` and `make reload` check before code or settings go live.

check()             the settings file loads and validates, and the router class it names imports
describe_failure()  'file:line: Type: message' of where new code broke (kemi.reload logs it)
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

# frames of the loading machinery itself: where new code broke is the innermost frame outside them
_LOADER_FILES = frozenset({__file__, str(Path(__file__).with_name("reload.py"))})
# errors that already say what is wrong and how to fix it (names, not classes: a reload makes
# new classes, and the error may come from either copy of the package)
_SELF_EXPLAINING = frozenset({"SettingsError", "SettingsProblems", "RestartNeeded"})


def check(path: str | None) -> tuple[str, list[str]]:
    """(the file checked, its problems as lines naming key and fix; [] = valid)."""
    from kemi.app import load_router_class
    from kemi.settings import SettingsError, load_settings, settings_path

    file = str(settings_path(path))
    try:
        settings = load_settings(path)
    except SettingsError as exc:
        return file, [str(p) for p in exc.problems]
    # the router class is imported only at Kamailio's start: a typo there would stop it too
    sys.path[:0] = [p for p in settings.python.path if p not in sys.path]
    try:
        load_router_class(settings.python.router)
    except SettingsError as exc:
        return file, [str(exc)]
    except Exception as exc:            # the site's module itself fails to import
        return file, [f"setting 'python.router': importing {settings.python.router!r} failed "
                      f"({describe_failure(exc)}); fix that module"]
    return file, []


def describe_failure(exc: BaseException) -> str:
    """'file:line: Type: message' of where the new code broke (the innermost frame that is
    not the loader's), or the settings error, which names its key and the fix."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: {type(exc).__name__}: {exc.msg}"
    if type(exc).__name__ in _SELF_EXPLAINING:
        return f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename not in _LOADER_FILES]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return f"{where}{type(exc).__name__}: {exc}"
