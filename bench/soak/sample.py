"""What the soak samples, every few seconds, into one flat dict of series -> value.

    kamailio.rss/<process>        VmRSS of each Kamailio process (shm pages it touched included)
    kamailio.rss_anon/<process>   its private memory (RssAnon): pkg, the embedded Python's heap, libc
    kamailio.pkg/<process>        Kamailio's own pkg accounting (kamcmd pkg.stats real_used)
    kamailio.fds/<process>        open file descriptors
    kamailio.shm                  shm in use (shmem:real_used_size), shared by all processes
    python.gc_objects/<process>   objects the cyclic GC tracks   } from the Python memory reports
    python.blocks/<process>       blocks pymalloc holds          } (metrics.python_memory_interval,
    python.traced/<process>       bytes tracemalloc sees         }  kemi/observe/memory.py)
    rtpengine.rss_anon, rtpengine.fds, rtpengine.sessions
    mysql.connections             connections open to the soak's database (information_schema)
    tm.inuse                      transactions in memory (tmx:inuse_transactions)
    usrloc.contacts               registered contacts (usrloc:location_contacts)
    htable.ipban, htable.authfail items in the ban and failed-password tables
    core.requests                 requests Kamailio received (core:rcv_requests): the x axis

<process> names a Kamailio process by its role (kamcmd core.psx): udp-0 .. udp-3 (the SIP
workers), tcp-0 .., main, timer, slow-timer, ctl, ... PIDs are fixed for a Kamailio run.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from kemi.observe.memory import MEMORY_DIR

from bench.soak.stack import SoakStack

_STAT_LINE = re.compile(r"^([\w-]+):([\w-]+) = (-?\d+)$", re.M)
_FIELD = re.compile(r"^\s*(\w+):\s*(.*?)\s*$")


def kamcmd_records(text: str) -> list[dict[str, str]]:
    """kamcmd's list of {...} records (core.psx, pkg.stats, htable.stats) as dicts, keys lower-case."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "{":
            current = {}
        elif stripped == "}":
            if current is not None:
                records.append(current)
            current = None
        elif current is not None and (m := _FIELD.match(line)):
            current[m.group(1).lower()] = m.group(2)
    return records


def role(description: str, taken: set[str]) -> str:
    """A short, stable name for a Kamailio process from its core.psx description."""
    d = description.lower()
    if m := re.match(r"udp receiver child=(\d+)", d):
        name = f"udp-{m.group(1)}"
    elif m := re.match(r"tcp receiver.*child=(\d+)", d):
        name = f"tcp-{m.group(1)}"
    elif d.startswith("main process"):
        name = "main"
    else:
        name = re.sub(r"[^a-z0-9]+", "-", d).strip("-")[:24] or "process"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (bytes) and open fds of one process; {} when it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0]) * 1024
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return {}
    return out


def latest_reports(directory: Path) -> dict[int, dict]:
    """pid -> the last Python memory report each process wrote."""
    out = {}
    for file in directory.glob("*.jsonl"):
        try:
            with open(file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 65536))
                lines = f.read().decode(errors="replace").splitlines()
            for line in reversed(lines):
                try:
                    report = json.loads(line)
                except ValueError:
                    continue
                out[int(report["pid"])] = report
                break
        except OSError:
            continue
    return out


@dataclass
class Sampler:
    stack: SoakStack
    started: float = field(default_factory=time.monotonic)
    roles: dict[int, str] = field(default_factory=dict)       # Kamailio pid -> role

    def learn_processes(self) -> dict[int, str]:
        taken: set[str] = set()
        self.roles = {int(r["pid"]): role(r.get("dsc", ""), taken)
                      for r in kamcmd_records(self.stack.kamcmd("core.psx")) if r.get("pid", "").isdigit()}
        return self.roles

    def statistics(self) -> dict[str, int]:
        return {f"{g}:{n}": int(v) for g, n, v in _STAT_LINE.findall(self.stack.kamcmd("stats.get_statistics", "all"))}

    def sample(self) -> dict[str, float]:
        stack = self.stack
        values: dict[str, float] = {"t": round(time.monotonic() - self.started, 2)}
        stats = self.statistics()
        values["core.requests"] = stats.get("core:rcv_requests", 0)
        values["core.replies"] = stats.get("core:rcv_replies", 0)
        values["kamailio.shm"] = stats.get("shmem:real_used_size", 0)
        values["tm.inuse"] = stats.get("tmx:inuse_transactions", 0)
        values["usrloc.contacts"] = stats.get("usrloc:location_contacts", 0)
        for pid, name in self.roles.items():
            status = proc_status(pid)
            if status:
                values[f"kamailio.rss/{name}"] = status["VmRSS"]
                values[f"kamailio.rss_anon/{name}"] = status["RssAnon"]
                values[f"kamailio.fds/{name}"] = status["fds"]
        for record in kamcmd_records(stack.kamcmd("pkg.stats")):
            owner = self.roles.get(int(record.get("pid", "0") or 0))
            if owner and record.get("real_used", "").isdigit():
                values[f"kamailio.pkg/{owner}"] = int(record["real_used"])
        for record in kamcmd_records(stack.kamcmd("htable.stats")):
            if record.get("all", "").isdigit():
                values[f"htable.{record.get('name')}"] = int(record["all"])
        assert stack.settings is not None
        for pid, report in latest_reports(Path(stack.settings.runtime.dir) / MEMORY_DIR).items():
            owner = self.roles.get(pid)
            if owner:
                values[f"python.gc_objects/{owner}"] = report["gc_objects"]
                values[f"python.blocks/{owner}"] = report["allocated_blocks"]
                if "traced_bytes" in report:
                    values[f"python.traced/{owner}"] = report["traced_bytes"]
        if stack.rtpengine:
            status = proc_status(stack.rtpengine.pid)
            if status:
                values["rtpengine.rss_anon"] = status["RssAnon"]
                values["rtpengine.fds"] = status["fds"]
        if stack.ng:
            with contextlib.suppress(Exception):      # a missed sample, not a failed soak
                values["rtpengine.sessions"] = stack.ng.open_sessions()
        # MariaDB may be restarted under us (a shared server): a missed sample, not a crashed soak
        with contextlib.suppress(Exception):
            values["mysql.connections"] = stack.db.connections()
        return values

    def alive_pids(self) -> list[int]:
        return [pid for pid in self.roles if Path(f"/proc/{pid}").exists()]

    def python_tops(self) -> dict[str, dict]:
        """Each Python process's last tracemalloc top entries (for the report)."""
        assert self.stack.settings is not None
        reports = latest_reports(Path(self.stack.settings.runtime.dir) / MEMORY_DIR)
        return {self.roles.get(pid, str(pid)): {"top": r.get("top", []), "types": r.get("types", []),
                                                "messages": r.get("messages")}
                for pid, r in reports.items()}
