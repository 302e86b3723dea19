"""Phones where they really are: behind NAT routers, and on IPv6 (issue 24).

    home1 192.0.2.10/25 ─ lan 192.0.2.1 [router1] wan 198.51.100.11 ─┐
    home2 192.0.2.10/25 ─ lan 192.0.2.1 [router2] wan 198.51.100.12 ─┤  the "internet":
                                                                      ├─ a bridge in its own
    open  198.51.100.20  (a host with a public address, no NAT)  ────┤  namespace (wan)
    v6    2001:db8:100::20  (an IPv6-only host)                  ────┤
    proxy 198.51.100.1, 2001:db8:100::1: Kamailio(s), rtpengine  ────┘

Both homes use the SAME private network and phone address (192.0.2.10), as two houses do.
Each router does source NAT (nftables masquerade) of its home onto its WAN address, with
short UDP conntrack timeouts (NAT_UDP_TIMEOUT, both unreplied and stream), so a binding
expires within a test. router1 keeps a phone's source port when it can (most home routers);
router2 maps every flow to a RANDOM port (symmetric NAT, carrier-grade NAT): a phone behind
it is seen on ports that are neither its Via's, its Contact's nor its SDP's.

The proxy namespace has no route to 192.0.2.0/24: the only way to a phone is through its
router's binding. Nothing forwards between the proxy's addresses except rtpengine.
Every address is a documentation address (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import stack
from harness.netns import Namespace, Topology
from harness.sbc import probe
from harness.sbc_media import SbcRtpengine
from kemi.settings import load_settings
from kemi_tools.stack import kamailio
from kemi_tools.stack.process import Daemon, wait_for

PROXY = "198.51.100.1"
PROXY6 = "2001:db8:100::1"
OPEN_HOST = "198.51.100.20"
V6_HOST = "2001:db8:100::20"
PHONE = "192.0.2.10"                 # the phone's private address, in EVERY home
HOME_GATEWAY = "192.0.2.1"
HOME_NET = "192.0.2.0/25"
ROUTER_WAN = {"home1": "198.51.100.11", "home2": "198.51.100.12"}
# router2 maps each flow to a random public port; router1 keeps the phone's port
RANDOM_PORTS = {"home1": False, "home2": True}
# seconds a router keeps a UDP binding without traffic (many home routers: 20 to 30 s)
NAT_UDP_TIMEOUT = 20
# the proxy's rtpengine: ng on its namespace's loopback, one "default" interface in each family
NG_PORT = stack.PORT_BASE + 62
RTPENGINE_INTERFACES = [{"name": "default", "address": PROXY}, {"name": "default", "address": PROXY6}]


def nat_rules(random_ports: bool) -> str:
    """nftables: masquerade what leaves through the WAN (a home router's source NAT), and
    count the TCP connections anybody opens toward the router from outside (SYNs on its WAN)."""
    mode = " random" if random_ports else ""
    return ("table ip nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "wan" masquerade{mode}\n'
            "  }\n"
            "}\n"
            "table ip watch {\n"
            "  chain prerouting {\n"
            "    type filter hook prerouting priority raw; policy accept;\n"
            '    iifname "wan" tcp flags & (syn | ack) == syn counter\n'
            "  }\n"
            "}\n")


@dataclass
class Home:
    name: str
    ns: Namespace                   # the phones' namespace (address PHONE)
    router: Namespace
    wan: str                        # the router's public address: what the proxy sees

    def bindings(self) -> list[dict]:
        """The router's UDP/TCP NAT bindings now (conntrack), each {proto, src, sport, dst,
        dport, public_port, replied}: src/sport the phone's, public_port what the proxy sees."""
        text = self.router.run(["cat", "/proc/net/nf_conntrack"], check=False).stdout
        out = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 4 or fields[2] not in ("udp", "tcp"):
                continue
            pairs = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
            if len(pairs) < 8:
                continue
            orig, reply = dict(pairs[:4]), dict(pairs[4:8])
            out.append({"proto": fields[2], "src": orig["src"], "sport": int(orig["sport"]),
                        "dst": orig["dst"], "dport": int(orig["dport"]), "public_port": int(reply["dport"]),
                        "replied": "[UNREPLIED]" not in line, "line": line})
        return out

    def syns_from_outside(self) -> int:
        """TCP connections opened toward the router from its WAN side so far (SYNs counted)."""
        listed = self.router.run(["nft", "list", "chain", "ip", "watch", "prerouting"]).stdout
        found = re.search(r"counter packets (\d+)", listed)
        assert found, listed
        return int(found.group(1))

    def binding(self, phone_port: int, proxy_port: int, proto: str = "udp") -> dict | None:
        """The binding of the phone's `phone_port` toward the proxy's `proxy_port`, if alive."""
        for b in self.bindings():
            if (b["proto"], b["src"], b["sport"], b["dst"], b["dport"]) == (proto, PHONE, phone_port, PROXY,
                                                                             proxy_port):
                return b
        return None


