"""A private MariaDB: own datadir, socket and TCP port, started and stopped (and restarted)
by PID. The shared MariaDB of the machine is never touched. The fault tests stop and restart
it under Kamailio (tests/e2e/test_security_faults.py); `make bench-instructions` runs on one
because other runs stop and start the shared one.

mariadbd will not run as root and needs every folder up to its datadir readable by the
`mysql` user, so it lives in a world-traversable folder of its own under /tmp.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from kemi_tools.stack import mariadb
from kemi_tools.stack.process import Daemon, StartError, wait_for


class OwnMariaDB:
    def __init__(self, port: int, name: str = "kemi-fault"):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.dir.chmod(0o755)
        self.datadir, self.socket = self.dir / "data", str(self.dir / "mysqld.sock")
        self.daemon: Daemon | None = None
        self.starts = 0

    def install(self) -> OwnMariaDB:
        self.datadir.mkdir()
        shutil.chown(self.dir, "mysql", "mysql")
        shutil.chown(self.datadir, "mysql", "mysql")
        done = subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={self.datadir}",
                               "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise StartError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")
        return self

    def start(self, timeout: float = 60) -> OwnMariaDB:
        self.starts += 1
        self.daemon = Daemon("mariadbd", [
            "mariadbd", "--no-defaults", "--user=mysql", f"--datadir={self.datadir}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.dir / 'mysqld.pid'}",
            "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--max-connections=200"],
            self.dir / f"mariadbd-{self.starts}.log")
        wait_for(self.is_up, timeout, f"private MariaDB on port {self.port}", self.daemon, interval=0.2)
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop(timeout=60)
            self.daemon = None

    def is_up(self) -> bool:
        try:
            return self.sql("SELECT 1;").strip() == "1"
        except (StartError, OSError, subprocess.TimeoutExpired):
            return False

    def sql(self, text: str, database: str | None = None) -> str:
        return mariadb.root_sql(text, database, socket=self.socket)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
