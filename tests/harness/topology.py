"""The topology-hiding leak check: every SIP message the SBC sent on each NIC, header by header.

A kernel-filtered capture in the SBC namespace (harness.sbc_media.NetnsCapture on the SBC's SIP
port) sees each message once, on the NIC it left or arrived on. For each side S, the check
takes every message the SBC sent to S (source = the SBC's address on S) and looks at each line
of it (start line, every header, every SDP line) for what belongs to the other side O:

* any IPv4 address of O's network (O's parties and gateways, and the SBC's own address on O);
* any Call-ID a party of O used (read from the messages the SBC received from O).

A Via, Record-Route or Contact of the other side names an address of O's network, so they are
caught by the first rule; a Call-ID made on O ("1-4711@198.51.100.10", or any other) by the
second. Also checked, per dialog on each side: every message of it carries one and the same
pair of From / To URIs and the Call-ID that side uses (the parties get back exactly what they
know).
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass

START_LINE_RE = re.compile(r"^(?:SIP/2\.0 \d{3} |[A-Z]+ \S+ SIP/2\.0\r\n)")
IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
URI_IN_HEADER_RE = re.compile(r"<([^>]*)>|(sips?:[^;,\s>]+)")
COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
           "c": "content-type"}


@dataclass
class SipMessage:
    index: int
    src: tuple[str, int]
    dst: tuple[str, int]
    text: str
    at: float = 0.0              # time.monotonic() when the capture read it

    @property
    def start(self) -> str:
        return self.text.split("\r\n", 1)[0]

    @property
    def head_and_body(self) -> tuple[list[str], list[str]]:
        head, _, body = self.text.partition("\r\n\r\n")
        return head.split("\r\n")[1:], [line for line in body.split("\r\n") if line]

    def headers(self, name: str) -> list[str]:
        name = name.lower()
        out = []
        for line in self.head_and_body[0]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if COMPACT.get(key, key) == name:
                out.append(value.strip())
        return out

    @property
    def call_id(self) -> str:
        values = self.headers("call-id")
        return values[0] if values else ""

    @property
    def is_reply(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def kind(self) -> str:
        """"INVITE", "ACK", ... for requests; "200/INVITE", "487/INVITE", ... for replies."""
        cseq = (self.headers("cseq") or [" ?"])[0].split()[-1]
        return f"{self.start.split()[1]}/{cseq}" if self.is_reply else self.start.split()[0]

    def uri_pair(self) -> frozenset[str]:
        """The From and To URIs (without display names and parameters after the URI)."""
        out = []
        for name in ("from", "to"):
            value = (self.headers(name) or [""])[0]
            m = URI_IN_HEADER_RE.search(value)
            out.append((m.group(1) or m.group(2)) if m else value)
        return frozenset(out)

    def describe(self) -> str:
        return f"#{self.index} {self.start} ({self.src[0]}:{self.src[1]} -> {self.dst[0]}:{self.dst[1]})"


@dataclass(frozen=True)
class Side:
    name: str
    sbc_address: str
    network: ipaddress.IPv4Network


class Traffic:
    """The SIP messages of a capture, by side."""

    def __init__(self, packets, sides: list[Side]):
        self.sides = sides
        texts = [(p, p.payload.decode("utf-8", "replace")) for p in packets]
        self.messages = [SipMessage(i, p.src, p.dst, text, p.at) for i, (p, text) in enumerate(texts)
                         if START_LINE_RE.match(text)]

    def side(self, name: str) -> Side:
        return next(s for s in self.sides if s.name == name)

    def other(self, side: Side) -> Side:
        return next(s for s in self.sides if s is not side)

    def sent_to(self, side: Side) -> list[SipMessage]:
        """What the SBC sent on this side's NIC."""
        return [m for m in self.messages if m.src[0] == side.sbc_address]

    def received_from(self, side: Side) -> list[SipMessage]:
        """What the parties on this side sent to the SBC."""
        return [m for m in self.messages if m.dst[0] == side.sbc_address
                and ipaddress.ip_address(m.src[0]) in side.network]

    def kinds(self, side: Side) -> Counter:
        return Counter(m.kind for m in self.sent_to(side))

    def leaks(self) -> list[str]:
        """Every line of every message sent to a side that names the other side (see the module doc)."""
        found = []
        for side in self.sides:
            other = self.other(side)
            their_call_ids = {m.call_id for m in self.received_from(other) if m.call_id}
            for message in self.sent_to(side):
                head, body = message.head_and_body
                for line in [message.start, *head, *body]:
                    for address in IPV4_RE.findall(line):
                        try:
                            if ipaddress.ip_address(address) in other.network:
                                found.append(f"{message.describe()} to {side.name}: {other.name} address "
                                             f"{address} in {line!r}")
                        except ValueError:
                            continue
                    for call_id in their_call_ids:
                        if call_id in line:
                            found.append(f"{message.describe()} to {side.name}: {other.name} Call-ID "
                                         f"{call_id!r} in {line!r}")
        return found

    def inconsistencies(self) -> list[str]:
        """Per side and Call-ID: one From/To pair in everything exchanged, and no Call-ID sent to
        the side that its parties never used."""
        found = []
        for side in self.sides:
            used = {m.call_id for m in self.received_from(side)}
            pairs: dict[str, set[frozenset[str]]] = {}
            for message in self.sent_to(side) + self.received_from(side):
                pairs.setdefault(message.call_id, set()).add(message.uri_pair())
            for message in self.sent_to(side):
                if message.call_id not in used:
                    found.append(f"{message.describe()} to {side.name}: Call-ID {message.call_id!r}, which no "
                                 f"party there ever used")
            for call_id, seen in pairs.items():
                if len(seen) > 1:
                    found.append(f"{side.name}, Call-ID {call_id!r}: From/To differ between messages: "
                                 f"{sorted(sorted(p) for p in seen)}")
        return found