class NatNetwork:
    """The namespaces above, built once per test module; Kamailio and rtpengine start per test."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.topology = Topology()
        try:
            self._build()
        except Exception:
            self.topology.teardown()
            raise

    def _build(self) -> None:
        t = self.topology
        self.wan = t.namespace("wan")
        t.bridge(self.wan)
        self.proxy = t.namespace("proxy")
        t.plug(self.wan, "p-proxy", self.proxy, "eth0", [f"{PROXY}/24", f"{PROXY6}/64"])
        self.open = t.namespace("open")
        t.plug(self.wan, "p-open", self.open, "eth0", [f"{OPEN_HOST}/24"])
        self.v6 = t.namespace("v6")
        t.plug(self.wan, "p-v6", self.v6, "eth0", [f"{V6_HOST}/64"])
        self.homes: dict[str, Home] = {}
        for name, wan in ROUTER_WAN.items():
            router, home = t.namespace(f"r-{name}"), t.namespace(name)
            t.plug(self.wan, f"p-{name}", router, "wan", [f"{wan}/24"])
            t.link(router, "lan", [f"{HOME_GATEWAY}/25"], home, "eth0", [f"{PHONE}/25"])
            home.add_route("198.51.100.0/24", HOME_GATEWAY)
            router.sysctl("net.ipv4.ip_forward", "1")
            # the binding timeouts: a flow that has seen replies ("stream") forgets as fast
            router.sysctl("net.netfilter.nf_conntrack_udp_timeout", str(NAT_UDP_TIMEOUT))
            router.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", str(NAT_UDP_TIMEOUT))
            router.run(["nft", "-f", "-"], input=nat_rules(RANDOM_PORTS[name]))
            self.homes[name] = Home(name, home, router, wan)

    def close(self) -> list[str]:
        return self.topology.teardown()


class NatKamailio:
    """Kamailio with our kamailio.cfg in the proxy namespace, on PROXY (and PROXY6) `port`."""

    def __init__(self, net: NatNetwork, workdir: Path, port: int, overrides: dict | None = None,
                 transports: tuple[str, ...] = ("udp",), ipv6: bool = False, tls: tuple[str, str] | None = None,
                 tls_port: int | None = None):
        """`transports`: udp, tcp on `port`; `tls` (certificate, key): a TLS socket on `tls_port`."""
        self.net, self.workdir, self.port, self.tls_port = net, workdir, port, tls_port
        listen = [f"{proto}:{PROXY}:{port}" for proto in transports]
        if tls:
            listen.append(f"tls:{PROXY}:{tls_port}")
        if ipv6:
            listen.append(f"udp:[{PROXY6}]:{port}")
        tables = {
            "sip": {"domain": PROXY, "listen": listen, "children": 2},
            "database": {"url": stack.TEST_DB_URL, "ro_url": stack.TEST_DB_RO_URL},
            "runtime": {"dir": str(workdir / "run"), "log_level": 2},
            "media": {"enabled": False},
        }
        if tls:
            tables["tls"] = {"enabled": True, "certificate": tls[0], "private_key": tls[1]}
        self.tables = stack.merge(tables, overrides or {})
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings_file = workdir / "settings.toml"
        self.settings_file.write_text(stack.toml_dump(self.tables))
        self.settings = load_settings(self.settings_file)
        self.daemon: Daemon | None = None

    @property
    def target(self) -> str:
        return f"{PROXY}:{self.port}"

    @property
    def target6(self) -> str:
        return f"[{PROXY6}]:{self.port}"

    def start(self) -> NatKamailio:
        cfg = kamailio.prepare(self.settings, self.workdir)
        kamailio.require_valid_config(cfg)
        self.daemon = self.net.proxy.spawn(kamailio.command(cfg, self.settings.pid_file),
                                           self.workdir / "kamailio.log", name="kamailio", cwd=cfg.parent)
        wait_for(lambda: probe(self.net.open, OPEN_HOST, PROXY, self.port), 30,
                 "Kamailio to answer OPTIONS in the proxy namespace", self.daemon, interval=0.3)
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def log(self) -> str:
        path = self.workdir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kamcmd(self, *args: str) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=15)
        return done.stdout + done.stderr


def proxy_rtpengine(net: NatNetwork, workdir: Path) -> SbcRtpengine:
    """rtpengine in the proxy namespace, relaying on PROXY and PROXY6 (one interface, both families)."""
    return SbcRtpengine(net.proxy, workdir, interfaces=RTPENGINE_INTERFACES, ng_port=NG_PORT)


def register(net: NatNetwork, home: str, user: str, port: int, proxy: NatKamailio, workdir: Path,
             expires: int = 600):
    """A SIPp phone in `home` registers `user` (digest) from PHONE:port, Contact PHONE:port."""
    from harness.sipp import Sipp, auth_row
    return Sipp("register.xml", workdir, target=proxy.target, local_ip=PHONE, local_port=port,
                rows=[auth_row(user, stack.PASSWORD, PROXY)], keys={"contact_port": port, "expires": expires},
                netns=net.homes[home].ns.name).run()


def location(db, user: str) -> list[tuple[str, str]]:
    """(contact, received) of each of `user`'s registrations."""
    return [(row[0], "" if row[1] == "NULL" else row[1]) for row in db.query(
        f"SELECT contact, received FROM location WHERE username = '{user}' AND expires > NOW();")]


