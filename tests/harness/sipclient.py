"""A small SIP client with digest auth (qop=auth) over UDP or TLS, for requests SIPp cannot
shape: injection payloads, raw bytes, foreign R-URIs, a TLS REGISTER (Debian's SIPp is built
without OpenSSL, so `sipp -t l1` is not available here).
"""
from __future__ import annotations

import hashlib
import re
import socket
import ssl
import time
import uuid

_AUTH_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogateescape")).hexdigest()


def parse_challenge(header_value: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _AUTH_PARAM.finditer(header_value)}


def digest_header(method: str, uri: str, user: str, password: str, challenge: dict, nc: int = 1) -> str:
    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    cnonce = uuid.uuid4().hex[:16]
    if "auth" in challenge.get("qop", "").split(","):
        response = md5(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={nc:08x}, cnonce="{cnonce}"'
    else:
        response, extra = md5(f"{ha1}:{nonce}:{ha2}"), ""
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5{extra}')


def header(reply: bytes | str, name: str) -> str | None:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    for line in text.split("\r\n")[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def status(reply: bytes | str) -> int:
    text = reply.decode("ascii", "replace") if isinstance(reply, bytes) else reply
    return int(text.split(" ", 2)[1])


def status_line(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return text.split("\r\n", 1)[0]


class SipClient:
    """One local socket (UDP, or a TLS connection) talking to one SIP server."""

    def __init__(self, server: tuple[str, int], local_ip: str = "127.0.0.1", transport: str = "udp",
                 cafile: str | None = None, timeout: float = 3.0, sock: socket.socket | None = None):
        """`sock`: a UDP socket of the caller's (e.g. made in a network namespace), bound here."""
        self.server, self.transport, self.timeout = server, transport, timeout
        if transport == "udp":
            self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((local_ip, 0))
        else:
            raw = socket.create_connection(server, timeout=timeout, source_address=(local_ip, 0))
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.check_hostname = False if cafile is None else ctx.check_hostname
            self.sock = ctx.wrap_socket(raw, server_hostname=server[0])
            self.tls_version = self.sock.version()
            self.peer_cert = self.sock.getpeercert()
        self.local = self.sock.getsockname()[:2]
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def via_proto(self) -> str:
        return "UDP" if self.transport == "udp" else "TLS"

    def build(self, method: str, ruri: str, *, from_uri: str, to_uri: str | None = None,
              call_id: str | None = None, cseq: int = 1, headers: dict | None = None,
              body: bytes = b"", from_tag: str | None = None) -> bytes:
        host, port = self.local
        hdrs = {"Via": f"SIP/2.0/{self.via_proto} {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
                "Max-Forwards": "70", "From": f"<{from_uri}>;tag={from_tag or uuid.uuid4().hex[:8]}",
                "To": f"<{to_uri or ruri}>", "Call-ID": call_id or f"{uuid.uuid4().hex}@kemi-test",
                "CSeq": f"{cseq} {method}", "User-Agent": "kemi-test-client",
                "Contact": f"<sip:{host}:{port};transport={self.transport}>"}
        for key, value in (headers or {}).items():
            hdrs[key] = value
        self.last_via = hdrs["Via"]
        lines = [f"{method} {ruri} SIP/2.0", *(f"{k}: {v}" for k, v in hdrs.items() if v is not None),
                 f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive(self, wait: float | None = None) -> bytes | None:
        """The next message, or None after `wait` seconds of silence."""
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                if self.transport == "udp":
                    return self.sock.recv(65535)
                if (msg := self._next_stream_message()) is not None:
                    return msg
                chunk = self.sock.recv(65535)
                if not chunk:
                    return None
                self._buffer += chunk
            except (socket.timeout, ssl.SSLError, TimeoutError):
                return None
        return None

    def _next_stream_message(self) -> bytes | None:
        head, sep, rest = self._buffer.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = int(header(head + b"\r\n", "Content-Length") or header(head + b"\r\n", "l") or 0)
        if len(rest) < length:
            return None
        self._buffer = rest[length:]
        return head + sep + rest[:length]

    def final_reply(self, wait: float | None = None, call_id: str | None = None) -> bytes | None:
        """The next final reply (to `call_id` only, when given: a late answer to an earlier
        request that timed out is skipped)."""
        while (reply := self.receive(wait)) is not None:
            if reply.startswith(b"SIP/2.0 ") and status(reply) >= 200 and (
                    call_id is None or header(reply, "Call-ID") == call_id):
                return reply
        return None

    def request(self, method: str, ruri: str, *, from_uri: str, user: str | None = None,
                password: str | None = None, to_uri: str | None = None, headers: dict | None = None,
                body: bytes = b"", wait: float | None = None) -> bytes | None:
        """Send; answer one 401/407 with digest credentials when a password is given; ACK
        every final INVITE reply that is not 2xx. Returns the last final reply (None: silence)."""
        call_id, from_tag = f"{uuid.uuid4().hex}@kemi-test", uuid.uuid4().hex[:8]
        common = dict(from_uri=from_uri, to_uri=to_uri, call_id=call_id, from_tag=from_tag, body=body)
        self.send(self.build(method, ruri, cseq=1, headers=headers, **common))
        reply = self.final_reply(wait, call_id)
        if reply is None:
            return None
        self._ack_failure(method, ruri, reply, 1, common, self.last_via)
        if status(reply) in (401, 407) and password is not None:
            name = "WWW-Authenticate" if status(reply) == 401 else "Proxy-Authenticate"
            cred = "Authorization" if status(reply) == 401 else "Proxy-Authorization"
            challenge = parse_challenge(header(reply, name) or "")
            auth = digest_header(method, ruri, user, password, challenge)
            self.send(self.build(method, ruri, cseq=2, headers={**(headers or {}), cred: auth}, **common))
            via = self.last_via
            reply = self.final_reply(wait, call_id)
            if reply is not None:
                self._ack_failure(method, ruri, reply, 2, common, via)
        return reply

    def _ack_failure(self, method, ruri, reply, cseq, common, via):
        if method == "INVITE" and status(reply) >= 300:
            to = header(reply, "To")
            ack = self.build("ACK", ruri, cseq=cseq, headers={"Via": via, "To": to, "CSeq": f"{cseq} ACK"},
                             **{**common, "body": b""})
            self.send(ack)
