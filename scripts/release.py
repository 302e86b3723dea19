#!/usr/bin/python3
"""kemi's version in its three places, kept in agreement.

    scripts/release.py VERSION "change" ["change" ...]   a new release: kemi/version.py, a new
                                                         entry on top of CHANGELOG.md and of
                                                         debian/changelog (same changes)
    scripts/release.py check                             do the three agree? (exit 1 when not)

kemi/version.py is the one place the version is written for the code (pyproject.toml reads it,
`python3 -m kemi --version` prints it); the Debian package takes its version from the newest
entry of debian/changelog (a native package: no Debian revision), and CHANGELOG.md is the
project's own history. `make deb` refuses to build when they disagree.
"""
from __future__ import annotations

import ast
import datetime
import email.utils
import re
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VERSION_FILE = Path("kemi/version.py")
CHANGELOG_MD = Path("CHANGELOG.md")
DEBIAN_CHANGELOG = Path("debian/changelog")
DEBIAN_CONTROL = Path("debian/control")
DISTRIBUTION = "unstable"
# a version both PEP 440 and a Debian native package accept: 1.2.3, 0.1.0+test1 (no "-": that
# would be a Debian revision)
VERSION_RE = re.compile(r"^\d+(\.\d+)*(\+[a-z0-9]+(\.[a-z0-9]+)*)?$")

_MD_HEAD = re.compile(r"^## (\S+) \((\d{4}-\d{2}-\d{2})\)\s*$")
_DEB_HEAD = re.compile(r"^(\S+) \(([^)]+)\) [^;]+; urgency=\w+\s*$")


class ReleaseError(RuntimeError):
    pass


# --- reading (plain functions of text) ------------------------------------------------------


def code_version(text: str) -> str:
    """VERSION = "..." of kemi/version.py."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["VERSION"]:
            return ast.literal_eval(node.value)
    raise ReleaseError(f"{VERSION_FILE} has no VERSION = \"...\" line")


def _bullets(lines: list[str], marker: str) -> list[str]:
    """Bullet items (one string each, continuation lines joined) from an entry's lines."""
    items: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(marker):
            items.append(stripped[len(marker):].strip())
        elif stripped and items:
            items[-1] += " " + stripped
    return items


def md_entries(text: str) -> list[tuple[str, list[str]]]:
    """[(version, changes)] of CHANGELOG.md, newest first."""
    entries: list[tuple[str, list[str]]] = []
    body: list[str] = []
    for line in text.splitlines() + ["## end (0000-00-00)"]:
        m = _MD_HEAD.match(line)
        if m:
            if entries:
                entries[-1] = (entries[-1][0], _bullets(body, "- "))
            entries.append((m.group(1), []))
            body = []
        elif line.startswith("## "):
            raise ReleaseError(f"{CHANGELOG_MD}: heading {line!r} is not '## VERSION (YYYY-MM-DD)'")
        else:
            body.append(line)
    return entries[:-1]


def debian_entries(text: str) -> list[tuple[str, list[str]]]:
    """[(version, changes)] of debian/changelog, newest first."""
    entries: list[tuple[str, list[str]]] = []
    body: list[str] = []
    for line in text.splitlines():
        m = _DEB_HEAD.match(line)
        if m:
            entries.append((m.group(2), []))
            body = []
        elif line.startswith(" -- ") and entries:
            entries[-1] = (entries[-1][0], _bullets(body, "* "))
        else:
            body.append(line)
    return entries


