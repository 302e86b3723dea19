"""Send one SIP datagram and collect what comes back (for checks SIPp cannot express)."""
from __future__ import annotations

import socket
import time
import uuid


def build(method: str, ruri: str, via_host: str, via_port: int, *, headers: dict | None = None,
          body: str = "", from_uri: str = "sip:tester@127.0.0.1", to_uri: str | None = None) -> bytes:
    hdrs = {"Via": f"SIP/2.0/UDP {via_host}:{via_port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
            "Max-Forwards": "70", "From": f"<{from_uri}>;tag={uuid.uuid4().hex[:8]}",
            "To": f"<{to_uri or ruri}>", "Call-ID": f"{uuid.uuid4().hex}@test",
            "CSeq": f"1 {method}", "User-Agent": "kemi-test"}
    hdrs.update(headers or {})
    lines = [f"{method} {ruri} SIP/2.0", *(f"{k}: {v}" for k, v in hdrs.items() if v is not None),
             f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


def exchange(server: tuple[str, int], method: str = "", ruri: str = "", *, raw: bytes | None = None,
             local_ip: str = "127.0.0.1", wait: float = 2.0, **fields) -> list[str]:
    """Send a request built from the arguments (or `raw` bytes) from local_ip; return every
    datagram received until a final reply or `wait` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((local_ip, 0))
        if raw is None:
            raw = build(method, ruri, local_ip, s.getsockname()[1], **fields)
        s.sendto(raw, server)
        replies, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                replies.append(s.recv(65535).decode(errors="replace"))
            except socket.timeout:
                break
            if replies[-1].startswith("SIP/2.0 ") and status(replies[-1]) >= 200:
                break
        return replies


def status(reply: str) -> int:
    return int(reply.split(" ", 2)[1])
