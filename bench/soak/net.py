"""The soak's networks: Kamailio (and rtpengine) in a namespace of their own, every party in
another one, on documentation addresses only (kemi_tools.stack.netns refuses anything else).

Registrar (one node):
    <prefix>-proxy   lan0 192.0.2.1     Kamailio :5060, rtpengine (ng on the namespace's 127.0.0.1)
    <prefix>-lan     eth0 192.0.2.10    phones: registrations, callers, callees, keepalives
                          192.0.2.66    a scanner (friendly-scanner)
                          192.0.2.77    a password guesser

SBC (two NICs):
    <prefix>-proxy   pub0 203.0.113.1 "public", priv0 198.51.100.1 "private"
    <prefix>-pub     203.0.113.10 trunk gateway (calls in, takes calls out), 203.0.113.11 gateway,
                     203.0.113.66 scanner, 203.0.113.77 password guesser
    <prefix>-priv    198.51.100.10 / .11 gateways, 198.51.100.30 phones (extensions)

Each namespace has its own ports, so every SIP service can sit on 5060. The test process
stays in the root namespace; a socket it needs elsewhere (rtpengine's ng, the scanner, the
OPTIONS probe, /metrics) is made inside the namespace (Namespace.socket).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from kemi_tools.stack.netns import Namespace, Topology

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))
SIP_PORT = 5060
NG_PORT = 2223
METRICS_PORT = 9090

# registrar
PROXY_LAN = "192.0.2.1"
PHONES = "192.0.2.10"
LAN_SCANNER = "192.0.2.66"
LAN_GUESSER = "192.0.2.77"
# SBC
SBC_PUBLIC, SBC_PRIVATE = "203.0.113.1", "198.51.100.1"
TRUNK = "203.0.113.10"                 # the public trunk gateway: calls in from here
PUBLIC_GATEWAYS = ("203.0.113.10", "203.0.113.11")
PRIVATE_GATEWAYS = ("198.51.100.10", "198.51.100.11")
PRIVATE_PHONES = "198.51.100.30"
PUBLIC_SCANNER = "203.0.113.66"
PUBLIC_GUESSER = "203.0.113.77"


@dataclass
class Net:
    """One soak's namespaces: where Kamailio is, where each party sends from."""
    mode: str
    topology: Topology
    proxy: Namespace
    phones_ns: Namespace            # phones (registrations, calls, keepalives)
    phones_ip: str
    attack_ns: Namespace            # scanner and password guesser
    scanner_ip: str
    guesser_ip: str
    sip_address: str                # where phones send (the registrar, or the SBC's private side)
    domain: str
    attack_address: str             # where the scanner sends: the registrar, or the SBC's public side
    trunk_ns: Namespace | None = None       # SBC: the public side (trunk, public gateways)
    gateways_ns: Namespace | None = None    # SBC: the private side's gateways

    def teardown(self) -> list[str]:
        return self.topology.teardown()


def prefix() -> str:
    return f"kemi{SLOT}k-{os.getpid()}"


def build(mode: str) -> Net:
    topo = Topology(prefix())
    try:
        if mode == "registrar":
            proxy, lan = topo.namespace("proxy"), topo.namespace("lan")
            topo.link(proxy, "lan0", [f"{PROXY_LAN}/24"], lan, "eth0",
                      [f"{a}/24" for a in (PHONES, LAN_SCANNER, LAN_GUESSER)])
            return Net(mode, topo, proxy, lan, PHONES, lan, LAN_SCANNER, LAN_GUESSER, PROXY_LAN, PROXY_LAN,
                       PROXY_LAN)
        proxy, pub, priv = topo.namespace("proxy"), topo.namespace("pub"), topo.namespace("priv")
        topo.link(proxy, "pub0", [f"{SBC_PUBLIC}/24"], pub, "eth0",
                  [f"{a}/24" for a in (*PUBLIC_GATEWAYS, PUBLIC_SCANNER, PUBLIC_GUESSER)])
        topo.link(proxy, "priv0", [f"{SBC_PRIVATE}/24"], priv, "eth0",
                  [f"{a}/24" for a in (*PRIVATE_GATEWAYS, PRIVATE_PHONES)])
        return Net(mode, topo, proxy, priv, PRIVATE_PHONES, pub, PUBLIC_SCANNER, PUBLIC_GUESSER,
                   SBC_PRIVATE, SBC_PRIVATE, SBC_PUBLIC, trunk_ns=pub, gateways_ns=priv)
    except BaseException:
        topo.teardown()
        raise


def options_ok(ns: Namespace, source: str, host: str, port: int, timeout: float = 1.0) -> bool:
    """An OPTIONS from `source` (inside `ns`) to host:port is answered (any SIP reply)."""
    with ns.socket() as s:
        s.settimeout(timeout)
        try:
            s.bind((source, 0))
            lport = s.getsockname()[1]
            tag = time.monotonic_ns()
            msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {source}:{lport};branch=z9hG4bK-soak{tag};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:probe@{source}>;tag=p{tag}\r\n"
                   f"To: <sip:{host}:{port}>\r\nCall-ID: soak-probe-{tag}\r\nCSeq: 1 OPTIONS\r\n"
                   f"Content-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), (host, port))
            return s.recv(4096).startswith(b"SIP/2.0 ")
        except OSError:
            return False


def http_get(ns: Namespace, host: str, port: int, path: str, timeout: float = 3.0) -> str:
    """The body of an HTTP GET made from inside `ns` ("" when it fails). Read by its
    Content-Length: Kamailio keeps the connection open after answering."""
    with ns.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        data = b""
        try:
            s.connect((host, port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            while True:
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(body) >= length:
                        break
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return ""
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace") if head.startswith(b"HTTP/1.") else ""
