"""MariaDB (a test database of its own) and Kamailio instances with per-test settings."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT, load_settings, toml_dump
from kemi_tools.stack import kamailio, mariadb
from kemi_tools.stack.process import Daemon

# KEMI_TEST_SLOT=N gives a test run its own database and port range, so several runs
# (worktrees, CI and a developer) can share one machine and one MariaDB.
SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
PORT_BASE = 10000 + 1000 * SLOT          # Kamailio: BASE..BASE+49, SIPp: BASE+100..BASE+999
TEST_DB = f"kemi_test{SLOT or ''}"
TEST_DB_URL = f"mysql://kemi_test:kemi_test_pw@localhost/{TEST_DB}"
TEST_DB_RO_URL = f"mysql://kemi_test_ro:kemi_test_ro@localhost/{TEST_DB}"
DOMAIN = "127.0.0.1"
PASSWORD = "123456"

_sipp_ports = itertools.cycle(range(PORT_BASE + 100, PORT_BASE + 1000))
_kamailio_ports = itertools.cycle(range(PORT_BASE, PORT_BASE + 50))


def free_port() -> int:
    """A UDP port for a SIPp endpoint; tests never reuse one within a session."""
    return next(_sipp_ports)


def kamailio_port() -> int:
    return next(_kamailio_ports)


def merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for table, items in (extra or {}).items():
        out.setdefault(table, {}).update(items)
    return out


class _SharedMariaDB:
    """Which test sessions use the MariaDB the tests started (one file per session PID)."""

    DIR = Path("/run/kemi-test-mariadb")
    STARTED = DIR / "started-pid"

    def join(self) -> None:
        self.DIR.mkdir(parents=True, exist_ok=True)
        (self.DIR / f"user-{os.getpid()}").touch()

    def mark_started(self, pid: int) -> None:
        self.STARTED.write_text(str(pid))

    def _live_users(self) -> list[int]:
        users = []
        for entry in self.DIR.glob("user-*"):
            pid = int(entry.name.split("-", 1)[1])
            if pid != os.getpid() and Path(f"/proc/{pid}").exists():
                users.append(pid)
            elif pid != os.getpid():
                entry.unlink(missing_ok=True)       # a session that died without leaving
        return users

    def leave_last(self) -> bool:
        """Leave; True when no other session still uses the database."""
        (self.DIR / f"user-{os.getpid()}").unlink(missing_ok=True)
        return not self._live_users()

    def stop_started(self) -> None:
        """Stop a MariaDB another (finished) session started and left running for us."""
        try:
            pid = int(self.STARTED.read_text())
        except (OSError, ValueError):
            return
        self.STARTED.unlink(missing_ok=True)
        if Path(f"/proc/{pid}/cmdline").exists() and b"mariadbd" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, 15)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)


_mariadb_users = _SharedMariaDB()


class TestDatabase:
    """The kemi_test database, recreated once per test session from Kamailio's schema."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.daemon: Daemon | None = None
        self.home = workdir / "kamctl-home"     # kamctl reads $HOME/.kamctlrc

    def start(self) -> None:
        _mariadb_users.join()
        self.daemon = mariadb.start(self.workdir)
        if self.daemon:
            _mariadb_users.mark_started(self.daemon.pid)
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{TEST_DB}`;")
        settings_file = self.workdir / "db-settings.toml"
        settings_file.write_text(toml_dump({"database": {"url": TEST_DB_URL, "ro_url": TEST_DB_RO_URL},
                                            "sip": {"domain": DOMAIN}}))
        settings = load_settings(settings_file)
        mariadb.provision(settings)
        self.home.mkdir(parents=True, exist_ok=True)
        mariadb.write_kamctlrc(settings, self.home)

    def stop(self) -> None:
        # Several test sessions (worktrees, slots) share one MariaDB: whoever started it, the
        # last session to leave stops it, so no session loses its database mid-run.
        if _mariadb_users.leave_last():
            if self.daemon:
                self.daemon.stop()
                _mariadb_users.STARTED.unlink(missing_ok=True)
            else:
                _mariadb_users.stop_started()

    def kamctl(self, *args: str) -> str:
        env = dict(os.environ, HOME=str(self.home))
        done = subprocess.run(["kamctl", *args], env=env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"kamctl {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def add_subscriber(self, user: str, password: str = PASSWORD) -> None:
        """`kamctl add` as a user would. Each test owns its extension numbers: adding one twice
        in a session fails, since the earlier test's registrations would still be in the
        location table.

        kamctl also says "already exists" when its read-only existence query fails (seen once
        under load), so that answer is checked against the table and the add retried."""
        for _attempt in range(3):
            env = dict(os.environ, HOME=str(self.home))
            done = subprocess.run(["kamctl", "add", user, password], env=env, capture_output=True,
                                  text=True, timeout=30)
            if done.returncode == 0:
                return
            if "already exists" not in done.stdout or self.query(
                    f"SELECT 1 FROM subscriber WHERE username = '{user}';"):
                raise AssertionError(f"kamctl add {user} failed: {done.stdout}{done.stderr}")
            time.sleep(0.5)
        raise AssertionError(f"kamctl add {user} kept failing: {done.stdout}{done.stderr}")

    def query(self, sql: str) -> list[list[str]]:
        out = mariadb.root_sql(sql, TEST_DB)
        return [line.split("\t") for line in out.splitlines() if line]

    def locations(self, user: str) -> list[str]:
        return [row[0] for row in self.query(
            f"SELECT contact FROM location WHERE username = '{user}' AND expires > NOW();")]


class KamailioInstance:
    """Kamailio with kamailio.cfg, the kemi package and settings of the test's choosing.

    `cfg` may name another top-level cfg using the same settings and kamailio-common.cfg
    (bench/native.cfg, the native twin of the Python routing).
    """

    def __init__(self, workdir: Path, port: int, overrides: dict | None = None, host: str = "127.0.0.1",
                 cfg: Path = kamailio.KAMAILIO_CFG, kemi_root: Path = PROJECT_ROOT):
        self.workdir, self.port, self.host, self.cfg = workdir, port, host, cfg
        self.kemi_root = kemi_root          # where the kemi package Kamailio loads lives
        self.address = (host, port)
        self.daemon: Daemon | None = None
        base = {
            "sip": {"domain": DOMAIN, "listen": [f"udp:{host}:{port}"], "children": 2},
            "database": {"url": TEST_DB_URL, "ro_url": TEST_DB_RO_URL},
            "runtime": {"dir": str(workdir / "run"), "log_level": 2},
            # no rtpengine unless the test starts one (tests/harness/media.py) and says so
            "media": {"enabled": False},
        }
        self.tables = merge(base, overrides or {})
        self.settings_file = workdir / "settings.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(toml_dump(self.tables))
        self.settings = load_settings(self.settings_file)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "KamailioInstance":
        self.daemon = kamailio.start(self.settings, self.workdir, self.cfg, kemi_root=self.kemi_root)
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def log(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def kamcmd(self, *args: str) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=15)
        return done.stdout + done.stderr

    def check_config(self) -> subprocess.CompletedProcess:
        return kamailio.check_config(kamailio.prepare(self.settings, self.workdir, self.cfg, self.kemi_root))


def project_file(*parts: str) -> Path:
    return PROJECT_ROOT.joinpath(*parts)


def have_tools() -> bool:
    return all(shutil.which(t) for t in ("kamailio", "sipp", "mariadbd", "kamctl")) and os.geteuid() == 0
