"""Media tests: a test's own rtpengine, RTP/RTCP pcaps for SIPp to play, a loopback capture,
and SDP parsing.

Ports come from the test slot (KEMI_TEST_SLOT): the ng control socket from the slot's
Kamailio/SIPp range, media from 20000 + 2000*slot .. +1999 (slots 6, 7: 6000, 8000 ..), split between rtpengine's relay
ports and the SIPp phones' media ports. rtpengine relays on its own loopback address
(RTPENGINE_ADDRESS), so an SDP that carries it cannot be a phone's.
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import stack
from kemi.settings import RtpengineDaemon, MediaInterface
# the socket-level capture pieces (BPF port filter, draining) are shared with make bench
from kemi_tools.capture import (ETH_P_ALL, PACKET_OUTGOING, attach_udp_port_filter, drop_queued,  # noqa: F401
                                kernel_drops)
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.ng import NgClient
from kemi_tools.stack.process import Daemon

# slots 0-5: 20000 + 2000*slot; 6 and 7 below the Kamailio/SIPp ranges (10000 + 1000*slot)
MEDIA_BASE = 20000 + 2000 * stack.SLOT if stack.SLOT <= 5 else 6000 + 2000 * (stack.SLOT - 6)
# above 32767 the kernel hands out ephemeral ports (any client socket), which a capture of
# "this slot's media ports" would then count as media
assert 0 <= stack.SLOT <= 7, f"KEMI_TEST_SLOT={stack.SLOT} is too high for media tests: use 0 to 7"
RTPENGINE_PORT_MIN, RTPENGINE_PORT_MAX = MEDIA_BASE, MEDIA_BASE + 1499
PHONE_MEDIA_MIN, PHONE_MEDIA_MAX = MEDIA_BASE + 1500, MEDIA_BASE + 1999
RTPENGINE_ADDRESS = "127.0.0.2"
PHONE_ADDRESS = "127.0.0.1"

_ng_ports = itertools.cycle(range(stack.PORT_BASE + 50, stack.PORT_BASE + 100))
# a phone's media block: audio RTP, audio RTCP, video RTP, video RTCP
_phone_media = itertools.cycle(range(PHONE_MEDIA_MIN, PHONE_MEDIA_MAX - 3, 4))


def phone_media_port() -> int:
    """The first of 4 consecutive ports for one SIPp phone's media (-mp)."""
    return next(_phone_media)


# --- the test's rtpengine ------------------------------------------------------------------


class TestRtpengine:
    """rtpengine started from the same [media.rtpengine] settings Kamailio gets."""

    __test__ = False          # not a pytest test class

    def __init__(self, workdir: Path, delete_delay: int = 0):
        self.workdir = workdir
        self.ng_port = next(_ng_ports)
        # delete_delay 0: a deleted session disappears at once, so `list` shows only leaks
        self.table = {
            "listen_ng": f"127.0.0.1:{self.ng_port}",
            "interfaces": [{"name": "default", "address": RTPENGINE_ADDRESS}],
            "port_min": RTPENGINE_PORT_MIN, "port_max": RTPENGINE_PORT_MAX,
            "delete_delay": delete_delay, "log_level": 6,
        }
        self.settings = RtpengineDaemon(
            listen_ng=self.table["listen_ng"], interfaces=(MediaInterface("default", RTPENGINE_ADDRESS),),
            port_min=RTPENGINE_PORT_MIN, port_max=RTPENGINE_PORT_MAX, delete_delay=delete_delay)
        self.ng = NgClient(("127.0.0.1", self.ng_port))
        self.daemon: Daemon | None = None
        self.starts = 0

    @property
    def socket(self) -> str:
        return f"udp:127.0.0.1:{self.ng_port}"

    def media_settings(self, **extra) -> dict:
        """The [media] overrides that point Kamailio at this rtpengine."""
        return {"media": {"enabled": True, "rtpengine": dict(self.table), **extra}}

    def start(self) -> "TestRtpengine":
        self.starts += 1
        self.daemon = rtpengine_stack.start(self.settings, self.workdir, log_name=f"rtpengine-{self.starts}.log")
        return self

    def stop(self) -> None:
        if self.daemon:
            self.thaw()
            self.daemon.stop()
            self.daemon = None

    def freeze(self) -> None:
        """SIGSTOP: the ng socket stays open but nothing answers (a hung rtpengine)."""
        os.kill(self.daemon.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.daemon and self.daemon.alive():
            os.kill(self.daemon.pid, signal.SIGCONT)

    def stats(self) -> dict:
        return self.ng.command("statistics")["statistics"]

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("rtpengine-*.log")))


# RTP/RTCP packets and the pcaps SIPp plays: kemi_tools/rtp.py (make soak uses them too)
from kemi_tools.rtp import (  # noqa: F401
    RTP_VERSION, PT_PCMU, PT_H264, RTCP_SR, RTCP_TYPES, PCAP_MAGIC, PCAP_LINKTYPE_ETHERNET, PCAP_DST_BASE,
    PCAP_SRC_BASE, rtp_packet, rtcp_sender_report, Stream, write_stream_pcap, AUDIO, VIDEO, write_call_pcaps,
    _ethernet_udp)


# --- a loopback capture (AF_PACKET, filtered in the kernel to this slot's media ports) ------

@dataclass
class Captured:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload_type: int          # byte 1 of the UDP payload (RTCP: 200-204)
    payload: bytes = b""       # the UDP payload (kept when the capture is asked to: keep_payloads)
    at: float = 0.0            # time.monotonic() when the capture read it

    @property
    def is_rtcp(self) -> bool:
        return self.payload_type in RTCP_TYPES


