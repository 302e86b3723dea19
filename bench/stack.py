"""The benchmark's daemons: its databases, and Kamailio pinned to a CPU and accounted by /proc.

Two Kamailio instances run side by side, one with kamailio.cfg (the Python routing) and one
with bench/native.cfg, on the same settings except their listen port and database. Each has
a database of its own with the same rows, so registrations made against one never show up
in the other and both start every scenario from the same state.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from kemi.settings import MediaInterface, PROJECT_ROOT, RtpengineDaemon, Settings, load_settings, toml_dump
from kemi_tools.stack import kamailio, mariadb
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.process import Daemon, sip_options_ok, wait_for, StartError

from bench import native_settings

NATIVE_CFG = PROJECT_ROOT / "bench" / "native.cfg"
PYTHON_CFG = kamailio.KAMAILIO_CFG
DOMAIN = "127.0.0.1"
PASSWORD = "bench-secret"
DB_USER, DB_PASSWORD = "kemi_bench", "kemi_bench_pw"
DB_RO_USER, DB_RO_PASSWORD = "kemi_bench_ro", "kemi_bench_ro_pw"
# subscribers are numbered extensions FIRST_EXTENSION.. ; AORs beyond the subscribers (for
# the 100,000-contact point) are FILLER_EXTENSION.. : registered, never called
FIRST_EXTENSION = 200000
FILLER_EXTENSION = 300000
CONTACT_EXPIRES = 3600
SHM_MB = 512           # 100,000 contacts need more than Kamailio's default 64 MB
CLK_TCK = os.sysconf("SC_CLK_TCK")
LATENCY_LINE = re.compile(r"\{(\d) (\d+) (\S+) [^}]*\}.*(request|reply)-route executed in: (\d+) usec")
ENTRY_STAT_LINE = re.compile(r"kemi_entries_(\w+) = (\d+)")
LATENCY_LOG_ON, LATENCY_LOG_OFF = 2, 3   # info (printed at debug=2) / debug (not printed)
# The load comes from an address that is not the server's own: the security screen (ban
# lookup, pike) runs for it as for any phone. All of it comes from this one address, so the
# flood threshold is raised to the most the settings allow (pike still counts every request),
# the most pike's 16-bit counter holds: 100,000 wrapped to 34,464 and banned the load at ~4,300/s
CALLER_IP = "127.0.0.3"
FLOOD_REQUESTS = 65_535
# media: rtpengine relays on its own loopback address (plain calls) or on the SBC's sides
RTPENGINE_ADDRESS = "127.0.0.4"
# the SBC on loopback: a public and a private side, a trunk gateway on each, two on the private
SBC_PUBLIC, SBC_PRIVATE = "127.0.1.1", "127.0.2.1"
PUBLIC_GATEWAY = "127.0.1.10"
PRIVATE_GATEWAYS = ("127.0.2.10", "127.0.2.11")


def extension(i: int) -> str:
    return str(FIRST_EXTENSION + i)


class BenchDatabase:
    """One database per Kamailio instance, filled by bulk SQL (seconds for 100,000 rows)."""

    def __init__(self, name: str, workdir: Path, host: str = "localhost", socket: str = mariadb.SOCKET):
        """`host` (and port) Kamailio connects to, `socket` the root's unix socket: the
        machine's MariaDB by default, or a private one (bench/instructions.py)."""
        self.name = name
        self.url = f"mysql://{DB_USER}:{DB_PASSWORD}@{host}/{name}"
        self.ro_url = f"mysql://{DB_RO_USER}:{DB_RO_PASSWORD}@{host}/{name}"
        self.workdir = workdir
        self.socket = socket

    def create(self, subscribers: int) -> None:
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{self.name}`;", socket=self.socket)
        file = self.workdir / f"{self.name}-db.toml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(toml_dump({"database": {"url": self.url, "ro_url": self.ro_url}}))
        mariadb.provision(load_settings(file), socket=self.socket)
        self.sql(f"""
            INSERT INTO subscriber (username, domain, password, ha1, ha1b)
            SELECT {FIRST_EXTENSION} + seq, '{DOMAIN}', '{PASSWORD}', '', ''
            FROM seq_0_to_{subscribers - 1};""")

    def load_contacts(self, contacts: int, subscribers: int, contact_port: int, socket: str) -> None:
        """Exactly `contacts` registered contacts, as usrloc would have written them: one per
        AOR, the subscribers first, then filler AORs; all pointing at the callee SIPp."""
        registered = min(contacts, subscribers)
        filler = contacts - registered
        rows = []
        for first, count, prefix in ((FIRST_EXTENSION, registered, "s"), (FILLER_EXTENSION, filler, "f")):
            if count:
                rows.append(f"""
                    SELECT CONCAT('bench-{prefix}', seq), {first} + seq,
                           CONCAT('sip:', {first} + seq, '@{DOMAIN}:{contact_port};transport=UDP'),
                           NOW() + INTERVAL {CONTACT_EXPIRES} SECOND, -1, CONCAT('bench-', seq), 1,
                           NOW(), 'kemi-bench', '{socket}', -1
                    FROM seq_0_to_{count - 1}""")
        self.sql("TRUNCATE TABLE location;")
        if rows:
            self.sql("INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, "
                     "last_modified, user_agent, socket, connection_id) "
                     + " UNION ALL ".join(rows) + ";")

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM {table};").strip())

    def sql(self, text: str) -> str:
        return mariadb.root_sql(text, self.name, socket=self.socket)

    def drop(self) -> None:
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{self.name}`;", socket=self.socket)


