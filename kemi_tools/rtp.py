"""RTP and RTCP packets, and pcap files of them for SIPp's play_pcap_audio / play_pcap_video.

The media tests (tests/harness/media.py) and make soak (bench/soak/) have SIPp phones send
real media through rtpengine with them: audio.pcap and video.pcap in SIPp's working directory
are what the media scenarios of kemi_tools/scenarios/ play.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

RTP_VERSION = 0x80
PT_PCMU = 0
PT_H264 = 96
RTCP_SR = 200
RTCP_TYPES = range(200, 205)
PCAP_MAGIC, PCAP_LINKTYPE_ETHERNET = 0xA1B2C3D4, 1
# the ports packets have in the pcap: SIPp replaces them, keeping each packet's offset from
# the lowest destination port (RTP +0, RTCP +1)
PCAP_DST_BASE, PCAP_SRC_BASE = 6000, 7000


def rtp_packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", RTP_VERSION, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def rtcp_sender_report(ssrc: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    ntp = int((time.time() + 2208988800) * (1 << 32))
    body = struct.pack("!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts, packets, octets)
    return struct.pack("!BBH", RTP_VERSION, RTCP_SR, len(body) // 4) + body


@dataclass
class Stream:
    """What one play of a pcap sends: RTP and RTCP packet counts."""
    rtp: int
    rtcp: int


def write_stream_pcap(path: Path, pt: int, clock: int, packets: int, rtcp_every: int,
                      payload_size: int, ssrc: int, rtcp_mux: bool = False, interval: float = 0.02) -> Stream:
    """A pcap with `packets` RTP packets every `interval` s and an RTCP SR every `rtcp_every`."""
    frames, rtcp = [], 0
    ts_step = int(clock * interval)
    for i in range(packets):
        at = i * interval
        frames.append((at, PCAP_DST_BASE, rtp_packet(pt, i, i * ts_step, ssrc, b"\xff" * payload_size)))
        if (i + 1) % rtcp_every == 0:
            sr = rtcp_sender_report(ssrc, i * ts_step, i + 1, (i + 1) * payload_size)
            frames.append((at + interval / 2, PCAP_DST_BASE + (0 if rtcp_mux else 1), sr))
            rtcp += 1
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, PCAP_LINKTYPE_ETHERNET)]
    for at, dport, payload in frames:
        frame = _ethernet_udp("127.0.0.1", PCAP_SRC_BASE + (dport - PCAP_DST_BASE), "127.0.0.1", dport, payload)
        sec = int(at)
        out.append(struct.pack("<IIII", 1_700_000_000 + sec, int((at - sec) * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return Stream(rtp=packets, rtcp=rtcp)


def _ethernet_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    csum = _checksum(ip)
    ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


AUDIO = dict(pt=PT_PCMU, clock=8000, packets=50, rtcp_every=10, payload_size=160)
VIDEO = dict(pt=PT_H264, clock=90000, packets=50, rtcp_every=10, payload_size=400)


def write_call_pcaps(workdir: Path, ssrc_base: int, rtcp_mux: bool = False) -> dict[str, Stream]:
    """audio.pcap and video.pcap (the names the media scenarios play) in SIPp's workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {"audio": write_stream_pcap(workdir / "audio.pcap", ssrc=ssrc_base, rtcp_mux=rtcp_mux, **AUDIO),
            "video": write_stream_pcap(workdir / "video.pcap", ssrc=ssrc_base + 1, rtcp_mux=rtcp_mux, **VIDEO)}
