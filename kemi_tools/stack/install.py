"""`make install` / `make uninstall`: kemi into an existing Kamailio's folder (default /etc/kamailio).

    python3 -m kemi_tools.stack.install install   --dir DIR [--settings FILE] [--db-url URL]
                                            [--db-ro-url URL] [--kamailio BIN] [--modules DIR] [--no-deps]
    python3 -m kemi_tools.stack.install uninstall --dir DIR

install refuses, writing nothing, when Kamailio is older than 5.6, a module the configuration
loads is missing (the loadmodule lines of kamailio.cfg and kamailio-common.cfg, with the
#!ifdef branches the settings select) or the settings have problems. Otherwise it installs the
Python dependencies for Debian's python3 (scripts/install.sh --python), copies kamailio.cfg,
kamailio-common.cfg, the settings file and the kemi package into DIR, renders
kamailio-settings.cfg there with the installed package (so KEMI_ROOT/KEMI_ENTRY name DIR) and
checks the result with `kamailio -c`. A file it replaces is moved to DIR/kemi-backup/ first;
DIR/kemi-install.json records every file installed and every backup, so uninstall puts each
backup back (byte for byte: the file itself is moved back) and removes the rest.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from kemi import interpreter
from kemi.settings import (DISPATCHER_LIST_NAME, PROJECT_ROOT, RENDERED_CFG_NAME, SettingsError, parse_settings,
                           render_kamailio_defines)

MIN_VERSION = (5, 6)
MANIFEST_NAME = "kemi-install.json"
BACKUP_DIR_NAME = "kemi-backup"
SETTINGS_NAME = "settings.toml"       # beside the package: the installed kemi's default settings file
TOP_CFGS = ("kamailio.cfg", "kamailio-common.cfg")
PACKAGE = "kemi"
# Debian's python3 is the interpreter app_python3 embeds: the dependencies go there
KAMAILIO_PYTHON = interpreter.SYSTEM_PYTHON
PYTHON_IMPORTS = ("MySQLdb", "cachetools")
SETTINGS_MODE = 0o640                 # it holds the database password
FILE_MODE, DIR_MODE = 0o644, 0o755

LOADMODULE_RE = re.compile(r'^\s*loadmodule\s+"([^"]+)"')
DIRECTIVE_RE = re.compile(r"^\s*#!(ifdef|ifndef|else|endif|define|trydef)\b\s*(\w*)")
VERSION_RE = re.compile(r"kamailio (\d+)\.(\d+)\.(\d+)")
MODULE_PATH_RE = re.compile(r"Default paths to modules:\s*(\S+)")


class Refused(Exception):
    """Install or uninstall cannot go on; the message says why and what to do."""


# --- what the configuration needs (plain functions of text) ------------------------


def defined_names(cfg_text: str) -> set[str]:
    """Names a cfg fragment #!define-s (the rendered kamailio-settings.cfg)."""
    return {m.group(2) for m in map(DIRECTIVE_RE.match, cfg_text.splitlines())
            if m and m.group(1) in ("define", "trydef") and m.group(2)}


