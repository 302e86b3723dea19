"""The cluster test network: Kamailio nodes, phones (and later Galera, rtpengines) on one LAN.

    kemi<slot>-<pid>-lan     a bridge; every other namespace has one veth into it
    kemi<slot>-<pid>-k1..k3  a Kamailio node each: its own address, the floating address
                             (listened on without holding it: ip_nonlocal_bind), its DMQ socket
    kemi<slot>-<pid>-phones  the phones' addresses (Callee / Caller sockets of this process)

Addresses are 192.0.2.(40 * slot + i): a slot's hosts never overlap another slot's, and
everything is in a documentation range. Ports come from the slot's range too. MariaDB is
the test session's (unix socket: a filesystem path, reachable from any namespace) unless a
test brings its own (Galera).
"""
from __future__ import annotations

import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from harness import stack
from harness.netns import Namespace, Topology
from harness.phone import Callee, Caller
from harness.sbc import probe
from kemi.settings import load_settings
from kemi.settings import MediaInterface, RtpengineDaemon
from kemi_tools.stack import kamailio, mariadb
from kemi_tools.stack import keepalived
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.ng import NgClient, NgError
from kemi_tools.stack.galera import GaleraNode, GaleraPorts, start_cluster
from kemi_tools.stack.process import Daemon, wait_for

SLOT = stack.SLOT
NETWORK = "192.0.2"


def host(i: int) -> str:
    """The slot's i-th test address (1..39): slots 0 to 5 only (192.0.2.0/24 holds six)."""
    assert SLOT <= 5, f"KEMI_TEST_SLOT={SLOT}: the cluster tests run in slots 0 to 5"
    assert 1 <= i < 40
    return f"{NETWORK}.{40 * SLOT + i}"


NODES = (host(1), host(2), host(3))
FLOATING = host(10)
GALERA = (host(11), host(12), host(13))
RTPENGINES = (host(21), host(22))
NG_PORT = stack.PORT_BASE + 90
PHONE_ADDRESSES = tuple(host(i) for i in range(31, 38))
ATTACKERS = (host(38), host(39))
SIP_PORT = stack.PORT_BASE + 70
DMQ_PORT = stack.PORT_BASE + 71
PHONE_PORT = stack.PORT_BASE + 170       # callees listen on PHONE_PORT + n
DOMAIN = FLOATING                        # the subscribers' domain: every node's alias or socket
SECRET = "kemi-cluster-test-secret-0123456789"
GALERA_PORTS = GaleraPorts(sql=stack.PORT_BASE + 80, group=stack.PORT_BASE + 81, ist=stack.PORT_BASE + 82,
                           sst=stack.PORT_BASE + 83)
GALERA_DB = f"kemi_cluster{SLOT}"
GALERA_USER, GALERA_PASSWORD = "kemi_cluster", "kemi_cluster_pw"
GALERA_RO_USER, GALERA_RO_PASSWORD = "kemi_cluster_ro", "kemi_cluster_ro_pw"


def galera_url(address: str, ro: bool = False) -> str:
    user, password = (GALERA_RO_USER, GALERA_RO_PASSWORD) if ro else (GALERA_USER, GALERA_PASSWORD)
    return f"mysql://{user}:{password}@{address}:{GALERA_PORTS.sql}/{GALERA_DB}"


def galera_database(index: int) -> dict:
    """[database] of node `index` on the Galera cluster: its own Galera node first, then the others."""
    others = [f"{a}:{GALERA_PORTS.sql}" for i, a in enumerate(GALERA) if i != index]
    return {"url": galera_url(GALERA[index]), "ro_url": galera_url(GALERA[index], ro=True),
            "failover": others, "cache_ttl": 1}


@contextmanager
def closed_after(network: "ClusterNetwork", figures: dict, label: str):
    """A test module's cluster: everything it started goes when the module ends (problems
    stopping it fail the module); the figures its tests measured are printed."""
    try:
        yield network
    finally:
        problems = network.close()
        assert not problems, problems
        if figures:
            print(f"\n{label} figures:", figures)


