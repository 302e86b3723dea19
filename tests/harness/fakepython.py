"""A Python tree like pyenv's, conda's or a self-built one, to put first on PATH.

bin/python3 is a script (nothing for Python's path search to follow back to /usr/bin) and
lib/python3.X is the system's stdlib (X: the system's minor version), so an interpreter that
takes this prefix starts fine but has none of Debian's dist-packages: exactly what a user's
own Python 3.X does to Kamailio's embedded one ("No module named 'cachetools'").
"""
from __future__ import annotations

from pathlib import Path

from kemi import interpreter


def fake_python(folder: Path) -> Path:
    """Make the tree in `folder`; returns its bin/ folder (put it first on PATH)."""
    version = interpreter.system_version()
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "python3"
    exe.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
    exe.chmod(0o755)
    (bin_dir / f"python{version}").symlink_to("python3")
    (folder / "lib").mkdir()
    (folder / "lib" / f"python{version}").symlink_to(f"/usr/lib/python{version}")
    return bin_dir
