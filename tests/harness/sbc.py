"""The two-NIC SBC test network: Kamailio in its own namespace between a public and a private side.

    kemi<slot>-<pid>-pub                kemi<slot>-<pid>-sbc                kemi<slot>-<pid>-priv
    203.0.113.10 gateway 1 (+caller)    pub0  203.0.113.1  "public"         198.51.100.10 gateway 1 (+caller)
    203.0.113.11 gateway 2              priv0 198.51.100.1 "private"        198.51.100.11 gateway 2
    203.0.113.20 a host, no gateway     Kamailio (+ MariaDB over its         198.51.100.30 phone (extension)
    192.0.2.66   an unknown source        unix socket, a filesystem path)
    198.51.100.99 a spoofed private-side address

A trunk's calls come from its gateway's address (another port), as a carrier's do: the SBC
trusts gateways by IP. 192.0.2.66 sits in the public namespace and reaches the SBC's
public NIC (the SBC routes 192.0.2.0/24 back through it): a source on neither side.
Every address is in a documentation range; everything lives in namespaces this run creates.
Ports come from the slot's range like every other test's.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import stack
from harness.netns import Namespace, Topology
from harness.sipp import Sipp
from kemi.settings import load_settings
from kemi_tools.stack import kamailio
from kemi_tools.stack.process import Daemon, wait_for

SBC_PUBLIC = "203.0.113.1"
SBC_PRIVATE = "198.51.100.1"
PUBLIC_NET = "203.0.113.0/24"
PRIVATE_NET = "198.51.100.0/24"
PUBLIC_GATEWAYS = ("203.0.113.10", "203.0.113.11")
PRIVATE_GATEWAYS = ("198.51.100.10", "198.51.100.11")
PUBLIC_HOST = "203.0.113.20"          # on the public side, not a gateway
UNKNOWN_SOURCE = "192.0.2.66"         # on no side
SPOOFED_SOURCE = "198.51.100.99"      # a private-side address, sent from the public side
PHONE = "198.51.100.30"               # an extension on the private side
SBC_PORT = stack.PORT_BASE + 60
GATEWAY_PORT = stack.PORT_BASE + 160  # every gateway listens here (each on its own address)
DOMAIN = SBC_PRIVATE                  # the extensions' SIP domain: the SBC's private address
# UDP through a proxy with several workers may reorder a callee's back-to-back 180 and 200:
# a 180 arriving after the 200 is legal SIP, so callers continue instead of aborting the call
TOLERATE_LATE_REPLIES = ["-default_behaviors", "all,-abortunexp"]


def gateway_uri(address: str) -> str:
    return f"sip:{address}:{GATEWAY_PORT}"


@dataclass
class Side:
    ns: Namespace
    sbc_address: str
    gateways: tuple[str, ...]

    @property
    def target(self) -> str:
        return f"{self.sbc_address}:{SBC_PORT}"


class SbcNetwork:
    """Namespaces, links and addresses; Kamailio and SIPp processes started inside them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.topology = Topology()
        self.sipps: list[Sipp] = []
        self.kamailio: SbcKamailio | None = None
        try:
            self._build()
        except Exception:
            self.topology.teardown()
            raise

    def _build(self) -> None:
        t = self.topology
        self.sbc_ns, pub, priv = t.namespace("sbc"), t.namespace("pub"), t.namespace("priv")
        t.link(self.sbc_ns, "pub0", [f"{SBC_PUBLIC}/24"],
               pub, "eth0", [f"{a}/24" for a in (*PUBLIC_GATEWAYS, PUBLIC_HOST)])
        t.link(self.sbc_ns, "priv0", [f"{SBC_PRIVATE}/24"],
               priv, "eth0", [f"{a}/24" for a in (*PRIVATE_GATEWAYS, PHONE)])
        pub.add_address("eth0", f"{UNKNOWN_SOURCE}/32")
        pub.add_address("eth0", f"{SPOOFED_SOURCE}/32")
        self.sbc_ns.add_route("192.0.2.0/24", PUBLIC_GATEWAYS[0])
        self.public = Side(pub, SBC_PUBLIC, PUBLIC_GATEWAYS)
        self.private = Side(priv, SBC_PRIVATE, PRIVATE_GATEWAYS)

    # --- Kamailio ---------------------------------------------------------------------------

    def sbc_tables(self, overrides: dict | None = None) -> dict:
        tables = {
            "sip": {"domain": DOMAIN, "listen": ["udp:127.0.0.1:%d" % SBC_PORT], "children": 2},
            "database": {"url": stack.TEST_DB_URL, "ro_url": stack.TEST_DB_RO_URL, "cache_ttl": 2},
            "runtime": {"dir": str(self.workdir / "kamailio" / "run"), "log_level": 2},
            "media": {"enabled": False},
            "sbc": {"enabled": True, "failover_timeout": 1500, "probing_interval": 2,
                    "did_cache_ttl": 2},
            "sbc.public": {"listen": [f"udp:{SBC_PUBLIC}:{SBC_PORT}"], "networks": [PUBLIC_NET],
                           "gateways": [gateway_uri(a) for a in PUBLIC_GATEWAYS]},
            "sbc.private": {"listen": [f"udp:{SBC_PRIVATE}:{SBC_PORT}"], "networks": [PRIVATE_NET],
                            "gateways": [gateway_uri(a) for a in PRIVATE_GATEWAYS]},
        }
        return stack.merge(tables, overrides or {})

    def start_kamailio(self, overrides: dict | None = None) -> "SbcKamailio":
        self.kamailio = SbcKamailio(self, self.workdir / "kamailio", self.sbc_tables(overrides)).start()
        return self.kamailio

    # --- SIPp -------------------------------------------------------------------------------

    def gateway(self, side: Side, index: int, scenario: str = "gw_answer.xml") -> Sipp:
        """Gateway `index` (0, 1) of a side, running `scenario` until stopped."""
        sipp = Sipp(scenario, self.workdir / "sipp", local_ip=side.gateways[index], local_port=GATEWAY_PORT,
                    calls=None, timeout=600, netns=side.ns.name).start()
        self.sipps.append(sipp)
        return sipp

    def trunk_call(self, side: Side, callee: str, calls: int = 1, caller: str = "15559990001",
                   source: str | None = None, rate: float | None = None, hold_ms: int | None = 100,
                   scenario: str = "trunk_call.xml", **kw) -> Sipp:
        """Calls from a trusted gateway's address (gateway 1 by default, another port)."""
        sipp = Sipp(scenario, self.workdir / "sipp", target=side.target,
                    rows=[f"{caller};{callee};{side.sbc_address}"], local_ip=source or side.gateways[0],
                    local_port=stack.free_port(), calls=calls, rate=rate,
                    sets={"hold_ms": hold_ms} if hold_ms is not None else {},
                    netns=side.ns.name, extra=list(TOLERATE_LATE_REPLIES), **kw)
        self.sipps.append(sipp)
        return sipp.start()

    def run(self, side: Side, scenario: str, local_ip: str, **kw) -> Sipp:
        kw.setdefault("extra", list(TOLERATE_LATE_REPLIES))
        sipp = Sipp(scenario, self.workdir / "sipp", netns=side.ns.name, local_ip=local_ip, **kw)
        self.sipps.append(sipp)
        return sipp.start()

    def stop_sipp(self, sipp: Sipp) -> None:
        """Stop a running SIPp (gateway) gracefully so its logs are complete."""
        sipp.stop(grace=10)

    # --- teardown ---------------------------------------------------------------------------

    def reset(self, workdir: Path) -> None:
        """Stop this test's SIPp and Kamailio (by PID); keep the namespaces for the next test."""
        for sipp in self.sipps:
            sipp.stop()
        self.sipps.clear()
        if self.kamailio:
            self.kamailio.stop()
            self.kamailio = None
        self.workdir = workdir

    def close(self) -> list[str]:
        self.reset(self.workdir)
        return self.topology.teardown()


