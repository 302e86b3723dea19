"""Records tests: audio pcaps whose RTCP carries receiver reports (so rtpengine computes MOS),
and reading the records (kemi_acc rows, the kemi_cdr view) back.

Each phone plays its own audio.pcap (its own working folder): RTP every 20 ms with its own
SSRC and, every RTCP_EVERY packets, a sender report that (from the second on) carries a
report block about the peer's SSRC. The block references the peer's previous sender report
(LSR = its NTP's middle 32 bits, both pcaps are written together, so the NTPs are known)
with a delay (DLSR) of one RTCP interval less RTT_S, so rtpengine measures a round trip of
about RTT_S per leg, plus or minus the skew between the two phones' starts (a leg whose
round trip comes out at 0 or less has none, and then neither party gets a MOS: RTT_S leaves
that skew 150 ms). The block says what the
test wants the CDR to show: the cumulative loss and the jitter this party "received".
"""
from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from harness.media import (PCAP_DST_BASE, PCAP_LINKTYPE_ETHERNET, PCAP_MAGIC, PCAP_SRC_BASE, PT_PCMU, RTCP_SR,
                           RTP_VERSION, _ethernet_udp, rtp_packet)
from kemi.records.schema import VIEW_COLUMNS

INTERVAL_S = 0.02              # one RTP packet per 20 ms (PCMU, 160 bytes)
PAYLOAD = 160
RTP_HEADER = 12
CLOCK = 8000
RTCP_EVERY = 10                # an RTCP sender report every 10 RTP packets (0.2 s)
RTT_S = 0.15
NTP_UNIT = 1 << 32
DLSR_UNIT = 65536              # DLSR is in 1/65536 s


@dataclass(frozen=True)
class PartyAudio:
    """What one phone's pcap sends, and what its receiver reports claim."""
    ssrc: int
    ntp_base: int              # NTP timestamp (64 bits) of its first sender report
    packets: int               # RTP packets
    lost: int                  # cumulative loss its reports claim (of the peer's media)
    jitter: int                # interarrival jitter its reports claim, RTP clock units

    @property
    def rtp_bytes(self) -> int:
        return self.packets * (RTP_HEADER + PAYLOAD)

    @property
    def jitter_ms(self) -> int:
        return self.jitter * 1000 // CLOCK

    def ntp(self, k: int) -> int:
        return self.ntp_base + int(k * RTCP_EVERY * INTERVAL_S * NTP_UNIT)


def middle32(ntp: int) -> int:
    return (ntp >> 16) & 0xFFFFFFFF


def sender_report(me: PartyAudio, k: int, sent: int, peer: PartyAudio | None) -> bytes:
    ntp = me.ntp(k)
    body = struct.pack("!IIIIII", me.ssrc, ntp >> 32, ntp & 0xFFFFFFFF, sent * PAYLOAD, sent, sent * PAYLOAD)
    count = 0
    if peer is not None and k > 0:
        count = 1
        dlsr = int((RTCP_EVERY * INTERVAL_S - RTT_S) * DLSR_UNIT)
        fraction = min(255, me.lost * 256 // max(1, peer.packets))
        body += struct.pack("!IB3sIIII", peer.ssrc, fraction, me.lost.to_bytes(3, "big"), sent,
                            me.jitter, middle32(peer.ntp(k - 1)), dlsr)
    return struct.pack("!BBH", RTP_VERSION | count, RTCP_SR, len(body) // 4) + body


def write_audio_pcap(path: Path, me: PartyAudio, peer: PartyAudio | None) -> None:
    frames = []
    for i in range(me.packets):
        at = i * INTERVAL_S
        frames.append((at, PCAP_DST_BASE, rtp_packet(PT_PCMU, i, i * PAYLOAD, me.ssrc, b"\xff" * PAYLOAD)))
        if (i + 1) % RTCP_EVERY == 0:
            k = i // RTCP_EVERY
            frames.append((at + INTERVAL_S / 2, PCAP_DST_BASE + 1, sender_report(me, k, i + 1, peer)))
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, PCAP_LINKTYPE_ETHERNET)]
    for at, dport, payload in frames:
        frame = _ethernet_udp("127.0.0.1", PCAP_SRC_BASE + (dport - PCAP_DST_BASE), "127.0.0.1", dport, payload)
        sec = int(at)
        out.append(struct.pack("<IIII", 1_700_000_000 + sec, int((at - sec) * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))


def write_call_audio(caller_dir: Path, callee_dir: Path, packets: int = 150, ssrc: int = 0x5000,
                     rtcp: bool = True) -> tuple[PartyAudio, PartyAudio]:
    """audio.pcap in each phone's folder; (caller's, callee's). rtcp=False: no report blocks."""
    caller = PartyAudio(ssrc, 3_900_000_000 * NTP_UNIT, packets, lost=2, jitter=40)
    callee = PartyAudio(ssrc + 1, 3_900_001_000 * NTP_UNIT, packets, lost=5, jitter=80)
    write_audio_pcap(caller_dir / "audio.pcap", caller, callee if rtcp else None)
    write_audio_pcap(callee_dir / "audio.pcap", callee, caller if rtcp else None)
    return caller, callee


# --- the records, read back ----------------------------------------------------------------


# the view's times as Unix seconds (the view shows DATETIMEs), for comparing with the test's clock
TIMES = ("start_ts", "answer_ts", "end_ts")


def cdrs(db, call_id: str) -> list[dict]:
    """The kemi_cdr rows of one call (db: the harness's TestDatabase, or anything with query())."""
    cols = ", ".join([*VIEW_COLUMNS, "UNIX_TIMESTAMP(start_time)", "UNIX_TIMESTAMP(answer_time)",
                      "UNIX_TIMESTAMP(end_time)"])
    rows = db.query(f"SELECT {cols} FROM kemi_cdr WHERE call_id = '{sql_quote(call_id)}' ORDER BY id;")
    names = (*VIEW_COLUMNS, *TIMES)
    return [dict(zip(names, [None if v == "NULL" else v for v in row], strict=True)) for row in rows]


def acc_rows(db, call_id: str) -> list[dict]:
    cols = ("method", "from_tag", "to_tag", "sip_code", "node", "request_time", "time_exact")
    rows = db.query(f"SELECT {', '.join(cols)} FROM kemi_acc WHERE callid = '{sql_quote(call_id)}' ORDER BY id;")
    return [dict(zip(cols, [None if v == "NULL" else v for v in row], strict=True)) for row in rows]


def sql_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def wait_rows(fetch, count: int, timeout: float = 10.0, interval: float = 0.2):
    """fetch() until it returns at least `count` rows (or the time is up): the last result."""
    deadline = time.monotonic() + timeout
    while True:
        rows = fetch()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(interval)


def logged(result, key: str) -> dict[str, str]:
    """The fields of the first "key=value call-id=... tag=..." (or "key call-id=...") line a
    SIPp run logged."""
    for line in result.log:
        if line.startswith(key):
            return dict(re.findall(r"(\S+?)=(\S+)", line))
    return {}


def close_to(value, expected: float, tolerance: float) -> bool:
    return value is not None and abs(float(value) - expected) <= tolerance
