"""Compiled routing (issue 26 b): which modules mypyc compiles, where the compiled copy lives,
and whether it is current. This module itself is never compiled (the settings check and
make reload read it in a plain interpreter).

`make compile` (kemi_tools/compile.py) builds the hot path with mypyc into build/compiled/
(never beside the sources: the interpreted package stays the default). settings
`python.compiled = true` puts that folder first on Kamailio's sys.path (#!define
KEMI_COMPILED, kemi/kamailio_entry.py); `kemi` is a namespace package, so every module not
compiled still comes from kemi/. A subpackage with a compiled module is copied whole (its
__init__.py and any module mypyc cannot compile, as .py), since a regular package is only
looked for in the first folder that has it.

The copy is current when its manifest names this interpreter and every kemi/**/*.py has the
hash it was built from: a compiled module assumes the types of what it calls, so an edit of any
module (compiled or not) needs `make compile` again, and a restart (an extension module cannot
be re-imported into a running process: docs/reload.md).
"""
from __future__ import annotations

import hashlib
import json
from importlib.machinery import EXTENSION_SUFFIXES
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:                # the compile venv has it; Debian's python3 (Kamailio's) needs no decorator
        from mypy_extensions import mypyc_attr
    except ImportError:
        def mypyc_attr(*attrs, **kwattrs):
            return lambda thing: thing

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
BUILD_DIR = PROJECT_ROOT / "build" / "compiled"
MANIFEST = "manifest.json"
SETTING = "python.compiled"
FIX = "run `make compile` (then restart Kamailio: a compiled module cannot be reloaded)"

# What mypyc compiles: the per-message path. Left interpreted, with the reason (mypyc 2.4.1):
#   kemi/cluster/part.py     mypyc segfaults building it together with kemi/routing (alone it builds)
#   kemi/topology/part.py    internal mypyc error: KeyError '__name__' (a class renamed at run time)
#   kemi/observe/metrics.py  "Inheriting from most builtin types is unimplemented" (Gauge(Counter), a NamedTuple)
#   kemi/store/              same error (DatabaseUnavailable(RuntimeError)); MySQLdb does the work anyway
#   kemi/message.py          as a non-native class (its _PV descriptors write the instance's __dict__,
#                            which native classes have not), callers in other modules got C calls to
#                            its methods that mypyc never declared (gcc: implicit declaration of
#                            CPyDef_message___Message___set_ruri): the message stays a Python class
#   kemi/settings/, kemi/testing/, start-up and tools: not per message
COMPILED_MODULES = (
    "kemi/features.py", "kemi/names.py", "kemi/sip.py",
    "kemi/routing/guard.py", "kemi/routing/registrar.py", "kemi/routing/router.py", "kemi/routing/sides.py",
    "kemi/cluster/sync.py",
    "kemi/limits/calls.py", "kemi/limits/part.py", "kemi/limits/rate.py",
    "kemi/media/actions.py", "kemi/media/families.py", "kemi/media/flags.py", "kemi/media/learning.py",
    "kemi/media/part.py", "kemi/media/security.py", "kemi/media/view.py",
    "kemi/nat/part.py", "kemi/nat/work.py",
    "kemi/observe/decisions.py", "kemi/observe/memory.py", "kemi/observe/part.py",
    "kemi/overload/admission.py", "kemi/overload/part.py",
    "kemi/records/cdr.py", "kemi/records/media.py", "kemi/records/part.py", "kemi/records/reason.py",
    "kemi/records/schema.py", "kemi/records/spool.py",
    "kemi/sbc/direction.py", "kemi/sbc/media.py", "kemi/sbc/part.py", "kemi/sbc/policy.py",
    "kemi/security/ban.py", "kemi/security/dialog.py", "kemi/security/part.py", "kemi/security/scanner.py",
    "kemi/security/uri.py",
    "kemi/topology/callid.py", "kemi/topology/decisions.py",
    "kemi/websocket/handshake.py", "kemi/websocket/part.py",
)


def interpreter_tag() -> str:
    """The ABI the extension modules are built for ("cpython-311-x86_64-linux-gnu")."""
    return f"{sys.implementation.cache_tag}:{sysconfig.get_config_var('EXT_SUFFIX')}:{sys.version.split()[0]}"


def source_hashes(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """kemi/**/*.py (but the fake KSR) -> sha256: what a compiled copy was built from."""
    root = package_dir.parent
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(package_dir.rglob("*.py"))
            if "__pycache__" not in p.parts and p.relative_to(package_dir).parts[0] != "testing"}


def write_manifest(build_dir: Path, hashes: dict[str, str], compiler: str) -> None:
    (build_dir / MANIFEST).write_text(json.dumps(
        {"interpreter": interpreter_tag(), "compiler": compiler, "modules": list(COMPILED_MODULES),
         "sources": hashes}, indent=1) + "\n")


def staleness(build_dir: Path = BUILD_DIR, package_dir: Path = PACKAGE_DIR) -> str | None:
    """Why the compiled copy in `build_dir` cannot run (None: it is current)."""
    manifest = build_dir / MANIFEST
    if not manifest.is_file():
        return f"there is no compiled copy at {build_dir}"
    try:
        built = json.loads(manifest.read_text())
        interpreter, sources = built["interpreter"], built["sources"]
    except (ValueError, KeyError, TypeError):
        return f"{manifest} is not a manifest written by make compile"
    if interpreter != interpreter_tag():
        return f"{build_dir} was built for {interpreter}, this is {interpreter_tag()}"
    now = source_hashes(package_dir)
    changed = sorted(name for name in now.keys() | sources.keys() if now.get(name) != sources.get(name))
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return f"{build_dir} is stale: {', '.join(changed[:3])}{more} changed since make compile"
    return None


def is_compiled(module) -> bool:
    """True when `module` was loaded from an extension module (a .so), not from its .py."""
    return str(getattr(module, "__file__", "") or "").endswith(tuple(EXTENSION_SUFFIXES))