def subscribers(db, prefix: str, count: int) -> list[str]:
    """`kamctl add` for `count` extensions PREFIX00.. (each module its own prefix)."""
    width = 4 - len(prefix)
    made = [f"{prefix}{n:0{width}d}" for n in range(count)]
    for user in made:
        db.add_subscriber(user)
    return made


class ClusterNetwork:
    """Namespaces and the LAN; nodes and phones are started by the tests."""

    def __init__(self, workdir: Path, nodes: int = 3):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.topology = Topology()
        self.nodes: list[ClusterNode] = []
        self.galera: list[GaleraNode] = []
        self.rtpengines: list[ClusterRtpengine] = []
        self.callees: list[Callee] = []
        self.callers: list[Caller] = []
        self._port = PHONE_PORT
        try:
            self._build(nodes)
        except Exception:
            self.topology.teardown()
            raise

    def _build(self, count: int) -> None:
        t = self.topology
        self.lan = t.namespace("lan")
        t.bridge(self.lan)
        self.node_ns: list[Namespace] = []
        for i in range(count):
            ns = t.namespace(f"k{i + 1}")
            t.plug(self.lan, f"k{i + 1}", ns, "eth0", [f"{NODES[i]}/24"])
            # every node listens on the floating address, which only one holds at a time
            ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")
            self.node_ns.append(ns)
        self.phones = t.namespace("phones")
        t.plug(self.lan, "phones", self.phones, "eth0", [f"{a}/24" for a in PHONE_ADDRESSES + ATTACKERS])

    def namespace(self, role: str, address: str) -> Namespace:
        """One more host on the LAN (a Galera node, an rtpengine, ...)."""
        ns = self.topology.namespace(role)
        self.topology.plug(self.lan, role, ns, "eth0", [f"{address}/24"])
        return ns

    # --- Galera -----------------------------------------------------------------------------

    def start_galera(self) -> list[GaleraNode]:
        """Three Galera nodes, each in its own namespace; the kamailio database provisioned
        (users may connect from the LAN)."""
        for i, address in enumerate(GALERA):
            ns = self.namespace(f"g{i + 1}", address)
            spawn = lambda argv, log, name, ns=ns: ns.spawn(argv, log, name=name)
            self.galera.append(GaleraNode(f"g{i + 1}", address, Path("/tmp"), list(GALERA),
                                          GALERA_PORTS, spawn=spawn))
        start_cluster(self.galera)
        settings = load_settings(self._db_settings_file(0))
        mariadb.provision(settings, socket=self.galera[0].socket, hosts=("%",))
        return self.galera

    def _db_settings_file(self, index: int) -> Path:
        path = self.workdir / f"db-{index + 1}.toml"
        path.write_text(stack.toml_dump({"database": {k: v for k, v in galera_database(index).items()
                                                      if k in ("url", "ro_url")},
                                         "sip": {"domain": DOMAIN}}))
        return path

    def kamctl(self, index: int, *args: str) -> subprocess.CompletedProcess:
        """kamctl run on node `index` (in its namespace), against that node's Galera server."""
        home = self.workdir / f"kamctl-{index + 1}"
        home.mkdir(exist_ok=True)
        mariadb.write_kamctlrc(load_settings(self._db_settings_file(index)), home)
        import os
        return self.node_ns[index].run(["kamctl", *args], check=False, timeout=30,
                                       env=dict(os.environ, HOME=str(home)))

    # --- rtpengines ------------------------------------------------------------------------

    def start_rtpengines(self) -> list["ClusterRtpengine"]:
        for i, address in enumerate(RTPENGINES):
            ns = self.namespace(f"r{i + 1}", address)
            self.rtpengines.append(ClusterRtpengine(ns, address, self.workdir / f"r{i + 1}").start())
        return self.rtpengines

    def media_tables(self, engines: list[int] | None = None) -> dict:
        """[media]: the nodes use these rtpengines (default: all), weight 1 each, none started."""
        chosen = [self.rtpengines[i] for i in (engines if engines is not None else range(len(self.rtpengines)))]
        return {"enabled": True, "instances": [{"ng": r.socket, "weight": 1} for r in chosen],
                "rtpengine": {"start": False}, "disable_seconds": 30}

    # --- Kamailio nodes -------------------------------------------------------------------

    def node_tables(self, index: int, overrides: dict | None = None, node_count: int | None = None) -> dict:
        count = node_count or len(self.node_ns)
        tables = {
            "sip": {"domain": DOMAIN, "listen": [f"udp:{NODES[index]}:{SIP_PORT}"], "children": 2},
            "database": {"url": stack.TEST_DB_URL, "ro_url": stack.TEST_DB_RO_URL, "cache_ttl": 2},
            "registrar": {"min_expires": 1},
            "runtime": {"dir": str(self.workdir / f"k{index + 1}" / "run"), "log_level": 2, "shm_mb": 256},
            "media": {"enabled": False},
            # the phones' few addresses send many requests: no flood bans for them (the ban
            # tests use scanner User-Agents and password guessing instead)
            "security": {"flood_requests": 5000},
            "cluster": {"enabled": True, "nodes": list(NODES[:count]), "node": index + 1,
                        "dmq_port": DMQ_PORT, "secret": SECRET, "floating_address": FLOATING},
        }
        return stack.merge(tables, overrides or {})

    def start_node(self, index: int, overrides: dict | None = None, wait: bool = True,
                   pid_namespace: bool = False, cfg_edit: Callable[[Path], None] | None = None) -> "ClusterNode":
        node = ClusterNode(self, index, self.node_tables(index, overrides), pid_namespace=pid_namespace,
                           cfg_edit=cfg_edit)
        if index < len(self.nodes):
            self.nodes[index].stop()
            self.nodes[index] = node
        else:
            self.nodes.append(node)
        node.start(wait=wait)
        return node

    def start_nodes(self, overrides: dict | None = None) -> list["ClusterNode"]:
        for i in range(len(self.node_ns)):
            self.start_node(i, overrides, wait=False)
        for node in self.nodes:
            node.wait_ready()
        return self.nodes

    def start_keepalived(self, index: int) -> Daemon:
        node = self.nodes[index]
        spawn = lambda argv, log, name: node.ns.spawn(argv, log, name=name)
        node.keepalived = keepalived.start(node.settings, node.workdir / "keepalived", spawn=spawn)
        return node.keepalived

    def holder(self) -> int | None:
        """The index of the node whose NIC (up) has the floating address now (None: nobody's).
        A dead node's NIC is down and keeps it: unreachable, so not counted."""
        holders = [i for i, ns in enumerate(self.node_ns)
                   if f" {FLOATING}/" in ns.run(["ip", "-4", "addr", "show", "dev", "eth0", "up"], check=False).stdout]
        assert len(holders) <= 1, f"the floating address is on several nodes: {holders}"
        return holders[0] if holders else None

    def wait_joined(self, timeout: float = 30) -> None:
        """Every running node sees every other running one as an active DMQ node."""
        running = [n for n in self.nodes if n.alive()]
        for node in running:
            wait_for(lambda node=node: len(node.dmq_active()) >= len(running), timeout,
                     f"k{node.index + 1} to see {len(running)} active DMQ nodes", node.daemon, interval=0.3)

    # --- phones ---------------------------------------------------------------------------

    def callee(self, address: str = PHONE_ADDRESSES[0], answer: int = 200) -> Callee:
        self._port += 4
        c = Callee(self.phones.socket(), address, self._port, answer=answer)
        self.callees.append(c)
        return c

    def caller(self, user: str, server: tuple[str, int], address: str = PHONE_ADDRESSES[-1],
               password: str = stack.PASSWORD) -> Caller:
        c = Caller(self.phones.socket(), address, server, user, password, DOMAIN)
        self.callers.append(c)
        return c

    # --- teardown -------------------------------------------------------------------------

    def close(self) -> list[str]:
        for r in self.rtpengines:
            r.stop()
        for g in self.galera:
            g.stop()
        for c in self.callees:
            c.stop()
        for c in self.callers:
            c.close()
        for node in self.nodes:
            node.stop()
        problems = self.topology.teardown()
        for g in self.galera:
            g.remove()
        return problems


