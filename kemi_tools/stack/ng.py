"""A small client for rtpengine's ng control protocol (bencode over UDP).

Kamailio talks ng through its rtpengine module; this client is for everything else: the
stack runner (wait until a started rtpengine answers `ping`) and the tests (read
per-call packet counters with `query`, count open sessions with `list`).

    ng = NgClient(("127.0.0.1", 2223))
    ng.ping()                               # True when the daemon answers "pong"
    ng.command("list")["calls"]             # Call-IDs of the open sessions

A message is "<cookie> <bencoded dictionary>"; the reply carries the same cookie.
"""
from __future__ import annotations

import os
import socket

# --- bencode (BEP 3): integers, byte strings, lists, dictionaries ----------------------


class BencodeError(ValueError):
    pass


def bencode(value) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return b"%d:%s" % (len(value), bytes(value))
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise BencodeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes):
    """Decode one bencoded value; byte strings come back as str (UTF-8, lossless fallback)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, pos: int):
    if pos >= len(data):
        raise BencodeError("truncated")
    lead = data[pos:pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if lead == b"l":
        items, pos = [], pos + 1
        while data[pos:pos + 1] != b"e":
            item, pos = _decode(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        table, pos = {}, pos + 1
        while data[pos:pos + 1] != b"e":
            key, pos = _decode(data, pos)
            table[key], pos = _decode(data, pos)
        return table, pos + 1
    if lead.isdigit():
        colon = data.index(b":", pos)
        size = int(data[pos:colon])
        raw = data[colon + 1:colon + 1 + size]
        if len(raw) != size:
            raise BencodeError("truncated string")
        try:
            return raw.decode(), colon + 1 + size
        except UnicodeDecodeError:
            return raw.decode("latin-1"), colon + 1 + size
    raise BencodeError(f"unexpected {lead!r} at {pos}")


# --- the client ------------------------------------------------------------------------


class NgError(RuntimeError):
    """rtpengine answered result=error (or not at all)."""


class NgClient:
    def __init__(self, address: tuple[str, int], timeout: float = 1.0, socket_factory=None):
        """`socket_factory(family)`: a UDP socket to send from (default: a new one here), e.g.
        one made inside a test's network namespace."""
        self.address = address
        self.timeout = timeout
        self.socket_factory = socket_factory

    def command(self, command: str, **args) -> dict:
        """Send one command; the reply dictionary (NgError on error or no answer)."""
        reply = self.request(command, **args)
        if reply.get("result") == "error":
            raise NgError(f"rtpengine {self.address[0]}:{self.address[1]} {command}: "
                          f"{reply.get('error-reason', 'error')}")
        return reply

    def request(self, command: str, **args) -> dict:
        cookie = os.urandom(6).hex().encode()
        body = {"command": command, **{k.replace("_", "-"): v for k, v in args.items()}}
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        made = self.socket_factory(family) if self.socket_factory else socket.socket(family, socket.SOCK_DGRAM)
        with made as s:
            s.settimeout(self.timeout)
            try:
                s.connect(self.address)
                s.send(cookie + b" " + bencode(body))
                while True:
                    data = s.recv(1 << 20)
                    got, _, payload = data.partition(b" ")
                    if got == cookie:
                        return bdecode(payload)
            except OSError as exc:       # timeout, connection refused (ICMP), ...
                raise NgError(f"rtpengine {self.address[0]}:{self.address[1]} {command}: "
                              f"no answer ({exc})") from None

    def ping(self) -> bool:
        try:
            return self.command("ping").get("result") == "pong"
        except NgError:
            return False

    # --- what the tests read -------------------------------------------------------------

    def calls(self) -> list[str]:
        """Call-IDs of the sessions rtpengine holds."""
        return list(self.command("list", limit=1000).get("calls", []))

    def open_sessions(self) -> int:
        """Sessions this rtpengine owns right now (statistics: currentstatistics.sessionsown)."""
        stats = self.command("statistics")["statistics"]["currentstatistics"]
        return int(stats["sessionsown"])

    def query(self, call_id: str) -> dict:
        return self.command("query", call_id=call_id)
