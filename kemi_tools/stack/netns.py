"""Network namespaces as hosts: create, wire with veth pairs, run processes, tear down.

The tests build their networks with it (tests/harness/netns.py names them per test slot),
and so does `make cluster` (kemi_tools/cluster.py).

A `Topology` creates every namespace itself, under a name unique to its user
(`<prefix>-<role>`), records it, and at `teardown()` first stops every process it
started (by PID, process group included), then deletes exactly the namespaces it
recorded. Nothing it did not create is touched, so several test runs can share a machine.

    topo = Topology()
    sbc = topo.namespace("sbc")
    pub = topo.namespace("pub")
    topo.link(sbc, "pub0", ["203.0.113.1/24"], pub, "eth0", ["203.0.113.10/24"])
    proc = pub.spawn(["sipp", ...], log=path)      # tracked by PID, stopped at teardown
    pub.run(["ping", "-c1", "203.0.113.1"])
    topo.teardown()

Interface names are chosen by the caller and exist only inside the namespaces (veth pairs
are created directly in their namespaces), so they cannot collide with anybody's links in
the root namespace. Addresses must come from the documentation ranges (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24): `link()` and `add_address()` refuse anything else, so
nothing built here can route traffic to a real network by mistake.
"""
from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import subprocess
import threading
from pathlib import Path

from kemi_tools.stack.process import Daemon

# the only IPv4 networks these hosts may use (RFC 5737)
DOCUMENTATION_NETS = tuple(ipaddress.ip_network(n) for n in
                           ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
IP_TIMEOUT = 15


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def check_documentation_address(cidr: str) -> None:
    """Refuse an address outside the documentation ranges (the tests' network rule)."""
    iface = ipaddress.ip_interface(cidr)
    if not any(iface.ip in net for net in DOCUMENTATION_NETS):
        raise NetnsError(f"{cidr} is not in a documentation range "
                         f"({', '.join(map(str, DOCUMENTATION_NETS))}): tests may not use it")


class Namespace:
    """One network namespace this test run created."""

    def __init__(self, topology: Topology, name: str):
        self.topology, self.name = topology, name

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside this namespace (`ip netns exec` execs it: the PID is argv's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, **kw)
        if check and done.returncode != 0:
            raise NetnsError(f"[{self.name}] {' '.join(argv)} failed ({done.returncode}): "
                             f"{done.stdout}{done.stderr}")
        return done

    def spawn(self, argv: list[str], log: Path, name: str | None = None, env: dict | None = None,
              cwd: Path | None = None) -> Daemon:
        """Start a long-running process in this namespace; the topology stops it by PID."""
        daemon = Daemon(name or Path(argv[0]).name, self.argv(argv), log, env=env, cwd=cwd)
        self.topology.processes.append(daemon)
        return daemon

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        """A process the caller waits for itself; still killed by PID at teardown if alive."""
        proc = subprocess.Popen(self.argv(argv), **kw)
        self.topology.popens.append(proc)
        return proc

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket inside this namespace, for test code running in this process: a helper
        thread enters the namespace (setns), creates it, and leaves; the socket stays there."""
        made: list = []

        def create():
            try:
                with open(f"/run/netns/{self.name}") as ns:
                    if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
                    made.append(socket.socket(family, kind))
            except BaseException as exc:     # handed to the caller below
                made.append(exc)

        worker = threading.Thread(target=create)
        worker.start()
        worker.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    def sysctl(self, key: str, value: str) -> None:
        """A per-namespace sysctl (e.g. net.ipv4.ip_nonlocal_bind)."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def add_address(self, dev: str, cidr: str) -> None:
        check_documentation_address(cidr)
        _ip("-n", self.name, "addr", "add", cidr, "dev", dev)

    def add_route(self, dest: str, via: str) -> None:
        check_documentation_address(dest)
        check_documentation_address(via)
        _ip("-n", self.name, "route", "add", dest, "via", via)


class Topology:
    """Namespaces and veth links created for one test run, removed by `teardown()`."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.namespaces: list[Namespace] = []
        self.processes: list[Daemon] = []
        self.popens: list[subprocess.Popen] = []

    def namespace(self, role: str) -> Namespace:
        name = f"{self.prefix}-{role}"
        _ip("netns", "add", name)
        ns = Namespace(self, name)
        self.namespaces.append(ns)           # recorded before anything else can fail
        _ip("-n", name, "link", "set", "lo", "up")
        return ns

    def link(self, a: Namespace, a_dev: str, a_addrs: list[str],
             b: Namespace, b_dev: str, b_addrs: list[str]) -> None:
        """A veth pair between two namespaces, addressed and up (created inside them)."""
        for cidr in (*a_addrs, *b_addrs):
            check_documentation_address(cidr)
        _ip("-n", a.name, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name)
        for ns, dev, addrs in ((a, a_dev, a_addrs), (b, b_dev, b_addrs)):
            for cidr in addrs:
                ns.add_address(dev, cidr)
            _ip("-n", ns.name, "link", "set", dev, "up")

    def bridge(self, ns: Namespace, name: str = "br0") -> None:
        """A bridge inside `ns`: a LAN the `plug`ged namespaces share."""
        _ip("-n", ns.name, "link", "add", name, "type", "bridge")
        _ip("-n", ns.name, "link", "set", name, "up")

    def plug(self, switch: Namespace, port: str, host: Namespace, dev: str, addrs: list[str],
             bridge: str = "br0") -> None:
        """A veth from `host` (its end `dev`, addressed) into `switch`'s bridge (its end `port`)."""
        for cidr in addrs:
            check_documentation_address(cidr)
        _ip("-n", switch.name, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", host.name)
        _ip("-n", switch.name, "link", "set", port, "master", bridge, "up")
        for cidr in addrs:
            host.add_address(dev, cidr)
        _ip("-n", host.name, "link", "set", dev, "up")

    def teardown(self) -> list[str]:
        """Stop our processes (by PID), then delete our namespaces; returns problems seen."""
        problems = []
        for daemon in reversed(self.processes):
            try:
                daemon.stop()
            except Exception as exc:  # keep tearing down the rest
                problems.append(f"stopping {daemon.name} (pid {daemon.pid}): {exc}")
        for proc in self.popens:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for ns in reversed(self.namespaces):
            try:
                _ip("netns", "del", ns.name)      # its veth ends disappear with it
            except NetnsError as exc:
                problems.append(str(exc))
        self.namespaces.clear()
        return problems

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


def supported() -> bool:
    """Root and a working `ip netns` (the SBC end-to-end tests need both)."""
    if os.geteuid() != 0:
        return False
    try:
        subprocess.run(["ip", "netns", "list"], capture_output=True, check=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return False
    return True