class ClusterNode:
    """One Kamailio node (our kamailio.cfg, its own settings) in its namespace."""

    def __init__(self, net: ClusterNetwork, index: int, tables: dict, pid_namespace: bool = False,
                 cfg_edit: Callable[[Path], None] | None = None):
        self.net, self.index = net, index
        # a control's change to the rendered configuration (called with its folder before start)
        self.cfg_edit = cfg_edit
        # its own PID namespace: its processes get the PIDs another node's have (as in
        # containers), which is what makes rtpengine ng cookies collide without server_id
        self.pid_namespace = pid_namespace
        self.ns = net.node_ns[index]
        self.address = NODES[index]
        self.sip = (self.address, SIP_PORT)
        self.workdir = net.workdir / f"k{index + 1}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tables = tables
        self.settings_file = self.workdir / "settings.toml"
        self.settings_file.write_text(stack.toml_dump(tables))
        self.settings = load_settings(self.settings_file)
        self.daemon: Daemon | None = None
        self.keepalived: Daemon | None = None
        self.started_at = 0.0

    def start(self, wait: bool = True) -> "ClusterNode":
        cfg = kamailio.prepare(self.settings, self.workdir)
        if self.cfg_edit:
            self.cfg_edit(cfg.parent)
        kamailio.require_valid_config(cfg)
        log = self.workdir / "kamailio.log"
        self.log_offset = log.stat().st_size if log.exists() else 0
        self.started_at = time.monotonic()
        argv = kamailio.command(cfg, self.settings.pid_file)
        if self.pid_namespace:
            argv = ["unshare", "--pid", "--fork", "--kill-child", *argv]
        self.daemon = self.ns.spawn(argv, log,
                                    name=f"kamailio-k{self.index + 1}", cwd=cfg.parent)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 40) -> None:
        wait_for(lambda: probe(self.net.phones, PHONE_ADDRESSES[0], self.address, SIP_PORT), timeout,
                 f"node k{self.index + 1} to answer OPTIONS", self.daemon, interval=0.2)

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing is said to the peers."""
        if self.daemon and self.daemon.alive():
            import os, signal
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.proc.wait(10)

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def lose_host(self) -> float:
        """The node's host dies: its LAN link goes down, Kamailio and keepalived are SIGKILLed
        (nothing is said to anybody; the floating address stays on the dead NIC). Returns the
        time (monotonic) the link was down."""
        import os, signal
        self.ns.run(["ip", "link", "set", "eth0", "down"])
        down = time.monotonic()
        for d in (self.keepalived, self.daemon):
            if d and d.alive():
                os.killpg(d.pid, signal.SIGKILL)
                d.proc.wait(10)
        return down

    def log(self) -> str:
        text = (self.workdir / "kamailio.log").read_text(errors="replace")
        return text[getattr(self, "log_offset", 0):]

    def kamcmd(self, *args: str, timeout: float = 15) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=timeout)
        return done.stdout + done.stderr

    def rpc(self, requests: list[tuple[str, list]], timeout: float = 10) -> list[dict]:
        """JSON-RPC commands through Kamailio's FIFO, one after the other (thousands per second,
        where one kamcmd each costs a process start): the replies, parsed. The reply FIFO is a
        bare name in /tmp (jsonrpcs refuses a path)."""
        import json, os, select, uuid
        name = f"kemi-rpc-{SLOT}-{uuid.uuid4().hex[:8]}"
        path = os.path.join("/tmp", name)
        os.mkfifo(path)
        out = []
        try:
            for i, (method, params) in enumerate(requests):
                reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)     # before Kamailio opens it
                try:
                    with open(self.settings.rpc_fifo, "w") as fifo:
                        fifo.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                                               "id": i, "reply_name": name}) + "\n")
                    data, deadline = b"", time.monotonic() + timeout
                    while True:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise AssertionError(f"no JSON-RPC reply to {method} within {timeout}s")
                        if not select.select([reader], [], [], left)[0]:
                            continue
                        try:
                            chunk = os.read(reader, 65536)
                        except BlockingIOError:
                            chunk = b""
                        data += chunk
                        try:
                            out.append(json.loads(data))
                            break
                        except ValueError:
                            if not chunk:
                                time.sleep(0.001)
                finally:
                    os.close(reader)
        finally:
            os.unlink(path)
        return out

    def add_contacts(self, count: int, first: int = 100000, address: str = PHONE_ADDRESSES[-2]) -> None:
        """`count` contacts (users first.., one each) straight into usrloc (ul.add): usrloc
        runs its callbacks as for a REGISTER, so dmq_usrloc replicates each."""
        replies = self.rpc([("ul.add", ["location", str(first + n), f"sip:{first + n}@{address}:5060",
                                        3600, 1.0, ".", 0, 0, 0]) for n in range(count)])
        failed = [r for r in replies if "error" in r]
        assert not failed, failed[:3]

    def dmq_active(self) -> list[str]:
        out = self.kamcmd("dmq.list_nodes")
        hosts = re.findall(r"host:\s*(\S+)", out)
        states = re.findall(r"status:\s*(\S+)", out)
        return [h for h, s in zip(hosts, states) if s == "active"]

    def contacts(self, aor: str) -> list[str]:
        out = self.kamcmd("ul.lookup", "location", f"s:{aor}")
        return re.findall(r"Address:\s*(\S+)", out)

    def contact_count(self) -> int:
        reply = self.rpc([("stats.get_statistics", ["usrloc:"])])[0]
        m = re.search(r"location_contacts\s*=\s*(\d+)", " ".join(reply.get("result", [])))
        assert m, f"k{self.index + 1}: no usrloc:location_contacts in {reply}"
        return int(m.group(1))

    def banned(self, address: str) -> bool:
        out = self.kamcmd("htable.get", "ipban", address)
        return "value" in out and "not found" not in out.lower()


class ClusterRtpengine:
    """rtpengine in its own namespace: ng and media on its LAN address."""

    def __init__(self, ns: Namespace, address: str, workdir: Path):
        from harness.media import RTPENGINE_PORT_MAX, RTPENGINE_PORT_MIN
        self.ns, self.address, self.workdir = ns, address, workdir
        self.settings = RtpengineDaemon(listen_ng=f"{address}:{NG_PORT}",
                                        interfaces=(MediaInterface("default", address),),
                                        port_min=RTPENGINE_PORT_MIN, port_max=RTPENGINE_PORT_MAX, delete_delay=0)
        self.daemon: Daemon | None = None
        self.starts = 0

    @property
    def socket(self) -> str:
        return f"udp:{self.address}:{NG_PORT}"

    def start(self) -> "ClusterRtpengine":
        self.starts += 1
        self.daemon = self.ns.spawn(rtpengine_stack.argv(self.settings), self.workdir / f"rtpengine-{self.starts}.log",
                                    name=f"rtpengine-{self.address}")
        wait_for(lambda: self.command("ping").get("result") == "pong", 15, f"rtpengine on {self.address}",
                 self.daemon, interval=0.1)
        return self

    def command(self, name: str, **args) -> dict:
        """An ng command sent from inside the namespace (the ng socket is on the LAN)."""
        client = NgClient((self.address, NG_PORT), timeout=0.5, socket_factory=lambda family: self.ns.socket(family))
        try:
            return client.command(name, **args)
        except NgError:
            return {}

    def calls(self) -> list[str]:
        return list(self.command("list").get("calls", []))

    def kill(self, unplug: bool = True) -> None:
        """The rtpengine host dies: SIGKILL, and (unplug) its LAN link down, so commands to it
        get no answer at all (not even ICMP)."""
        if self.daemon and self.daemon.alive():
            import os, signal
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.proc.wait(10)
        if unplug:
            self.ns.run(["ip", "link", "set", "eth0", "down"])

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None
