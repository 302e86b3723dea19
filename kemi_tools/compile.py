"""`make compile`: the routing's hot path compiled with mypyc into build/compiled/ (issue 26 b).

    .venv/bin/python -m kemi_tools.compile [--out DIR] [--opt-level N] [--force]

Runs on the venv of Debian's python3 (scripts/install.sh --compile makes it, with mypy, whose
mypyc compiles; gcc and python3-dev from Debian), so the extension modules are built for the
interpreter app_python3 embeds. The modules are kemi/compiled.py's COMPILED_MODULES; the build
works on a copy of the sources and writes the finished folder in one rename, the manifest
(interpreter, source hashes) last: settings `python.compiled = true` refuses a missing or
stale copy at start (kemi/compiled.py staleness()).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kemi import compiled

SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(name="kemi-compiled", ext_modules=mypycify(sys.argv[1].split(","), opt_level=sys.argv[2]),
      script_args=["build_ext", "--build-lib", sys.argv[3], "--build-temp", "tmp", "--parallel", "2"])
"""


def mypyc_version() -> str:
    import mypy.version
    return f"mypy {mypy.version.__version__}"


def copy_sources(dest: Path) -> dict[str, str]:
    """kemi/ (the .py files) and the mypy configuration into `dest`; returns their hashes,
    taken from the copy (an edit made while gcc runs makes the result stale, not wrong)."""
    shutil.copytree(compiled.PACKAGE_DIR, dest / "kemi", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy2(compiled.PROJECT_ROOT / "pyproject.toml", dest / "pyproject.toml")
    return compiled.source_hashes(dest / "kemi")


def complete_packages(work: Path, out: Path) -> list[str]:
    """A subpackage with a compiled module is looked for in build/compiled/ only (a regular
    package lives in one folder): its other modules go there as .py. Returns them."""
    copied = []
    built = set(compiled.COMPILED_MODULES)
    for package in sorted({Path(m).parent for m in built if Path(m).parent != Path("kemi")}):
        for source in sorted((work / package).glob("*.py")):
            name = str(package / source.name)
            if name not in built:
                shutil.copy2(source, out / package / source.name)
                copied.append(name)
    return copied


def build(out: Path, opt_level: str = "3") -> dict:
    started = time.monotonic()
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="kemi-compile-") as tmp:
        work = Path(tmp)
        hashes = copy_sources(work)
        (work / "setup.py").write_text(SETUP)
        staged = work / "out"
        done = subprocess.run([sys.executable, "setup.py", ",".join(compiled.COMPILED_MODULES), opt_level,
                               str(staged)], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise SystemExit(f"kemi: make compile failed (mypyc, exit {done.returncode}):\n{tail}")
        copied = complete_packages(work, staged)
        compiled.write_manifest(staged, hashes, mypyc_version())
        # replace the previous copy in one rename: a Kamailio starting now sees one or the other
        out.parent.mkdir(parents=True, exist_ok=True)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        shutil.move(str(staged), out)
        shutil.rmtree(old, ignore_errors=True)
    so = sorted(out.rglob("*.so"))
    return {"seconds": round(time.monotonic() - started, 1), "modules": len(compiled.COMPILED_MODULES),
            "copied": copied, "so_files": len(so), "so_bytes": sum(p.stat().st_size for p in so)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kemi_tools.compile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=compiled.BUILD_DIR)
    ap.add_argument("--opt-level", default="3", choices=("0", "1", "2", "3"), help="mypyc's (gcc -O)")
    ap.add_argument("--force", action="store_true", help="build even when the copy is current")
    args = ap.parse_args(argv)
    if not args.force and compiled.staleness(args.out) is None:
        print(f"kemi: {args.out} is current (built from these sources for {compiled.interpreter_tag()}): "
              "nothing to do (--force builds anyway)")
        return 0
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("kemi: mypyc is missing: run make compile (scripts/install.sh --compile makes .venv with mypy)",
              file=sys.stderr)
        return 1
    result = build(args.out, args.opt_level)
    print(f"kemi: compiled {result['modules']} modules with {mypyc_version()} for {compiled.interpreter_tag()} "
          f"into {args.out} in {result['seconds']} s: {result['so_files']} .so files, "
          f"{result['so_bytes'] / 1e6:.1f} MB; set python.compiled = true and restart Kamailio to use it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