def loaded_modules(cfg_text: str, defines: set[str]) -> list[str]:
    """The loadmodule names in a cfg, following #!ifdef/#!ifndef/#!else with `defines`."""
    active = [True]           # one entry per open #!if: is that branch taken (and all outer ones)?
    modules = []
    for line in cfg_text.splitlines():
        m = DIRECTIVE_RE.match(line)
        if m:
            kind, name = m.groups()
            if kind in ("ifdef", "ifndef"):
                active.append(active[-1] and ((name in defines) == (kind == "ifdef")))
            elif kind == "else" and len(active) > 1:
                active[-1] = active[-2] and not active[-1]
            elif kind == "endif" and len(active) > 1:
                active.pop()
            continue
        lm = LOADMODULE_RE.match(line)
        if lm and active[-1]:
            modules.append(lm.group(1) if lm.group(1).endswith(".so") else lm.group(1) + ".so")
    return modules


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = VERSION_RE.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def set_toml_key(text: str, table: str, key: str, value: str) -> str:
    """`text` with [table] key = "value" (replaced in place, else added), comments kept."""
    lines = text.splitlines()
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    header = next((i for i, line in enumerate(lines) if re.match(rf"^\s*\[{re.escape(table)}\]\s*(#.*)?$", line)), None)
    if header is None:
        lines += ["", f"[{table}]", f"{key} = {quoted}"]
    else:
        end = next((i for i in range(header + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
        at = next((i for i in range(header + 1, end) if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i])), None)
        if at is None:
            lines.insert(header + 1, f"{key} = {quoted}")
        else:
            lines[at] = f"{key} = {quoted}"
    out = "\n".join(lines) + "\n"
    try:
        written = tomllib.loads(out).get(table, {}).get(key)
    except tomllib.TOMLDecodeError:
        written = None
    if written != value:
        raise Refused(f"could not set {table}.{key} in the settings file (is it written as a dotted key or an "
                      f"inline table?): set it there by hand and leave the make variable empty")
    return out


# --- checks against the machine (nothing is written) ---------------------------------


def kamailio_version(binary: str) -> tuple[int, int, int]:
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise Refused(f"{binary} not found: install Kamailio {'.'.join(map(str, MIN_VERSION))} or newer "
                      f"(Debian: apt install kamailio) or set KAMAILIO=/path/to/kamailio") from None
    version = parse_version(out.stdout + out.stderr)
    if version is None:
        raise Refused(f"`{binary} -v` printed no Kamailio version: is KAMAILIO a Kamailio binary?")
    if version[:2] < MIN_VERSION:
        raise Refused(f"Kamailio {'.'.join(map(str, version))} is too old: kemi needs "
                      f"{'.'.join(map(str, MIN_VERSION))} or newer (KEMI app_python3 with the 5.6 API)")
    return version


def module_dirs(binary: str, override: str | None) -> list[Path]:
    if override:
        return [Path(override)]
    out = subprocess.run([binary, "-I"], capture_output=True, text=True, timeout=30)
    m = MODULE_PATH_RE.search(out.stdout + out.stderr)
    if not m:
        raise Refused(f"`{binary} -I` does not say where its modules are: set KAMAILIO_MODULES=DIR")
    return [Path(p) for p in m.group(1).split(":") if p]


def missing_modules(needed: list[str], dirs: list[Path]) -> list[str]:
    return [mod for mod in dict.fromkeys(needed) if not any((d / mod).is_file() for d in dirs)]


# --- the plan: source file (or text) -> installed path --------------------------------


def package_files(root: Path = PROJECT_ROOT) -> list[str]:
    """The kemi package's files, relative to the project (no caches)."""
    return sorted(str(p.relative_to(root)) for p in (root / PACKAGE).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def settings_text(source: Path, db_url: str | None, db_ro_url: str | None) -> str:
    text = source.read_text(encoding="utf-8")
    if db_url:
        text = set_toml_key(text, "database", "url", db_url)
    if db_ro_url:
        text = set_toml_key(text, "database", "ro_url", db_ro_url)
    return text


class Manifest:
    """DIR/kemi-install.json: files installed (relative to DIR), their backups, folders created."""

    def __init__(self, target: Path):
        self.path = target / MANIFEST_NAME
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.installed: list[str] = data.get("installed", [])
        self.backups: dict[str, str] = data.get("backups", {})
        self.created_dirs: list[str] = data.get("created_dirs", [])

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"installed": self.installed, "backups": self.backups,
                                   "created_dirs": self.created_dirs}, indent=1) + "\n")
        tmp.replace(self.path)