class KeepaliveRun:
    """One Kamailio with a keepalive setting and one silent phone (baresip: it sends nothing
    after registering, answers OPTIONS and calls) registered to it from `home`."""

    def __init__(self, net: NatNetwork, workdir: Path, home: str, user: str, interval: int | None):
        from harness.baresip import Baresip
        self.net, self.home, self.user, self.interval = net, net.homes[home], user, interval
        overrides = {} if interval is None else {"nat": {"keepalive_interval": interval}}
        self.kamailio = NatKamailio(net, workdir / "kamailio", stack.kamailio_port(), overrides)
        self.phone = Baresip(workdir, user, register=True, address=PHONE)
        self.registered_at: float | None = None
        self.died_after: float | None = None      # seconds after registration the binding was gone

    def start(self) -> KeepaliveRun:
        self.kamailio.start()
        # regint: it refreshes its registration only after the test (a silent phone)
        self.phone.start(self.kamailio.target, seconds=600, netns=self.home.ns)
        return self

    def binding(self, bindings: list[dict] | None = None) -> dict | None:
        for b in bindings if bindings is not None else self.home.bindings():
            if (b["proto"], b["src"], b["sport"], b["dst"], b["dport"]) == ("udp", PHONE, self.phone.port, PROXY,
                                                                             self.kamailio.port):
                return b
        return None

    def stop(self) -> None:
        self.phone.stop()
        self.kamailio.stop()