class SbcKamailio:
    """Kamailio with our kamailio.cfg and SBC settings, running in the SBC namespace."""

    def __init__(self, net: SbcNetwork, workdir: Path, tables: dict):
        self.net, self.workdir = net, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings_file = workdir / "settings.toml"
        self.write(tables)
        self.daemon: Daemon | None = None

    def write(self, tables: dict) -> None:
        self.tables = tables
        self.settings_file.write_text(stack.toml_dump(tables))
        self.settings = load_settings(self.settings_file)

    def start(self) -> "SbcKamailio":
        cfg = kamailio.prepare(self.settings, self.workdir)
        kamailio.require_valid_config(cfg)
        self.daemon = self.net.sbc_ns.spawn(kamailio.command(cfg, self.settings.pid_file),
                                            self.workdir / "kamailio.log", name="kamailio",
                                            cwd=cfg.parent)   # include_file looks in cwd first
        wait_for(lambda: probe(self.net.public.ns, PUBLIC_GATEWAYS[0], SBC_PUBLIC, SBC_PORT), 30,
                 "the SBC to answer OPTIONS on its public NIC", self.daemon, interval=0.3)
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def rerender(self) -> None:
        """Render the settings again (dispatcher list included) without restarting."""
        kamailio.prepare(self.settings, self.workdir)

    def log(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def kamcmd(self, *args: str) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=15)
        return done.stdout + done.stderr

    def gateway_states(self) -> dict[str, str]:
        """URI -> dispatcher FLAGS (AP active+probing, IP inactive+probing, TP trying ...)."""
        out = self.kamcmd("dispatcher.list")
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\w+)", out))