def problems(root: Path = PROJECT) -> list[str]:
    """Why kemi/version.py, CHANGELOG.md and debian/changelog disagree ([] = they agree)."""
    version = code_version((root / VERSION_FILE).read_text())
    md = md_entries((root / CHANGELOG_MD).read_text())
    deb = debian_entries((root / DEBIAN_CHANGELOG).read_text())
    found = []
    if not md or md[0][0] != version:
        found.append(f"{CHANGELOG_MD}'s newest entry is {md[0][0] if md else 'missing'}, {VERSION_FILE} says {version}")
    if not deb or deb[0][0] != version:
        found.append(f"{DEBIAN_CHANGELOG}'s newest entry is {deb[0][0] if deb else 'missing'}, "
                     f"{VERSION_FILE} says {version}")
    if [v for v, _ in md] != [v for v, _ in deb]:
        found.append(f"the releases differ: {CHANGELOG_MD} has {[v for v, _ in md]}, "
                     f"{DEBIAN_CHANGELOG} {[v for v, _ in deb]}")
    else:
        for (v, md_changes), (_, deb_changes) in zip(md, deb, strict=True):
            if md_changes != deb_changes:
                found.append(f"the changes of {v} differ between {CHANGELOG_MD} and {DEBIAN_CHANGELOG}")
    return found


# --- writing ----------------------------------------------------------------------------------


def md_entry(version: str, day: datetime.date, changes: list[str]) -> str:
    return f"## {version} ({day.isoformat()})\n\n" + "".join(f"- {c}\n" for c in changes) + "\n"


def debian_entry(version: str, changes: list[str], maintainer: str, when: datetime.datetime) -> str:
    items = "".join(textwrap.fill(c, width=80, initial_indent="  * ", subsequent_indent="    ",
                                  break_long_words=False, break_on_hyphens=False) + "\n" for c in changes)
    return (f"kemi ({version}) {DISTRIBUTION}; urgency=medium\n\n{items}\n"
            f" -- {maintainer}  {email.utils.format_datetime(when)}\n\n")


def maintainer(control_text: str) -> str:
    m = re.search(r"^Maintainer:\s*(.+)$", control_text, re.M)
    if not m:
        raise ReleaseError(f"{DEBIAN_CONTROL} has no Maintainer: line")
    return m.group(1).strip()


def newer(version: str, than: str) -> bool:
    """Debian's ordering (dpkg --compare-versions), which the package upgrade follows."""
    return subprocess.run(["dpkg", "--compare-versions", version, "gt", than]).returncode == 0


def release(root: Path, version: str, changes: list[str], when: datetime.datetime | None = None) -> None:
    if not VERSION_RE.match(version):
        raise ReleaseError(f"{version!r} is not a version kemi uses: digits and dots, optionally "
                           f"+letters/digits (1.2.0, 1.2.0+site1); no '-'")
    if not changes or not all(c.strip() for c in changes):
        raise ReleaseError("say what changed: at least one non-empty change")
    found = problems(root)
    if found:
        raise ReleaseError("the versions disagree already: " + "; ".join(found))
    current = code_version((root / VERSION_FILE).read_text())
    if not newer(version, current):
        raise ReleaseError(f"{version} is not newer than {current}: an upgrade must go up")
    when = when or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    text = (root / VERSION_FILE).read_text()
    (root / VERSION_FILE).write_text(re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{version}"', text, flags=re.M))
    md = (root / CHANGELOG_MD).read_text()
    first = re.search(r"^## ", md, re.M)
    at = first.start() if first else len(md)
    (root / CHANGELOG_MD).write_text(md[:at] + md_entry(version, when.date(), changes) + md[at:])
    deb = (root / DEBIAN_CHANGELOG).read_text()
    who = maintainer((root / DEBIAN_CONTROL).read_text())
    (root / DEBIAN_CHANGELOG).write_text(debian_entry(version, changes, who, when) + deb)
    left = problems(root)
    if left:
        raise ReleaseError("written, but they disagree: " + "; ".join(left))


def main(argv: list[str]) -> int:
    try:
        if argv == ["check"]:
            found = problems()
            for line in found:
                print(f"release: {line}", file=sys.stderr)
            if not found:
                print(f"release: {code_version((PROJECT / VERSION_FILE).read_text())}: "
                      f"{VERSION_FILE}, {CHANGELOG_MD} and {DEBIAN_CHANGELOG} agree")
            return 1 if found else 0
        if len(argv) >= 2 and argv[0] != "check":
            release(PROJECT, argv[0], argv[1:])
            print(f"release: {argv[0]} written to {VERSION_FILE}, {CHANGELOG_MD} and {DEBIAN_CHANGELOG}")
            return 0
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
