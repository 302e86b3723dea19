"""A MariaDB Galera cluster (Debian's galera-4 provider), started and stopped by PID.

    nodes = [GaleraNode(f"g{i}", address, workdir, cluster=addresses, spawn=...) for ...]
    start_cluster(nodes)          # g1 bootstraps (--wsrep-new-cluster), the others join (SST)
    nodes[0].sql("SHOW STATUS LIKE 'wsrep_cluster_size'")

Each node has its own datadir, unix socket (root's way in: reachable from any network
namespace, it is a file) and TCP address; `spawn` runs a node's mariadbd somewhere else (the
tests and `make cluster` start each in its own network namespace). Small buffers: three
nodes fit on a small machine beside three Kamailios. State transfer to a joiner is rsync.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from kemi_tools.stack import mariadb
from kemi_tools.stack.process import Daemon, StartError, wait_for

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
CLUSTER_NAME = "kemi"


@dataclass(frozen=True)
class GaleraPorts:
    sql: int = 3306          # clients (Kamailio, kamctl, the Python side)
    group: int = 4567        # group communication between the nodes
    ist: int = 4568          # incremental state transfer
    sst: int = 4444          # full state transfer (rsync)


def _default_spawn(argv: list[str], log: Path, name: str) -> Daemon:
    return Daemon(name, argv, log)


class GaleraNode:
    def __init__(self, name: str, address: str, workdir: Path, cluster: list[str],
                 ports: GaleraPorts = GaleraPorts(),
                 spawn: Callable[[list[str], Path, str], Daemon] = _default_spawn):
        self.name, self.address, self.cluster, self.ports, self._spawn = name, address, cluster, ports, spawn
        # mariadbd will not run as root and needs every folder up to its datadir readable by
        # the mysql user: a world-traversable folder of its own (under /tmp unless `workdir`
        # is traversable all the way down)
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"kemi-galera-{name}-", dir=workdir))
        self.dir.chmod(0o755)
        self.datadir, self.socket = self.dir / "data", str(self.dir / "mysqld.sock")
        self.daemon: Daemon | None = None
        self.starts = 0

    def install(self, template: Path | None = None) -> GaleraNode:
        """A fresh datadir (a copy of `template`, an installed one, when given: faster)."""
        if template is not None:
            shutil.copytree(template, self.datadir, symlinks=True)
        else:
            self.datadir.mkdir()
            shutil.chown(self.datadir, "mysql", "mysql")
            done = subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={self.datadir}",
                                   "--auth-root-authentication-method=socket", "--skip-test-db"],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise StartError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")
        for path in [self.dir, *self.datadir.rglob("*"), self.datadir]:
            shutil.chown(path, "mysql", "mysql")
        return self

    def argv(self, bootstrap: bool) -> list[str]:
        p, a = self.ports, self.address
        members = ",".join(f"{m}:{p.group}" for m in self.cluster)
        options = ";".join([f"gmcast.listen_addr=tcp://{a}:{p.group}", f"ist.recv_addr={a}:{p.ist}",
                            "gcache.size=32M",
                            # a node that vanished is evicted after ~4 s (defaults 5 / 15 s)
                            "evs.keepalive_period=PT0.5S", "evs.suspect_timeout=PT2S", "evs.inactive_timeout=PT4S"])
        argv = ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--port={p.sql}", f"--bind-address={a}",
                f"--pid-file={self.dir / 'mysqld.pid'}", "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M", "--max-connections=300", "--skip-name-resolve",
                "--binlog-format=ROW", "--default-storage-engine=InnoDB", "--innodb-autoinc-lock-mode=2",
                "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}", f"--wsrep-cluster-name={CLUSTER_NAME}",
                f"--wsrep-cluster-address=gcomm://{members}", f"--wsrep-node-address={a}:{p.group}",
                f"--wsrep-node-name={self.name}", "--wsrep-sst-method=rsync",
                f"--wsrep-sst-receive-address={a}:{p.sst}", f"--wsrep-provider-options={options}",
                "--wsrep-slave-threads=2"]
        if bootstrap:
            argv.append("--wsrep-new-cluster")
        return argv

    def start(self, bootstrap: bool = False, wait: bool = True, timeout: float = 120) -> GaleraNode:
        self.starts += 1
        self.daemon = self._spawn(self.argv(bootstrap), self.dir / f"mariadbd-{self.starts}.log",
                                  f"mariadbd-{self.name}")
        if wait:
            self.wait_synced(timeout)
        return self

    def wait_synced(self, timeout: float = 120) -> None:
        wait_for(self.synced, timeout, f"Galera node {self.name} to be Synced", self.daemon, interval=0.3)

    def synced(self) -> bool:
        try:
            return self.status("wsrep_local_state_comment") == "Synced" and self.status("wsrep_ready") == "ON"
        except (StartError, OSError, subprocess.TimeoutExpired):
            return False

    def status(self, name: str) -> str:
        out = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}';").split("\t")
        return out[1].strip() if len(out) > 1 else ""

    def sql(self, text: str, database: str | None = None) -> str:
        return mariadb.root_sql(text, database, socket=self.socket)

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop(timeout=60)
            self.daemon = None

    def kill(self) -> None:
        """SIGKILL to the node's process group: it vanishes without a word to the others (its
        children too: one left over from a state transfer would keep the SQL port open and
        unanswered, so clients would wait for a timeout instead of being refused)."""
        if self.daemon and self.daemon.alive():
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.proc.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_cluster(nodes: list[GaleraNode], timeout: float = 180) -> None:
    """The first node bootstraps a new cluster, the others join it one at a time (each gets
    a full state transfer); returns when all are Synced in one cluster of len(nodes)."""
    first, *others = nodes
    first.install()
    for node in others:
        node.install(template=first.datadir)      # a copy before first starts: no second install run
    first.start(bootstrap=True, timeout=timeout)
    for node in others:
        node.start(timeout=timeout)
    wait_for(lambda: first.status("wsrep_cluster_size") == str(len(nodes)), timeout,
             f"a Galera cluster of {len(nodes)}", first.daemon, interval=0.3)