_PROBE = """
import socket, sys, time
src, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0)); s.settimeout(0.5)
tag = time.monotonic_ns()
msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\\r\\nVia: SIP/2.0/UDP {src}:{s.getsockname()[1]};branch=z9hG4bK-p{tag};rport\\r\\n"
       f"Max-Forwards: 70\\r\\nFrom: <sip:probe@{src}>;tag=p{tag}\\r\\nTo: <sip:{host}:{port}>\\r\\n"
       f"Call-ID: probe-{tag}\\r\\nCSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n")
s.sendto(msg.encode(), (host, port))
try:
    data = s.recv(4096)
except OSError:
    sys.exit(1)
print(data.decode(errors="replace").split("\\r\\n", 1)[0])
"""


def probe(ns: Namespace, source: str, host: str, port: int) -> str | None:
    """The status line an OPTIONS from `source` (inside `ns`) gets, or None."""
    done = ns.run([sys.executable, "-c", _PROBE, source, host, str(port)], check=False, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else None


def send_raw(ns: Namespace, source: str, host: str, port: int, message: str, wait: float = 3.0) -> list[str]:
    """Send one SIP request from `source` in `ns`; every datagram back until a final reply."""
    code = """
import socket, sys, time
src, host, port, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
msg = sys.stdin.read().replace("\\n", "\\r\\n")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
msg = msg.replace("LOCALPORT", str(s.getsockname()[1]))
s.sendto(msg.encode(), (host, port))
end = time.monotonic() + wait
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data = s.recv(65535).decode(errors="replace")
    except OSError:
        break
    print(data.replace("\\r\\n", "\\n") + "\\n=====")
    if data.startswith("SIP/2.0 ") and int(data.split()[1]) >= 200:
        break
"""
    done = ns.run([sys.executable, "-c", code, source, host, str(port), str(wait)], input=message,
                  check=False, timeout=wait + 10)
    return [m.strip() for m in done.stdout.split("=====") if m.strip()]


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    """Poll `check()` until truthy; returns (value, seconds it took). Raises AssertionError."""
    start = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