class Installer:
    def __init__(self, target: Path, kamailio: str = "kamailio", modules: str | None = None,
                 settings: Path | None = None, db_url: str | None = None, db_ro_url: str | None = None,
                 deps: bool = True, root: Path = PROJECT_ROOT):
        self.target, self.kamailio, self.modules = target, kamailio, modules
        self.settings, self.db_url, self.db_ro_url, self.deps, self.root = settings, db_url, db_ro_url, deps, root

    # -- install --

    def preflight(self) -> str:
        """Every check; returns the settings text to install. Writes nothing."""
        for name in TOP_CFGS:
            if not (self.root / name).is_file():
                raise Refused(f"{self.root / name} is missing: run make install from the kemi source tree")
        manifest = Manifest(self.target)
        if (self.target / BACKUP_DIR_NAME).exists() and not manifest.path.exists():
            raise Refused(f"{self.target / BACKUP_DIR_NAME} exists but {manifest.path} does not (a backup "
                          f"left from an earlier install?): move it away first")
        existing = next(p for p in (self.target, *self.target.parents) if p.exists())
        if not os.access(existing, os.W_OK):
            raise Refused(f"cannot write in {existing}: run make install as root (or choose KAMAILIO_DIR)")
        self.version = kamailio_version(self.kamailio)
        text = settings_text(self.settings_source(manifest), self.db_url, self.db_ro_url)
        installed_settings = self.target / SETTINGS_NAME
        try:
            settings = parse_settings(tomllib.loads(text), source=str(installed_settings))
        except tomllib.TOMLDecodeError as exc:
            raise Refused(f"{self.settings_source(manifest)} is not valid TOML ({exc})") from None
        except SettingsError as exc:
            raise Refused("the settings to install have problems:\n  "
                          + "\n  ".join(str(p) for p in exc.problems)) from None
        defines = defined_names(render_kamailio_defines(settings, self.target))
        needed = [m for name in TOP_CFGS for m in loaded_modules((self.root / name).read_text(), defines)]
        dirs = module_dirs(self.kamailio, self.modules)
        missing = missing_modules(needed, dirs)
        if missing:
            raise Refused(f"Kamailio module(s) missing in {':'.join(map(str, dirs))}: {', '.join(missing)}. "
                          f"Install them (Debian: kamailio-python3-modules, kamailio-mysql-modules, "
                          f"kamailio-extra-modules, kamailio-utils-modules, kamailio-tls-modules, "
                          f"kamailio-websocket-modules) "
                          f"or set KAMAILIO_MODULES to the folder that has them")
        return text

    def settings_source(self, manifest: Manifest) -> Path:
        """SETTINGS if given; else the installed settings file when it is ours (an upgrade keeps
        the site's edits); else the project's settings.toml."""
        if self.settings:
            if not self.settings.is_file():
                raise Refused(f"SETTINGS={self.settings} does not exist")
            return self.settings
        if SETTINGS_NAME in manifest.installed and (self.target / SETTINGS_NAME).is_file():
            return self.target / SETTINGS_NAME
        return self.root / SETTINGS_NAME

    def install(self) -> None:
        text = self.preflight()
        if self.deps:
            self.install_python_deps()
        manifest = Manifest(self.target)
        previous = set(manifest.installed)
        self.placed: set[str] = set()
        self.make_dir(self.target, manifest)
        for rel in (*TOP_CFGS, *package_files(self.root)):
            self.place(rel, manifest, lambda dest, rel=rel: shutil.copyfile(self.root / rel, dest),
                       FILE_MODE, previous)
        self.place(SETTINGS_NAME, manifest, lambda dest: dest.write_text(text, encoding="utf-8"),
                   SETTINGS_MODE, previous)
        self.render(manifest, previous)
        for rel in previous - self.placed:                 # an upgrade dropped this file
            self.remove(rel, manifest)
        manifest.save()
        checked = subprocess.run([self.kamailio, "-c", "-f", str(self.target / "kamailio.cfg")], cwd=self.target,
                                 capture_output=True, text=True, timeout=120, env=interpreter.environment())
        if checked.returncode != 0:
            self.uninstall()
            raise Refused(f"`kamailio -c` rejected the installed configuration; uninstalled again "
                          f"(backups restored):\n"
                          f"{checked.stdout}{checked.stderr}")

    def install_python_deps(self) -> None:
        script = self.root / "scripts" / "install.sh"
        subprocess.run([str(script), "--python"], check=True)
        code = f"import {', '.join(PYTHON_IMPORTS)}"
        if subprocess.run([KAMAILIO_PYTHON, "-c", code], capture_output=True).returncode != 0:
            raise Refused(f"{KAMAILIO_PYTHON} cannot `{code}` even after scripts/install.sh --python: "
                          f"install python3-mysqldb and python3-cachetools")

    def make_dir(self, path: Path, manifest: Manifest) -> None:
        """mkdir -p; the folders made inside DIR (and DIR itself, ".") are recorded."""
        if path.is_dir():
            return
        self.make_dir(path.parent, manifest)
        path.mkdir(mode=DIR_MODE)
        if path.is_relative_to(self.target):
            manifest.created_dirs.append(str(path.relative_to(self.target)))
            manifest.save()

    def place(self, rel: str, manifest: Manifest, write, mode: int, previous: set[str]) -> None:
        """Write DIR/rel with write(path); a file there that we did not install is backed up first."""
        dest = self.target / rel
        self.make_dir(dest.parent, manifest)
        if dest.exists() and rel not in previous and rel not in manifest.backups:
            backup = self.target / BACKUP_DIR_NAME / rel
            backup.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest, backup)
            manifest.backups[rel] = str(backup.relative_to(self.target))
        if rel not in manifest.installed:
            manifest.installed.append(rel)
        self.placed.add(rel)
        manifest.save()                      # before the write: an interrupted install still uninstalls
        tmp = dest.with_name(dest.name + ".kemi-tmp")
        write(tmp)
        os.chmod(tmp, mode)
        if mode == SETTINGS_MODE:
            _group_readable_by_kamailio(tmp)
        os.replace(tmp, dest)

    def render(self, manifest: Manifest, previous: set[str]) -> None:
        """kamailio-settings.cfg (and dispatcher.list) by the INSTALLED package: its KEMI_ROOT
        and KEMI_ENTRY are then DIR, not this source tree. Done as the site redoes it after an edit."""
        for rel in (RENDERED_CFG_NAME, DISPATCHER_LIST_NAME):
            dest = self.target / rel
            if dest.exists() and rel not in previous and rel not in manifest.backups:
                (self.target / BACKUP_DIR_NAME).mkdir(exist_ok=True)
                os.replace(dest, self.target / BACKUP_DIR_NAME / rel)
                manifest.backups[rel] = f"{BACKUP_DIR_NAME}/{rel}"
        manifest.save()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        done = subprocess.run([KAMAILIO_PYTHON, "-m", "kemi.settings", "render", SETTINGS_NAME, "."],
                              cwd=self.target, env=env, capture_output=True, text=True, timeout=60)
        for rel in (RENDERED_CFG_NAME, DISPATCHER_LIST_NAME):
            if (self.target / rel).exists():
                self.placed.add(rel)
                if rel not in manifest.installed:
                    manifest.installed.append(rel)
        manifest.save()
        if done.returncode != 0:
            raise Refused(f"rendering {RENDERED_CFG_NAME} in {self.target} failed:\n{done.stdout}{done.stderr}")

    # -- uninstall --

    def uninstall(self) -> list[str]:
        manifest = Manifest(self.target)
        if not manifest.path.exists():
            raise Refused(f"{manifest.path} does not exist: nothing was installed in {self.target} by make install")
        done = []
        for rel in reversed(manifest.installed):
            self.remove(rel, manifest)
            done.append(rel)
        # Python's byte-code caches (Kamailio writes them at runtime) in the package's folders
        for d in sorted({(self.target / r).parent for r in done}, reverse=True):
            shutil.rmtree(d / "__pycache__", ignore_errors=True)
        for rel in sorted(manifest.created_dirs, key=len, reverse=True):
            d = self.target / rel
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        backup_dir = self.target / BACKUP_DIR_NAME
        for d in sorted((p for p in backup_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
        if backup_dir.is_dir() and not any(backup_dir.iterdir()):
            backup_dir.rmdir()
        manifest.path.unlink()
        if "." in manifest.created_dirs and self.target.is_dir() and not any(self.target.iterdir()):
            self.target.rmdir()
        return done

    def remove(self, rel: str, manifest: Manifest) -> None:
        """Put the backup of DIR/rel back, or delete DIR/rel when there was none."""
        dest = self.target / rel
        backup = manifest.backups.pop(rel, None)
        if backup and (self.target / backup).exists():
            os.replace(self.target / backup, dest)
        else:
            dest.unlink(missing_ok=True)
        if rel in manifest.installed:
            manifest.installed.remove(rel)
        if manifest.path.exists():
            manifest.save()


def start_command(target: Path) -> str:
    """The shell command that starts the installed Kamailio: from its folder (include_file looks
    in the working directory first), tlsf (docs/benchmark.md), and PYTHONHOME pinned so the
    embedded Python is the system one whatever python3 is first on PATH (kemi/interpreter.py)."""
    return f"cd {target} && {interpreter.shell_prefix()} kamailio -DD -E -x tlsf -f kamailio.cfg"


def _group_readable_by_kamailio(path: Path) -> None:
    """Debian's Kamailio runs as user kamailio: its group may read the settings (DB password)."""
    import grp
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam("kamailio").gr_gid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kemi_tools.stack.install", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("install", "uninstall"))
    parser.add_argument("--dir", required=True, type=Path, help="Kamailio's configuration folder (KAMAILIO_DIR)")
    parser.add_argument("--settings", type=lambda s: Path(s) if s else None, default=None,
                        help="settings file to install (SETTINGS)")
    parser.add_argument("--db-url", default=None, help="written into the installed settings' database.url")
    parser.add_argument("--db-ro-url", default=None, help="written into database.ro_url")
    parser.add_argument("--kamailio", default="kamailio", help="the Kamailio binary (KAMAILIO)")
    parser.add_argument("--modules", default=None, help="Kamailio's module folder (KAMAILIO_MODULES)")
    parser.add_argument("--no-deps", action="store_true", help="skip the Debian Python packages")
    args = parser.parse_args(argv)
    target = args.dir.absolute()
    inst = Installer(target, args.kamailio, args.modules or None, args.settings, args.db_url or None,
                     args.db_ro_url or None, deps=not args.no_deps)
    try:
        if args.action == "install":
            inst.install()
            print(f"kemi: installed into {target} (Kamailio {'.'.join(map(str, inst.version))}); replaced "
                  f"files are in {target / BACKUP_DIR_NAME}, `make uninstall KAMAILIO_DIR={target}` puts them back.\n"
                  f"kemi: start it from that folder:  {start_command(target)}\n"
                  f"kemi: after editing {target / SETTINGS_NAME}:  cd {target} && python3 -m kemi check && "
                  f"python3 -m kemi.settings render {SETTINGS_NAME} .")
        else:
            removed = inst.uninstall()
            print(f"kemi: uninstalled {len(removed)} files from {target}; backups restored")
    except Refused as exc:
        print(f"kemi install: refused: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"kemi install: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
