"""One version: kemi/version.py, read by pyproject.toml, printed by `python3 -m kemi --version`,
named by the newest entries of CHANGELOG.md and debian/changelog (which the Debian package takes
its version from); scripts/release.py writes all of them."""
import datetime
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kemi.version import VERSION

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("release", ROOT / "scripts" / "release.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)
WHEN = datetime.datetime(2027, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def project_copy(tmp_path: Path) -> Path:
    for rel in (release.VERSION_FILE, release.CHANGELOG_MD, release.DEBIAN_CHANGELOG, release.DEBIAN_CONTROL):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_the_version_is_written_once_and_everything_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kemi.version.VERSION"}
    assert release.code_version((ROOT / release.VERSION_FILE).read_text()) == VERSION
    done = subprocess.run([sys.executable, "-m", "kemi", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == f"kemi {VERSION}\n"


def test_the_changelogs_agree_with_the_version_and_each_other():
    assert release.problems(ROOT) == []
    md = release.md_entries((ROOT / release.CHANGELOG_MD).read_text())
    deb = release.debian_entries((ROOT / release.DEBIAN_CHANGELOG).read_text())
    assert md[0][0] == deb[0][0] == VERSION
    assert md == deb and md[0][1], "every release names its changes, the same in both"


def test_a_disagreement_is_found(tmp_path):
    """Control: the check above fails when one place says something else."""
    root = project_copy(tmp_path)
    text = (root / release.DEBIAN_CHANGELOG).read_text()
    (root / release.DEBIAN_CHANGELOG).write_text(text.replace(f"kemi ({VERSION})", "kemi (9.9.9)", 1))
    assert any("debian/changelog's newest entry is 9.9.9" in p for p in release.problems(root))
    (root / release.DEBIAN_CHANGELOG).write_text(text)
    md = (root / release.CHANGELOG_MD).read_text()
    (root / release.CHANGELOG_MD).write_text(md.replace("\n- ", "\n- Something else. ", 1))
    assert release.problems(root) == [f"the changes of {VERSION} differ between CHANGELOG.md and debian/changelog"]


def test_release_writes_all_three_and_goes_only_up(tmp_path):
    root = project_copy(tmp_path)
    new = VERSION + "+site1"
    release.release(root, new, ["A site's own build, with a long line that debian/changelog wraps at eighty "
                                "columns while CHANGELOG.md keeps it on one line."], when=WHEN)
    assert release.problems(root) == []
    assert release.code_version((root / release.VERSION_FILE).read_text()) == new
    deb = (root / release.DEBIAN_CHANGELOG).read_text()
    assert deb.startswith(f"kemi ({new}) unstable; urgency=medium\n\n  * A site's own build")
    signed = f" -- {release.maintainer((root / release.DEBIAN_CONTROL).read_text())}  Sat, 02 Jan 2027 03:04:05 +0000"
    assert signed in deb
    assert all(len(line) <= 80 for line in deb.splitlines() if not line.startswith(" -- "))
    assert f"## {new} (2027-01-02)\n\n- A site's own build" in (root / release.CHANGELOG_MD).read_text()
    with pytest.raises(release.ReleaseError, match="not newer"):
        release.release(root, VERSION, ["down again"])
    with pytest.raises(release.ReleaseError, match="not a version kemi uses"):
        release.release(root, "2.0.0-1", ["a Debian revision"])
    with pytest.raises(release.ReleaseError, match="say what changed"):
        release.release(root, "99.0", [])