# OPTIONS tries before a Kamailio that failed a run counts as no longer answering
LOST_PROBES = 5


@dataclass
class BenchKamailio:
    """One Kamailio (Python or native routing) pinned to `cpus`, started and stopped by PID."""
    label: str                  # "python" or "native"
    cfg: Path
    port: int
    db: BenchDatabase
    workdir: Path
    cpus: str
    children: int
    usrloc_db_mode: int = 1
    memory_manager: str = ""    # kamailio -x: qm (Kamailio's default), fm or tlsf
    media: dict | None = None   # the [media] table (rtpengine) when anchoring is on, else off
    sbc_gateway_port: int = 0   # SBC on (loopback sides, gateways on this port) when not 0
    extra: dict = field(default_factory=dict)   # more settings, {table: {key: value}} (bench/topology.py)
    daemon: Daemon | None = None
    settings: Settings | None = field(default=None, repr=False)
    log_offset: int = 0
    # put before `kamailio` in its command (after env's PYTHONHOME=): e.g. valgrind and its
    # options (bench/instructions.py), with env assignments first
    wrap: tuple[str, ...] = ()
    pinned: bool = True         # taskset -c cpus
    count_entries: bool = True  # metrics.count_python_entries (one KSR call per entry, Python side)
    idle_busy: float = 0.04     # CPU seconds per 0.5 s below which it counts as idle (wait_idle)

    @property
    def socket(self) -> str:
        return f"udp:127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sbc_target(self) -> str:
        """The SBC's public-side socket (the trunk gateways' calls come in there)."""
        return f"{SBC_PUBLIC}:{self.port}"

    def write_settings(self) -> Settings:
        """Production defaults (security on; media on when the scenario has rtpengine), the
        bench's ports and database; the same for both configs."""
        file = self.workdir / "settings.toml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        tables = {
            "sip": {"domain": DOMAIN, "listen": [self.socket], "children": self.children},
            "database": {"url": self.db.url, "ro_url": self.db.ro_url, "usrloc_db_mode": self.usrloc_db_mode},
            "runtime": {"dir": str(self.workdir / "run"), "log_level": 2},
            "media": self.media or {"enabled": False},
            "security": {"flood_requests": FLOOD_REQUESTS},
            # the Python Kamailio counts its entries into Python (one KSR call each, inside its
            # CPU figures); native.cfg has no such counter and ignores it
            "metrics": {"count_python_entries": self.count_entries},
        }
        if self.sbc_gateway_port:
            gw = self.sbc_gateway_port
            tables.update({
                # no OPTIONS probing: every gateway stays active, the load is the calls alone
                "sbc": {"enabled": True, "probing_interval": 0},
                "sbc.public": {"listen": [f"udp:{SBC_PUBLIC}:{self.port}"], "networks": ["127.0.1.0/24"],
                               "gateways": [f"sip:{PUBLIC_GATEWAY}:{gw}"]},
                "sbc.private": {"listen": [f"udp:{SBC_PRIVATE}:{self.port}"], "networks": ["127.0.2.0/24"],
                                "gateways": [f"sip:{a}:{gw}" for a in PRIVATE_GATEWAYS]},
            })
        for table, items in self.extra.items():
            tables.setdefault(table, {}).update(items)
        file.write_text(toml_dump(tables))
        self.settings = load_settings(file)
        return self.settings

    def start(self, timeout: float = 90) -> Daemon:
        settings = self.write_settings()
        cfg = kamailio.prepare(settings, self.workdir, self.cfg)
        if self.label == "native":
            native_settings.write(settings, cfg.parent)
        kamailio.require_valid_config(cfg)
        log = self.workdir / "kamailio.log"
        log.unlink(missing_ok=True)
        argv = kamailio.command(cfg, settings.pid_file, self.memory_manager) + ["-m", str(SHM_MB)]
        if self.wrap:
            at = argv.index("kamailio")
            argv[at:at] = list(self.wrap)
        if self.pinned:
            argv = ["taskset", "-c", self.cpus, *argv]
        # include_file looks in the working directory first
        self.daemon = daemon = Daemon(f"kamailio-{self.label}", argv, log, cwd=cfg.parent)
        wait_for(lambda: sip_options_ok("127.0.0.1", self.port), timeout,
                 f"Kamailio ({self.label}) to answer OPTIONS", self.daemon, interval=0.2)
        self.log_offset = 0
        # usrloc preloads its contacts in a child after the first answer: let it finish
        self.wait_idle(timeout)
        return daemon

    def wait_idle(self, timeout: float = 60, window: float = 0.5, busy: float | None = None) -> None:
        """Return once Kamailio used less than `busy` CPU seconds over `window` seconds."""
        busy = self.idle_busy * window / 0.5 if busy is None else busy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < busy:
                return
        raise StartError(f"Kamailio ({self.label}) still busy after {timeout:.0f}s")

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def lost(self) -> str:
        """'' while it runs and answers; else what happened (it exited, banned the load's
        source, or stopped answering): the runs after it would all fail."""
        if self.daemon is None or not self.daemon.alive():
            return f"exited (status {self.daemon.proc.returncode if self.daemon else '?'})"
        log = (self.workdir / "kamailio.log").read_text(errors="replace")
        if f"kemi: banned {CALLER_IP} " in log:          # both routings log a ban alike
            return f"banned the load's source {CALLER_IP} (its log says why)"
        # after an overloaded run it may still be working off a backlog: a few tries
        if any(sip_options_ok("127.0.0.1", self.port, timeout=1.0) for _ in range(LOST_PROBES)):
            return ""
        return f"stopped answering OPTIONS ({LOST_PROBES} tries, 1 s each)"

    def keep_log(self, name: str) -> Path:
        """A copy of its log (a restart starts a new one)."""
        kept = self.workdir / f"kamailio-{name}.log"
        kept.write_bytes((self.workdir / "kamailio.log").read_bytes())
        return kept

    # --- measurements --------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process of this Kamailio: its process group is the main process's PID."""
        if not self.daemon:
            return []
        return [pid for pid, stat in _all_stats() if stat[2] == self.daemon.pid]

    def cpu_seconds(self) -> float:
        """user+system CPU of all Kamailio processes so far."""
        total = 0
        for _pid, stat in _all_stats():
            if self.daemon and stat[2] == self.daemon.pid:
                total += stat[11] + stat[12]        # utime, stime (fields 14, 15)
        return total / CLK_TCK

    def kamcmd(self, *args: str) -> str:
        if self.settings is None:
            raise StartError(f"kamcmd {' '.join(args)}: the {self.label} Kamailio was never started")
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=15)
        if done.returncode != 0:
            raise StartError(f"kamcmd {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def python_entries(self) -> dict[str, int]:
        """callback -> entries into Python so far (Kamailio statistics kemi_entries_*; {} for native)."""
        return {name: int(n) for name, n in ENTRY_STAT_LINE.findall(self.kamcmd("stats.get_statistics", "all"))}

    def latency_logging(self, on: bool) -> None:
        """Kamailio logs each route's execution time (core latency_cfg_log) while on."""
        self.kamcmd("cfg.seti", "core", "latency_limit_cfg", "0")
        self.kamcmd("cfg.seti", "core", "latency_cfg_log", str(LATENCY_LOG_ON if on else LATENCY_LOG_OFF))

    def mark_log(self) -> None:
        self.log_offset = (self.workdir / "kamailio.log").stat().st_size

    def latency_samples(self) -> list[tuple[str, str, int]]:
        """(request|reply, method, usec) for every route run logged since mark_log()."""
        with open(self.workdir / "kamailio.log", "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode(errors="replace")
        return [(m.group(4), m.group(3), int(m.group(5))) for m in LATENCY_LINE.finditer(text)]


def rtpengine_daemon(ng_port: int, port_min: int, port_max: int) -> RtpengineDaemon:
    """One rtpengine for every media scenario: a "default" interface for plain calls and one
    per SBC side. Deleted sessions go at once (delete_delay 0): ports are reused at load."""
    return RtpengineDaemon(listen_ng=f"127.0.0.1:{ng_port}", port_min=port_min, port_max=port_max,
                           interfaces=(MediaInterface("default", RTPENGINE_ADDRESS),
                                       MediaInterface("public", SBC_PUBLIC),
                                       MediaInterface("private", SBC_PRIVATE)),
                           delete_delay=0, log_level=5)


def media_table(d: RtpengineDaemon) -> dict:
    """The [media] settings that point Kamailio at rtpengine `d` (the bench starts it)."""
    return {"enabled": True, "rtpengine": {
        "start": False, "listen_ng": d.listen_ng, "port_min": d.port_min, "port_max": d.port_max,
        "interfaces": [{"name": i.name, "address": i.address} for i in d.interfaces]}}


def start_rtpengine(d: RtpengineDaemon, workdir: Path, cpus: str) -> Daemon:
    daemon = rtpengine_stack.start(d, workdir)
    os.sched_setaffinity(daemon.pid, {int(c) for c in cpus.split(",")})
    return daemon


def _all_stats():
    """(pid, fields after the command name) for every process; fields[2] is the pgrp."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        # rest[0] = state (field 3); pgrp is field 5 -> rest[2]; utime 14 -> rest[11]; stime 15 -> rest[12]
        yield int(name), [rest[0], rest[1], int(rest[2]), *rest[3:11], int(rest[11]), int(rest[12])]


def wait_until(check, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