@dataclass
class LoopbackCapture:
    """Counts UDP packets on lo whose source or destination port is in [low, high]."""
    low: int = MEDIA_BASE
    high: int = MEDIA_BASE + 1999
    packets: list[Captured] = field(default_factory=list)
    keep_payloads: bool = False
    dropped: int = 0           # packets the kernel could not queue for the capture: counts are then short

    SKIP_OUTGOING = True       # lo shows each packet twice: keep the received copy only

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_udp_port_filter(sock, self.low, self.high)
        sock.bind(("lo", 0))
        return sock

    def __enter__(self) -> "LoopbackCapture":
        self._sock = self._open_socket()
        drop_queued(self._sock)
        kernel_drops(self._sock)           # counted from here on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if (self.SKIP_OUTGOING and addr[2] == PACKET_OUTGOING) or len(data) < 14 + 20 + 8:
                continue
            if data[12:14] == b"\x86\xdd":          # IPv6 (the filter passes UDP right after it)
                ihl = 40
                src_ip = socket.inet_ntop(socket.AF_INET6, data[22:38])
                dst_ip = socket.inet_ntop(socket.AF_INET6, data[38:54])
            else:
                ihl = (data[14] & 0x0F) * 4
                src_ip, dst_ip = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
            sport, dport = struct.unpack("!HH", data[14 + ihl:14 + ihl + 4])
            payload = data[14 + ihl + 8:]
            self.packets.append(Captured((src_ip, sport), (dst_ip, dport), payload[1] if len(payload) > 1 else -1,
                                         payload if self.keep_payloads else b"", time.monotonic()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.dropped = kernel_drops(self._sock)
        self._sock.close()

    def count(self, src: tuple[str, int] | None = None, dst: tuple[str, int] | None = None,
              rtcp: bool | None = None) -> int:
        return sum(1 for p in self.packets
                   if (src is None or p.src == src) and (dst is None or p.dst == dst)
                   and (rtcp is None or p.is_rtcp == rtcp))

    def flows(self) -> Counter:
        """(src, dst, "RTP"/"RTCP") -> packets: for failure messages."""
        return Counter((p.src, p.dst, "RTCP" if p.is_rtcp else "RTP") for p in self.packets)


def wait_until(check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


# --- SDP ----------------------------------------------------------------------------------


@dataclass
class Sdp:
    origin_address: str
    connection: str                      # session-level c= address ("" if none)
    media: list[tuple[str, int, str]]    # (type, port, media-level c= or session c=)
    attributes: list[list[str]]          # a= lines per m= section
    rtcp_ports: list[int | None]         # a=rtcp: per m= section (None: RTP port + 1)

    def port(self, kind: str) -> int:
        return next(p for t, p, _ in self.media if t == kind)

    def address(self, kind: str) -> str:
        return next(a for t, _, a in self.media if t == kind)

    def rtcp_port(self, kind: str) -> int:
        i = next(i for i, (t, _, _) in enumerate(self.media) if t == kind)
        if "rtcp-mux" in self.attributes[i]:
            return self.media[i][1]
        return self.rtcp_ports[i] or self.media[i][1] + 1

    def has_attribute(self, kind: str, attribute: str) -> bool:
        i = next(i for i, (t, _, _) in enumerate(self.media) if t == kind)
        return attribute in self.attributes[i]


def parse_sdp(message: str) -> Sdp | None:
    """The SDP body of a SIP message as SIPp logged it (None without one)."""
    head, sep, body = message.replace("\r\n", "\n").partition("\n\n")
    if not sep or "v=0" not in body:
        return None
    origin, conn, media, attrs, rtcp = "", "", [], [], []
    for line in body.strip().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "o":
            origin = value.split()[-1]
        elif key == "c":
            if media:
                kind, port, _ = media[-1]
                media[-1] = (kind, port, value.split()[-1])
            else:
                conn = value.split()[-1]
        elif key == "m":
            kind, port = value.split()[:2]
            media.append((kind, int(port), conn))
            attrs.append([])
            rtcp.append(None)
        elif key == "a" and media:
            attrs[-1].append(value)
            if value.startswith("rtcp:"):
                rtcp[-1] = int(value[5:].split()[0])
    return Sdp(origin, conn, media, attrs, rtcp)


def sipp_messages(result, kind: str = "received") -> list[str]:
    """SIP messages a SIPp run logged (-trace_msg) as `kind`: "received" or "sent"."""
    return result.traced(kind)


def sdps(messages: list[str], start: str) -> list[Sdp]:
    """The SDP bodies of the messages whose first line starts with `start`."""
    return [s for m in messages if m.startswith(start) and (s := parse_sdp(m))]


def sdp_body(message: str) -> str:
    return message.replace("\r\n", "\n").partition("\n\n")[2].strip()


def assert_sdp_on_rtpengine(sdp: Sdp, address: str, who: str) -> None:
    """o=, c= and both m= lines (audio, video) are rtpengine's at `address`: its address, its ports."""
    assert sdp.origin_address == address, f"{who}: o= {sdp.origin_address}"
    assert sdp.connection == address, f"{who}: c= {sdp.connection}"
    assert [kind for kind, _, _ in sdp.media] == ["audio", "video"], f"{who}: {sdp.media}"
    for kind, port, addr in sdp.media:
        assert addr == address, f"{who}: {kind} address {addr}"
        assert RTPENGINE_PORT_MIN <= port <= RTPENGINE_PORT_MAX, f"{who}: {kind} port {port} is not rtpengine's"
