"""`make cluster`: a local demo cluster in network namespaces, to try what docs/cluster.md says.

    kemi-demo-lan      a bridge: the LAN every other namespace is plugged into (192.0.2.0/24)
    kemi-demo-g1..g3   a MariaDB Galera cluster (galera-4): 192.0.2.21-23, port 3306
    kemi-demo-r1, r2   two rtpengines (ng on 192.0.2.31-32:2223)
    kemi-demo-k1..k3   three Kamailio nodes with the kemi routing (192.0.2.11-13:5060, DMQ on
                       :5090), each with keepalived holding 192.0.2.10 (the floating address)
                       in turn; each node's database is its own Galera node, then the others
    kemi-demo-phones   192.0.2.100-109, for phones (`ip netns exec kemi-demo-phones ...`)

Everything is in documentation address ranges inside namespaces this command creates, and
it all stops (by PID, namespaces deleted) on Ctrl-C or SIGTERM. Subscribers 2001-2003
(password 123456) are added with kamctl on node 1; a first call through the floating address
(the SIPp kit) shows it works. The settings of each node are written to run/cluster/kN/.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT, MediaInterface, RtpengineDaemon, load_settings, toml_dump
from kemi_tools.stack import galera, kamailio, keepalived, mariadb, rtpengine
from kemi_tools.stack.netns import Topology
from kemi_tools.stack.process import StartError, wait_for

NET = "192.0.2"
FLOATING = f"{NET}.10"
NODES = tuple(f"{NET}.{11 + i}" for i in range(3))
GALERA = tuple(f"{NET}.{21 + i}" for i in range(3))
RTPENGINES = (f"{NET}.31", f"{NET}.32")
PHONES = tuple(f"{NET}.{100 + i}" for i in range(10))
USERS = ("2001", "2002", "2003")
PASSWORD = "123456"
DB_USER, DB_PASSWORD, DB_RO_USER, DB_RO_PASSWORD = "kamailio", "kamailiorw", "kamailioro", "kamailioro"


def db_url(address: str, ro: bool = False) -> str:
    user, password = (DB_RO_USER, DB_RO_PASSWORD) if ro else (DB_USER, DB_PASSWORD)
    return f"mysql://{user}:{password}@{address}:3306/kamailio"


def node_settings(i: int, secret: str, workdir: Path) -> dict:
    return {
        "sip": {"domain": FLOATING, "listen": [f"udp:{NODES[i]}:5060"], "children": 2},
        "database": {"url": db_url(GALERA[i]), "ro_url": db_url(GALERA[i], ro=True),
                     "failover": [f"{g}:3306" for j, g in enumerate(GALERA) if j != i]},
        "runtime": {"dir": str(workdir / "run"), "shm_mb": 128},
        "media": {"enabled": True, "rtpengine": {"start": False},
                  "instances": [{"ng": f"udp:{r}:2223", "weight": 1} for r in RTPENGINES]},
        "metrics": {"enabled": False},
        "cluster": {"enabled": True, "nodes": list(NODES), "node": i + 1, "secret": secret,
                    "floating_address": FLOATING},
    }


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def say(text: str) -> None:
    print(f"kemi cluster: {text}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kemi_tools.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(PROJECT_ROOT / "run" / "cluster"), help="where settings and logs go")
    parser.add_argument("--no-check", action="store_true", help="skip the first call through the floating address")
    args = parser.parse_args(argv)
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    topo = Topology("kemi-demo")
    galera_nodes: list[galera.GaleraNode] = []
    try:
        lan = topo.namespace("lan")
        topo.bridge(lan)

        def host(role: str, address: str, prefix: int = 24):
            ns = topo.namespace(role)
            topo.plug(lan, role, ns, "eth0", [f"{address}/{prefix}"])
            return ns

        # the Galera cluster
        for i, address in enumerate(GALERA):
            ns = host(f"g{i + 1}", address)

            def spawn(argv_, log, name, ns=ns):
                return ns.spawn(argv_, log, name=name)
            galera_nodes.append(galera.GaleraNode(f"g{i + 1}", address, Path("/tmp"), list(GALERA), spawn=spawn))
        say("starting a Galera cluster of 3 (about 15 s) ...")
        galera.start_cluster(galera_nodes)
        secret = secrets.token_hex(32)
        settings = [load_settings(_write(workdir / f"k{i + 1}", node_settings(i, secret, workdir / f"k{i + 1}")))
                    for i in range(3)]
        mariadb.provision(settings[0], socket=galera_nodes[0].socket, hosts=("%",))
        say(f"Galera ready on {', '.join(GALERA)} (wsrep_cluster_size "
            f"{galera_nodes[0].status('wsrep_cluster_size')}); database kamailio provisioned")
        # two rtpengines
        for i, address in enumerate(RTPENGINES):
            ns = host(f"r{i + 1}", address)
            d = RtpengineDaemon(listen_ng=f"{address}:2223", interfaces=(MediaInterface("default", address),),
                                port_min=30000, port_max=32000)
            ns.spawn(rtpengine.argv(d), workdir / f"r{i + 1}.log", name=f"rtpengine-r{i + 1}")
        # the Kamailio nodes, and keepalived beside each
        nodes_ns = []
        for i in range(3):
            ns = host(f"k{i + 1}", NODES[i])
            ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")
            nodes_ns.append(ns)
            cfg = kamailio.prepare(settings[i], workdir / f"k{i + 1}")
            kamailio.require_valid_config(cfg)
            ns.spawn(kamailio.command(cfg, settings[i].pid_file), workdir / f"k{i + 1}" / "kamailio.log",
                     name=f"kamailio-k{i + 1}", cwd=cfg.parent)
        phones = host("phones", PHONES[0])
        for address in PHONES[1:]:
            phones.add_address("eth0", f"{address}/24")
        for i, ns in enumerate(nodes_ns):
            wait_for(lambda i=i: _probe(phones, NODES[i]), 40, f"node k{i + 1} to answer OPTIONS", interval=0.3)

            def spawn(argv_, log, name, ns=ns):
                return ns.spawn(argv_, log, name=name)
            keepalived.start(settings[i], workdir / f"k{i + 1}" / "keepalived", spawn=spawn)
        wait_for(lambda: _probe(phones, FLOATING), 20, f"the floating address {FLOATING}", interval=0.3)
        for user in USERS:
            done = nodes_ns[0].run(["kamctl", "add", user, PASSWORD], check=False,
                                   env=dict(os.environ, HOME=str(_kamctl_home(workdir, settings[0]))))
            # kamctl exits 0 even when its INSERT failed: its own words say what happened
            if f"new user '{user}' added" not in done.stdout and "already exists" not in done.stdout:
                raise StartError(f"kamctl add {user} failed: {done.stdout}{done.stderr}")
        say(f"3 nodes on {', '.join(NODES)}, floating address {FLOATING}, subscribers {', '.join(USERS)} "
            f"(password {PASSWORD}); logs and settings in {workdir}")
        if not args.no_check:
            check = phones.run([sys.executable, "-m", "kemi_tools.kit", "call", "--target", f"{FLOATING}:5060",
                                "--users", f"{USERS[0]}:{PASSWORD},{USERS[1]}:{PASSWORD}",
                                "--local-ip", PHONES[1]], check=False, timeout=120, cwd=PROJECT_ROOT)
            say("first call through the floating address: " + ("ok" if check.returncode == 0 else "FAILED"))
            print(check.stdout[-1500:], flush=True)
        print(_howto(workdir), flush=True)
        while True:
            time.sleep(1)
    except _Stop:
        say("stopping")
        return 0
    except StartError as exc:
        print(f"kemi cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for g in galera_nodes:
            g.stop()
        problems = topo.teardown()
        for g in galera_nodes:
            g.remove()
        for p in problems:
            print(f"kemi cluster: {p}", file=sys.stderr)


def _write(workdir: Path, tables: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "settings.toml"
    path.write_text(toml_dump(tables))
    return path


def _kamctl_home(workdir: Path, settings) -> Path:
    home = workdir / "kamctl"
    home.mkdir(exist_ok=True)
    mariadb.write_kamctlrc(settings, home)
    return home


def _probe(ns, address: str) -> bool:
    code = ("import sys; from kemi_tools.stack.process import sip_options_ok; "
            f"sys.exit(0 if sip_options_ok('{address}', 5060) else 1)")
    return ns.run([sys.executable, "-c", code], check=False, timeout=10, cwd=PROJECT_ROOT).returncode == 0


def _howto(workdir: Path) -> str:
    return f"""
Try it (another terminal):
  ip netns exec kemi-demo-phones python3 -m kemi_tools.kit call --target {FLOATING}:5060 \\
      --users 2001:{PASSWORD},2002:{PASSWORD} --local-ip {PHONES[2]} --count 20 --rate 5
  kamcmd -s unix:{workdir}/k1/run/kamailio_ctl dmq.list_nodes     # node 1's view of the cluster
  ip -n kemi-demo-k1 addr show eth0                     # who holds {FLOATING}
  ip -n kemi-demo-k1 link set eth0 down                 # node 1 "dies": {FLOATING} moves
  ip -n kemi-demo-k1 link set eth0 up                   # back (it does not take {FLOATING} back)
Ctrl-C stops everything.
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
