"""Media on the two-NIC SBC test network (tests/harness/sbc.py): rtpengine in the SBC
namespace, its ng socket and a packet capture reached from the test process, SIPp parties
with audio and video on each side.

    rtpengine (inside kemi<slot>-<pid>-sbc)
      --listen-ng=127.0.0.1:SBC_NG_PORT              the namespace's own loopback
      --interface=public/203.0.113.1                 pub0
      --interface=private/198.51.100.1               priv0
      ports RTPENGINE_PORT_MIN..MAX (the slot's media range, tests/harness/media.py)

The test process stays in the root namespace. Whatever must live in another namespace (the
ng client's UDP socket, the capture's AF_PACKET socket) is created there by switching only
the calling thread into it for the moment of socket(), with setns(2): a socket belongs
to the namespace it was created in, wherever it is used afterwards.
"""
from __future__ import annotations

import ctypes
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from harness import stack
from harness.media import (ETH_P_ALL, PHONE_MEDIA_MAX, RTPENGINE_PORT_MAX, RTPENGINE_PORT_MIN, MEDIA_BASE,
                           LoopbackCapture, attach_udp_port_filter)
from harness.netns import Namespace
from harness.sbc import SBC_PORT, SBC_PRIVATE, SBC_PUBLIC
from kemi.settings import MediaInterface, RtpengineDaemon
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.ng import NgClient
from kemi_tools.stack.process import Daemon, StartError, wait_for

# rtpengine's ng socket on the SBC namespace's loopback (Kamailio is there too, on SBC_PORT)
SBC_NG_PORT = SBC_PORT + 2
CLONE_NEWNET = 0x40000000
PACKET_OUTGOING = 4
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def entered(ns: Namespace):
    """Run the body with THIS thread in network namespace `ns` (sockets made here stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns.name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:       # never leave the test thread elsewhere
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the test's namespace: {os.strerror(err)}")
    finally:
        os.close(own)
        os.close(target)


class NetnsNgClient(NgClient):
    """An ng client whose UDP socket lives in `ns` (rtpengine's loopback there)."""

    def __init__(self, ns: Namespace, address: tuple[str, int], timeout: float = 1.0):
        super().__init__(address, timeout)
        self.ns = ns

    def request(self, command: str, **args) -> dict:
        with entered(self.ns):
            return super().request(command, **args)


class SbcRtpengine:
    """rtpengine with one interface per SBC side, started by PID inside the SBC namespace
    (or with the `interfaces` given: the NAT tests' proxy namespace, tests/harness/nat.py)."""

    def __init__(self, ns: Namespace, workdir: Path, interfaces: list[dict] | None = None,
                 ng_port: int = SBC_NG_PORT):
        self.ns, self.workdir = ns, workdir
        self.table = {
            "listen_ng": f"127.0.0.1:{ng_port}",
            "interfaces": interfaces or [{"name": "public", "address": SBC_PUBLIC},
                                         {"name": "private", "address": SBC_PRIVATE}],
            "port_min": RTPENGINE_PORT_MIN, "port_max": RTPENGINE_PORT_MAX,
            # 0: a deleted session is gone at once, so `list` shows only what nobody deleted
            "delete_delay": 0, "log_level": 6,
        }
        self.settings = RtpengineDaemon(
            listen_ng=self.table["listen_ng"],
            interfaces=tuple(MediaInterface(i["name"], i["address"]) for i in self.table["interfaces"]),
            port_min=RTPENGINE_PORT_MIN, port_max=RTPENGINE_PORT_MAX, delete_delay=0)
        self.ng = NetnsNgClient(ns, ("127.0.0.1", ng_port))
        self.daemon: Daemon | None = None

    def media_settings(self, **extra) -> dict:
        """[media] overrides pointing Kamailio (in the same namespace) at this rtpengine."""
        return {"media": {"enabled": True, "rtpengine": dict(self.table), **extra}}

    def start(self) -> "SbcRtpengine":
        self.daemon = self.ns.spawn(rtpengine_stack.argv(self.settings), self.workdir / "rtpengine.log",
                                    name="rtpengine")
        try:
            wait_for(self.ng.ping, 15, f"rtpengine to answer ping on {self.table['listen_ng']} in {self.ns.name}",
                     self.daemon, interval=0.1)
        except StartError:
            self.daemon.stop()
            raise
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def totals(self) -> dict:
        return self.ng.command("statistics")["statistics"]["totalstatistics"]

    def log(self) -> str:
        path = self.workdir / "rtpengine.log"
        return path.read_text(errors="replace") if path.exists() else ""


class NetnsCapture(LoopbackCapture):
    """UDP packets with a source or destination port in [low, high] on every NIC of `ns`.

    Each packet crossing the SBC namespace is seen once: on the NIC it came in on (as
    received) or went out of (as sent, PACKET_OUTGOING). Filtered in the kernel (BPF).
    """
    SKIP_OUTGOING = False      # each packet is seen once: on the NIC it came in on or went out of

    def __init__(self, ns: Namespace, low: int = MEDIA_BASE, high: int = PHONE_MEDIA_MAX):
        super().__init__(low, high)
        self.ns = ns

    def _open_socket(self) -> socket.socket:
        with entered(self.ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_udp_port_filter(sock, self.low, self.high)
        return sock


def forwarding_enabled(ns: Namespace) -> bool:
    """IPv4 forwarding in `ns` (off: nothing crosses between its NICs except what a process relays)."""
    return ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"


def sbc_media_tables(rtpe: SbcRtpengine, gateways_per_side: int = 1, public_gateways: tuple[str, ...] = (),
                     **media_extra) -> dict:
    """Kamailio overrides for a media test: rtpengine on, one gateway per side (the call's
    callee is known), no OPTIONS probing (the media gateways run one call each)."""
    from harness.sbc import PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, gateway_uri

    public = public_gateways or PUBLIC_GATEWAYS
    return stack.merge(rtpe.media_settings(**media_extra), {
        "sbc": {"probing_interval": 0},
        "sbc.public": {"gateways": [gateway_uri(a) for a in public[:gateways_per_side]]},
        "sbc.private": {"gateways": [gateway_uri(a) for a in PRIVATE_GATEWAYS[:gateways_per_side]]},
    })
