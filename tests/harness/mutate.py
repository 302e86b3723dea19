"""Malformed SIP for the robustness tests: seeded mutations of valid requests.

Every message is derived from a valid REGISTER, INVITE (with SDP) or OPTIONS by one to
three of: byte flips, truncation, header duplication, a huge or broken Content-Length,
inserted control/non-ASCII bytes, an oversized header. Same seed, same messages.
"""
from __future__ import annotations

import random
import uuid

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
HUGE_LENGTHS = ["4294967296", "2147483647", "18446744073709551617", "999999999999", "-1", "1e9", "0x10", "", "65536"]


def seeds(target: str, local: str) -> list[bytes]:
    def request(method: str, ruri: str, extra: list[str], body: str = "") -> bytes:
        tag = uuid.uuid4().hex[:8]
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{tag};rport",
                 "Max-Forwards: 70", f"From: \"Fuzz\" <sip:2001@{target}>;tag={tag}",
                 f"To: <sip:2002@{target}>", f"Call-ID: fuzz-{tag}@{local}", f"CSeq: 1 {method}",
                 f"Contact: <sip:2001@{local}>", "User-Agent: kemi-fuzz", *extra,
                 f"Content-Length: {len(body)}", "", body]
        return "\r\n".join(lines).encode()
    return [request("REGISTER", f"sip:{target}", ["Expires: 600"]),
            request("INVITE", f"sip:2002@{target}", ["Content-Type: application/sdp", "Allow: INVITE, ACK, BYE"], SDP),
            request("OPTIONS", f"sip:2002@{target}", ["Accept: application/sdp"])]


def flip_bytes(rng: random.Random, msg: bytes) -> bytes:
    data = bytearray(msg)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncate(rng: random.Random, msg: bytes) -> bytes:
    return msg[:rng.randrange(1, len(msg))] if len(msg) > 1 else msg


def duplicate_header(rng: random.Random, msg: bytes) -> bytes:
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if len(lines) < 2:
        return msg
    i = rng.randrange(1, len(lines))
    lines[i + 1:i + 1] = [lines[i]] * rng.randint(1, 60)
    return b"\r\n".join(lines) + sep + body


def huge_content_length(rng: random.Random, msg: bytes) -> bytes:
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"content-length")]
    lines.append(b"Content-Length: " + rng.choice(HUGE_LENGTHS).encode())
    return b"\r\n".join(lines) + sep + body


def insert_bytes(rng: random.Random, msg: bytes) -> bytes:
    junk = rng.choice([b"\x00", b"\r", b"\n", b"\xff\xfe", b"\xc3\x28", b"%00", b"\t", b";;;", b"<<>>", b"\x7f"])
    at = rng.randrange(len(msg))
    return msg[:at] + junk * rng.randint(1, 5) + msg[at:]


def oversized_header(rng: random.Random, msg: bytes) -> bytes:
    head, sep, body = msg.partition(b"\r\n\r\n")
    name = rng.choice([b"Subject", b"Via", b"From", b"X-Long", b"Contact"])
    value = bytes(rng.choice(b"abcdefghij0123456789;=@:<>") for _ in range(rng.randint(1000, 60000)))
    return head + b"\r\n" + name + b": " + value + sep + body


MUTATIONS = [flip_bytes, truncate, duplicate_header, huge_content_length, insert_bytes, oversized_header]
# the four the issue names come first and most often
WEIGHTS = [4, 3, 3, 3, 2, 1]


def mutants(count: int, target: str, local: str, seed: int = 4475):
    """`count` mutated messages: (mutation names, bytes)."""
    rng = random.Random(seed)
    base = seeds(target, local)
    for _ in range(count):
        msg = rng.choice(base)
        names = []
        for mutation in rng.choices(MUTATIONS, WEIGHTS, k=rng.randint(1, 3)):
            msg = mutation(rng, msg)
            names.append(mutation.__name__)
        yield names, msg[:65000]
