"""The Python that Kamailio embeds, and the environment that keeps it the system's own.

app_python3 starts its interpreter without telling it where it lives, so Python does what a
bare `python3` command would: it searches PATH for `python3` and takes its prefix from the
first one found, walking up from that file to a folder with lib/python3.X/os.py (X: the
embedded libpython's minor version; a venv's pyvenv.cfg points to its base first). A pyenv,
conda or self-built Python 3.X first on PATH therefore becomes the prefix: its stdlib is
used and Debian's dist-packages (python3-mysqldb, python3-cachetools) are not on sys.path, so
mod_init fails with "No module named 'cachetools'" and Kamailio exits. PYTHONHOME set to the
system interpreter's prefix pins it: every start of Kamailio goes through `environment()`.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

# The interpreter app_python3 embeds on Debian (its libpython3.X), whose dist-packages hold
# what the routing imports; scripts/install.sh --python installs them for it.
SYSTEM_PYTHON = "/usr/bin/python3"
APP_PYTHON_MODULE = "app_python3.so"
_LIBPYTHON_RE = re.compile(r"libpython(3\.\d+)")


@functools.cache
def system_version() -> str:
    """"3.11" on Debian 12, "3.13" on Debian 13."""
    return _ask(SYSTEM_PYTHON, "import sys; print('%d.%d' % sys.version_info[:2])")


@functools.cache
def system_home() -> str:
    """PYTHONHOME for the system interpreter: PREFIX, or PREFIX:EXEC_PREFIX when they differ."""
    prefix, exec_prefix = _ask(SYSTEM_PYTHON, "import sys; print(sys.base_prefix); print(sys.base_exec_prefix)").split()
    return prefix if prefix == exec_prefix else f"{prefix}:{exec_prefix}"


def _ask(python: str, code: str) -> str:
    # -I: the answer must not depend on the caller's PYTHONHOME, PYTHONPATH or user site
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def environment(base: dict | None = None) -> dict:
    """The environment to start Kamailio (or `kamailio -c`) with: `base` (default: ours)
    with PYTHONHOME pinned to the system interpreter, whatever python3 comes first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONHOME"] = system_home()
    return env


def shell_prefix() -> str:
    """What a printed start command puts before `kamailio` for the same effect."""
    return f"PYTHONHOME={system_home()}"


# --- what an embedded interpreter would take from a PATH (plain functions of the file tree) ---


def _landmark_prefix(start: Path, version: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "lib" / f"python{version}" / "os.py").is_file():
            return folder
    return None


def path_prefix(path: str, version: str) -> tuple[str, Path] | None:
    """(the python3 on PATH `path` that an embedded Python `version` would start from, the
    prefix it would take), or None when it would keep its own (no python3 on PATH, or the
    first one's tree has no lib/python<version>: pyenv's 2.7, another minor version)."""
    for folder in path.split(os.pathsep):
        candidate = Path(folder or ".") / "python3"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        start = Path(os.path.realpath(candidate)).parent
        # a venv (pyvenv.cfg beside its bin/ folder): Python starts from the venv's home
        venv = next((p / "pyvenv.cfg" for p in (candidate.parent, candidate.parent.parent)
                     if (p / "pyvenv.cfg").is_file()), None)
        if venv is not None:
            home = re.search(r"^\s*home\s*=\s*(.+?)\s*$", venv.read_text(errors="replace"), re.M)
            if home:
                start = Path(os.path.realpath(home.group(1)))
        prefix = _landmark_prefix(start, version)
        return (str(candidate), prefix) if prefix is not None else None
    return None


def same_stdlib(prefix: Path, other: Path, version: str) -> bool:
    """Both prefixes give the same lib/python3.X (merged /usr: "/" is the system's too, which is
    where Python ends up from a python3 with no tree of its own, such as pyenv's shims)."""
    stdlib = Path("lib") / f"python{version}"
    return os.path.realpath(prefix / stdlib) == os.path.realpath(other / stdlib)


def embedded_version(modules_dir: Path) -> str | None:
    """The libpython3.X app_python3.so in `modules_dir` is linked with (None: not found)."""
    module = modules_dir / APP_PYTHON_MODULE
    if not module.is_file():
        return None
    try:
        out = subprocess.run(["ldd", str(module)], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    m = _LIBPYTHON_RE.search(out)
    return m.group(1) if m else None


def start_problems(env: Mapping[str, str], version: str, system_prefix: str, system_version_: str,
                   linked_version: str | None) -> list[str]:
    """Why a Kamailio started plainly with `env` would not embed the system Python (a list
    of lines naming the problem and the fix; [] = it would)."""
    problems = []
    if linked_version and linked_version != system_version_:
        problems.append(f"python: Kamailio's app_python3 embeds Python {linked_version}, but {SYSTEM_PYTHON} is "
                        f"{system_version_}: the packages installed for {SYSTEM_PYTHON} are not Kamailio's; "
                        f"install Kamailio and Python from the same Debian release")
    home = env.get("PYTHONHOME")
    if home:
        if home.split(":")[0] != system_prefix:
            problems.append(f"python: PYTHONHOME={home} makes Kamailio embed that Python instead of "
                            f"{system_prefix}'s: unset it, or start Kamailio with PYTHONHOME={system_prefix}")
        return problems
    found = path_prefix(env.get("PATH", ""), version)
    if found and not same_stdlib(found[1], Path(system_prefix), version):
        exe, prefix = found
        problems.append(f"python: a Kamailio started from this shell would embed the Python at {prefix} "
                        f"({exe}, the first python3 on PATH, is Python {version} too) instead of "
                        f"{system_prefix}, and not find Debian's python3-mysqldb and python3-cachetools "
                        f"(mod_init: \"No module named 'cachetools'\"); make run and the printed start commands "
                        f"set PYTHONHOME={system_prefix}; by hand: PYTHONHOME={system_prefix} kamailio ...")
    return problems


MODULE_PATH_RE = re.compile(r"Default paths to modules:\s*(\S+)")


def module_dirs(binary: str = "kamailio") -> list[Path]:
    """Where `binary -I` says its modules are ([] when it does not run or say)."""
    try:
        out = subprocess.run([binary, "-I"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    m = MODULE_PATH_RE.search(out.stdout + out.stderr)
    return [Path(p) for p in m.group(1).split(":") if p] if m else []


def problems_here(modules_dir: Path | None = None, env: dict | None = None) -> list[str]:
    """start_problems() for this machine and environment (kemi check); `modules_dir`
    defaults to the installed Kamailio's module folder that holds app_python3.so."""
    if modules_dir is None:
        modules_dir = next((d for d in module_dirs() if (d / APP_PYTHON_MODULE).is_file()), None)
    try:
        version = system_version()
        home = system_home()
    except (OSError, subprocess.SubprocessError):
        return [f"python: {SYSTEM_PYTHON} does not run: Kamailio's app_python3 embeds it; "
                f"install python3 (scripts/install.sh)"]
    linked = embedded_version(modules_dir) if modules_dir else None
    return start_problems(os.environ if env is None else env, linked or version, home.split(":")[0], version, linked)
