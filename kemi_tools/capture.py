"""Loopback packet captures: AF_PACKET sockets filtered in the kernel to a UDP port range.

The tests count media packets with them (tests/harness/media.py); `make bench` times SIP
messages through Kamailio with kernel timestamps (SipTimes), a finer clock than SIPp's
whole milliseconds. Root only (AF_PACKET).
"""
from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4            # lo shows each packet twice: as sent and as received
SO_RCVBUFFORCE = 33            # as root: past net.core.rmem_max
SOL_PACKET, PACKET_STATISTICS = 263, 6
MEDIA_BUFFER = 8 << 20


def _bpf_udp_port_range(low: int, high: int, sources_only: bool = False) -> bytes:
    """Classic BPF: accept IPv4 UDP (unfragmented) or IPv6 UDP (no extension header) whose
    source or destination port is in range (sources_only: whose source port is)."""
    ld_h_abs, ld_b_abs, ld_h_ind, ldx_msh = 0x28, 0x30, 0x48, 0xB1
    jeq, jge, jgt, jset, ret = 0x15, 0x35, 0x25, 0x45, 0x06
    # a source port out of range: look at the destination port, or (sources_only) drop
    other, other6 = ("drop", "drop") if sources_only else ("dport", "dport6")
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to relative offsets
    prog = [
        ("ethertype", ld_h_abs, None, None, 12), ("", jeq, "ipv6", None, 0x86DD),
        ("", jeq, None, "drop", 0x0800),
        ("", ld_b_abs, None, None, 23), ("", jeq, None, "drop", socket.IPPROTO_UDP),
        ("", ld_h_abs, None, None, 20), ("", jset, "drop", None, 0x1FFF),       # a fragment
        ("", ldx_msh, None, None, 14),                                          # X = IP header length
        ("", ld_h_ind, None, None, 14), ("", jge, None, other, low),            # source port
        ("", jgt, other, "accept", high),
        ("dport", ld_h_ind, None, None, 16), ("", jge, None, "drop", low),      # destination port
        ("", jgt, "drop", "accept", high),
        # IPv6: the next header is UDP, the UDP header right after the 40-byte IPv6 header
        ("ipv6", ld_b_abs, None, None, 20), ("", jeq, None, "drop", socket.IPPROTO_UDP),
        ("", ld_h_abs, None, None, 54), ("", jge, None, other6, low),          # source port
        ("", jgt, other6, "accept", high),
        ("dport6", ld_h_abs, None, None, 56), ("", jge, None, "drop", low),     # destination port
        ("", jgt, "drop", "accept", high),
        ("accept", ret, None, None, 0xFFFF),
        ("drop", ret, None, None, 0),
    ]
    where = {label: i for i, (label, *_rest) in enumerate(prog) if label}

    def rel(i, label):
        return 0 if label is None else where[label] - i - 1
    return b"".join(struct.pack("HBBI", code, rel(i, jt), rel(i, jf), k)
                    for i, (_l, code, jt, jf, k) in enumerate(prog))


def attach_udp_port_filter(sock: socket.socket, low: int, high: int, sources_only: bool = False) -> None:
    """Make an AF_PACKET socket see only UDP with a source or destination port in [low, high]
    (sources_only: a source port there, e.g. only what a relay sends from its ports)."""
    code = _bpf_udp_port_range(low, high, sources_only)
    prog = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)     # the kernel copies prog
    try:        # SO_RCVBUF alone stops at net.core.rmem_max (about 200 KB): a busy test outran it
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, MEDIA_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MEDIA_BUFFER)


def kernel_drops(sock: socket.socket) -> int:
    """Packets the kernel could not queue on this AF_PACKET socket since the last call
    (PACKET_STATISTICS: reading resets it)."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


def drop_queued(sock: socket.socket) -> None:
    """Throw away what was queued before the filter was attached (any port, any test slot),
    then leave the socket with a short timeout for the capture loop."""
    sock.setblocking(False)
    try:
        while sock.recv(65535):
            pass
    except BlockingIOError:
        pass
    sock.settimeout(0.2)


# --- SIP through Kamailio, timed by the kernel ------------------------------------------------

SO_TIMESTAMPNS = 35            # asm-generic/socket.h (SCM_TIMESTAMPNS is the same number)
SIP_BUFFER = 64 << 20          # the capture reads in a thread: a long run must fit until it does


@dataclass
class SipPacket:
    ns: int                    # kernel receive timestamp
    inbound: bool              # to Kamailio's port (else from it)
    key: tuple                 # (Call-ID, CSeq number, CSeq method) the message belongs to
    status: int                # 0 for a request


def parse_sip(payload: bytes) -> tuple[tuple, int] | None:
    """(key, status) of a SIP message: key = (Call-ID, CSeq number, method); None if not SIP."""
    head = payload.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head:
        return None
    first = head[0]
    status = int(first[8:11]) if first.startswith(b"SIP/2.0 ") and first[8:11].isdigit() else 0
    call_id = cseq = None
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"call-id", b"i"):
            call_id = value.strip()
        elif name == b"cseq":
            cseq = tuple(value.split())
    if call_id is None or cseq is None or len(cseq) != 2:
        return None
    return (call_id, cseq[0], cseq[1]), status


@dataclass
class SipTimes:
    """SIP to and from one UDP port on lo, each packet with its kernel timestamp.

    response_times_us() pairs every message Kamailio received with the first packet it sent
    for it: for a request, its reply or the request relayed on (same Call-ID and CSeq); for a
    reply, that reply relayed upstream (same status). That is the time Kamailio held the
    message, queueing in its socket included, to the microsecond; SIPp's own scheduling
    (whole milliseconds, and ~4 ms when it is idle) is not in it. Messages Kamailio sends
    nothing for (an absorbed ACK) are not counted."""
    port: int
    packets: list[SipPacket] = field(default_factory=list)
    dropped: int = 0           # packets the kernel could not queue (the figures are then partial)

    def __enter__(self) -> SipTimes:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_udp_port_filter(sock, self.port, self.port)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SIP_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("lo", 0))
        drop_queued(sock)
        kernel_drops(sock)               # counted from here on
        self._sock, self._stop = sock, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        ancillary = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, cmsgs, _flags, addr = self._sock.recvmsg(65535, ancillary)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8:
                continue
            ns = next((sec * 1_000_000_000 + nsec for level, kind, raw in cmsgs
                       if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                       for sec, nsec in [struct.unpack("qq", raw[:16])]), time.time_ns())
            ihl = 40 if data[12:14] == b"\x86\xdd" else (data[14] & 0x0F) * 4      # IPv6, IPv4
            sport, dport = struct.unpack("!HH", data[14 + ihl:14 + ihl + 4])
            parsed = parse_sip(data[14 + ihl + 8:])
            if parsed:
                self.packets.append(SipPacket(ns, dport == self.port, *parsed))

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)                  # the last replies of the run
        self._stop.set()
        self._thread.join(10)
        self.dropped = kernel_drops(self._sock)
        self._sock.close()

    def response_times_us(self) -> list[float]:
        waiting: dict[tuple, list[int]] = {}      # (key, status) -> arrival times not yet answered
        out = []
        for p in sorted(self.packets, key=lambda p: p.ns):
            if p.inbound:
                waiting.setdefault((p.key, p.status), []).append(p.ns)
                continue
            # what Kamailio sent answers the oldest waiting request of its key, or relays
            # the reply of the same status that came in
            for match in ((p.key, 0), (p.key, p.status)) if p.status else ((p.key, 0),):
                queue = waiting.get(match)
                if queue:
                    out.append((p.ns - queue.pop(0)) / 1000)
                    break
        return out
