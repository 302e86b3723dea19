#!/usr/bin/python3
"""The kemi Debian package (`make deb`): kemi_<version>_all.deb from debian/ with Debian's own
tools (dpkg-buildpackage, debhelper, dh-python), checked by lintian.

    scripts/deb.py build [--out DIR] [--no-lintian] [CHECKOUT]

The build runs on a copy of the checkout's files as git sees them (tracked and new, not
ignored: no .venv, no caches), so the tree is never touched; the .deb, .buildinfo and .changes
land in DIR (default CHECKOUT/dist). It refuses to start when kemi/version.py, CHANGELOG.md and
debian/changelog disagree (scripts/release.py). lintian then runs on the result and fails the
build on any error or warning that debian/kemi.lintian-overrides does not explain.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debroot  # checkout_files
import release

PROJECT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 900
LINTIAN_TIMEOUT = 600
# the build sees Debian's own tools only: a pyenv or venv python3 first on PATH must not build it
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LINTIAN_FAIL_ON = "error,warning"


# what a tree that is not a git checkout (a release tarball, a copy) leaves out of the build
NOT_SOURCE = {".git", ".venv", "__pycache__", ".pytest_cache", "dist", "build", "run", "node_modules"}


class BuildError(RuntimeError):
    pass


def source_files(checkout: Path) -> list[str]:
    """The files the package is built from: git's view of a checkout (tracked and new, not
    ignored), else every file of the tree but caches, virtualenvs and build output."""
    if (checkout / ".git").exists():
        return debroot.checkout_files(checkout)
    return sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")
                  if p.is_file() and not NOT_SOURCE & set(p.relative_to(checkout).parts)
                  and not p.name.endswith(".egg-info") and p.suffix != ".pyc")


def build_env() -> dict:
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PATH=CLEAN_PATH, LC_ALL="C.UTF-8", DEB_BUILD_OPTIONS=os.environ.get("DEB_BUILD_OPTIONS", ""))
    return env


def package_file(version: str) -> str:
    return f"kemi_{version}_all.deb"


def build(checkout: Path, out: Path) -> Path:
    """Build the package of `checkout` into `out`; the .deb's path."""
    found = release.problems(checkout)
    if found:
        raise BuildError("the versions disagree (scripts/release.py check): " + "; ".join(found))
    version = release.code_version((checkout / release.VERSION_FILE).read_text())
    if shutil.which("dpkg-buildpackage") is None:
        raise BuildError("dpkg-buildpackage is missing: scripts/install.sh --deb installs the build tools")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kemi-deb-", dir="/var/tmp") as tmp:
        src = Path(tmp) / f"kemi-{version}"
        src.mkdir()
        for rel in source_files(checkout):
            source = checkout / rel
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                dest.symlink_to(os.readlink(source))
            elif source.is_file():
                shutil.copy2(source, dest)
        log = out / f"kemi_{version}_build.log"
        started = time.monotonic()
        with open(log, "w") as f:
            done = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=build_env(),
                                  stdout=f, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
        if done.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            hint = ("\n(Unmet build dependencies: scripts/install.sh --deb installs them)"
                    if "unmet build dependencies" in tail.lower() else "")
            raise BuildError(f"dpkg-buildpackage failed ({done.returncode}), log {log}:\n{tail}{hint}")
        made = [p for p in Path(tmp).iterdir() if p.is_file() and p.name.startswith(f"kemi_{version}_")]
        for p in made:
            shutil.copyfile(p, out / p.name)
    deb = out / package_file(version)
    if not deb.is_file():
        raise BuildError(f"dpkg-buildpackage made {[p.name for p in made]}, not {deb.name}")
    print(f"deb: built {deb} in {time.monotonic() - started:.0f} s (log {log})", flush=True)
    return deb


def lintian(deb: Path, show_overrides: bool = False) -> subprocess.CompletedProcess:
    """lintian on the .changes of this build (the .deb and its .buildinfo). Its verdict comes from
    a run without --show-overrides: with it, lintian 2.116 fails on overridden tags too."""
    changes = sorted(deb.parent.glob(deb.name.replace("_all.deb", "_*.changes")))
    target = changes[-1] if changes else deb
    argv = ["lintian", "--fail-on", LINTIAN_FAIL_ON, "--display-info"]
    if show_overrides:
        argv.append("--show-overrides")
    return subprocess.run([*argv, str(target)], capture_output=True, text=True, timeout=LINTIAN_TIMEOUT,
                          env=build_env())


def tags(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:2] in ("E:", "W:", "I:", "O:", "P:", "X:")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/deb.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("build",))
    parser.add_argument("checkout", nargs="?", type=Path, default=PROJECT)
    parser.add_argument("--out", type=Path, default=None, help="where the .deb goes (default CHECKOUT/dist)")
    parser.add_argument("--no-lintian", action="store_true", help="skip lintian (a rebuild already checked)")
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    try:
        deb = build(checkout, (args.out or checkout / "dist").resolve())
    except (BuildError, release.ReleaseError, debroot.RootError, subprocess.TimeoutExpired) as exc:
        print(f"deb: {exc}", file=sys.stderr)
        return 1
    if args.no_lintian:
        return 0
    checked = lintian(deb)
    found = tags(checked.stdout)
    if found:
        print("\n".join(found))
    if checked.returncode != 0:
        print(f"deb: lintian failed ({checked.returncode}) on {deb.name}: the errors/warnings above; fix them, "
              f"or explain one that must stay in debian/kemi.lintian-overrides", file=sys.stderr)
        return 1
    overridden = [line for line in tags(lintian(deb, show_overrides=True).stdout) if line.startswith("O:")]
    print("\n".join(overridden) if overridden else "", end="\n" if overridden else "")
    print(f"deb: lintian: no error or warning on {deb.name}"
          + (f" ({len(overridden)} tags overridden, each explained in debian/kemi.lintian-overrides)"
             if overridden else ""))
    return 0

if __name__ == "__main__":
    sys.exit(main())
