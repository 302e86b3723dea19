"""Run the sipvicious tools (svmap, svwar, svcrack) as an attacker would, and read their
result tables. They always send `User-Agent: friendly-scanner`, ignore -b (the kernel
picks the source address) and stop by themselves after --maximumtime seconds of silence.
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN_DIR = Path(sys.executable).parent
# a result table row: "| 3001      | 4821     |"
_ROW = re.compile(r"^\|\s*(?P<a>[^|]*?)\s*\|\s*(?P<b>[^|]*?)\s*\|")
HEADERS = {"SIP Device", "Extension"}


@dataclass
class ToolRun:
    argv: list[str]
    rc: int
    output: str

    @property
    def rows(self) -> list[tuple[str, str]]:
        """(first column, second column) of the result table, header row excluded."""
        out = []
        for line in self.output.splitlines():
            if (m := _ROW.match(line)) and m.group("a") not in HEADERS:
                out.append((m.group("a"), m.group("b")))
        return out


def run(tool: str, args: list[str], cwd: Path, timeout: float = 120) -> ToolRun:
    argv = [str(BIN_DIR / f"sipvicious_{tool}"), *args]
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL, env={"HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    return ToolRun(argv, done.returncode, done.stdout + done.stderr)


def svmap(host: str, port: int, cwd: Path) -> ToolRun:
    return run("svmap", ["-p", str(port), host], cwd)


def svwar(host: str, port: int, extensions: str, cwd: Path, method: str = "REGISTER",
          force: bool = False) -> ToolRun:
    args = ["-p", str(port), "-e", extensions, "-m", method, "--maximumtime", "5"]
    return run("svwar", args + (["--force"] if force else []) + [host], cwd)


def svcrack(host: str, port: int, user: str, passwords: str, cwd: Path, padding: int = 4) -> ToolRun:
    args = ["-p", str(port), "-u", user, "-r", passwords, "-z", str(padding), "--maximumtime", "5"]
    return run("svcrack", args + [host], cwd)
