"""Phones for the cluster tests, in this process, with sockets in a network namespace.

    Callee   a registered phone's UAS: answers INVITE with 180 + 200 (Record-Route echoed),
             BYE with 200; remembers every request it got (method, Call-ID, source, time)
    Caller   REGISTERs and calls with digest auth (harness/sipclient.py), keeps each answered
             call's dialog (route set, remote target, tags) so it can send the BYE later,
             through whichever node then holds the Route's address

Everything is plain UDP; sockets come from `Namespace.socket()`, so the phone lives on an
address of a test namespace while the test code runs here.
"""
from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from harness.sipclient import SipClient, header, parse_challenge, digest_header, status

_RR = re.compile(r"^(?:record-route)\s*:\s*(.*)$", re.I | re.M)


def all_headers(text: str, name: str) -> list[str]:
    out = []
    for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            out.append(value.strip())
    return out


def uri_of(name_addr: str) -> str:
    m = re.search(r"<([^>]+)>", name_addr)
    return m.group(1) if m else name_addr.split(";")[0].strip()


def hostport(uri: str) -> tuple[str, int]:
    m = re.match(r"^sips?:(?:[^@]*@)?([^:;>]+)(?::(\d+))?", uri)
    return m.group(1), int(m.group(2) or 5060)


@dataclass
class Received:
    method: str
    call_id: str
    source: tuple[str, int]
    at: float
    text: str


class Callee:
    """A phone's UAS on `address:port` inside a namespace, answering until stopped."""

    def __init__(self, sock: socket.socket, address: str, port: int, answer: int = 200):
        self.sock, self.address, self.port, self.answer = sock, address, port, answer
        sock.bind((address, port))
        sock.settimeout(0.2)
        self.received: list[Received] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def contact(self) -> str:
        return f"{self.address}:{self.port}"

    def requests(self, method: str) -> list[Received]:
        return [r for r in list(self.received) if r.method == method]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            text = data.decode("utf-8", "replace")
            if text.startswith("SIP/2.0"):
                continue
            method = text.split(" ", 1)[0]
            self.received.append(Received(method, header(text, "Call-ID") or "", source, time.monotonic(), text))
            if method == "INVITE":
                tag = uuid.uuid4().hex[:8]
                self._reply(text, source, 180, "Ringing", tag)
                if self.answer == 200:
                    self._reply(text, source, 200, "OK", tag, sdp=True)
                else:
                    self._reply(text, source, self.answer, "Busy Here", tag)
            elif method in ("BYE", "CANCEL", "OPTIONS"):
                self._reply(text, source, 200, "OK", None)

    def _reply(self, request: str, source, code: int, reason: str, tag: str | None, sdp: bool = False) -> None:
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v}" for v in all_headers(request, "Via")]
        to = header(request, "To") or ""
        if tag and ";tag=" not in to:
            to += f";tag={tag}"
        lines += [f"From: {header(request, 'From')}", f"To: {to}", f"Call-ID: {header(request, 'Call-ID')}",
                  f"CSeq: {header(request, 'CSeq')}"]
        if code < 300 and request.startswith("INVITE"):
            lines += [f"Record-Route: {rr}" for rr in all_headers(request, "Record-Route")]
            lines.append(f"Contact: <sip:{self.address}:{self.port}>")
        body = ""
        if sdp:
            body = (f"v=0\r\no=- 2 2 IN IP4 {self.address}\r\ns=-\r\nc=IN IP4 {self.address}\r\n"
                    f"t=0 0\r\nm=audio {self.port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        try:
            self.sock.sendto(("\r\n".join(lines) + body).encode(), source)
        except OSError:
            pass


@dataclass
class Dialog:
    call_id: str
    from_header: str
    to_header: str
    remote_target: str
    route_set: list[str]
    cseq: int = 2
    established: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def next_hop(self) -> tuple[str, int]:
        """Where an in-dialog request goes: the first Route, else the remote target."""
        return hostport(uri_of(self.route_set[0]) if self.route_set else self.remote_target)


class Caller(SipClient):
    """A phone that registers and calls through `server` (a node or the floating address)."""

    def __init__(self, sock: socket.socket, local_ip: str, server: tuple[str, int], user: str, password: str,
                 domain: str, timeout: float = 3.0):
        super().__init__(server, local_ip=local_ip, sock=sock, timeout=timeout)
        self.user, self.password, self.domain = user, password, domain

    def register(self, contact: str, expires: int = 3600, server: tuple[str, int] | None = None,
                 user: str | None = None) -> bytes | None:
        """REGISTER `user` (default: this phone's) with Contact sip:USER@contact; the final reply."""
        if server:
            self.server = server
        user = user or self.user
        aor = f"sip:{user}@{self.domain}"
        headers = {"Expires": str(expires), "Contact": f"<sip:{user}@{contact}>" if contact else None}
        return self.request("REGISTER", f"sip:{self.domain}", from_uri=aor, to_uri=aor, user=user,
                            password=self.password, headers=headers)

    def bindings(self, user: str, server: tuple[str, int]) -> list[str] | None:
        """The contacts `server` lists for `user` (a REGISTER without Contact asks), None: no answer."""
        self.server = server
        aor = f"sip:{user}@{self.domain}"
        reply = self.request("REGISTER", f"sip:{self.domain}", from_uri=aor, to_uri=aor, user=user,
                             password=self.password, headers={"Contact": None})
        if reply is None or status(reply) != 200:
            return None
        return [uri_of(c) for c in all_headers(reply.decode("utf-8", "replace"), "Contact")]

    def call(self, callee: str, server: tuple[str, int] | None = None, wait: float = 5.0) -> tuple[int | None, Dialog | None]:
        """INVITE callee@domain (digest auth); on 200 the ACK is sent and the Dialog returned."""
        if server:
            self.server = server
        ruri = f"sip:{callee}@{self.domain}"
        call_id, from_tag = f"{uuid.uuid4().hex}@kemi-cluster", uuid.uuid4().hex[:8]
        host, port = self.local
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
               f"m=audio {port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()
        base = {"Content-Type": "application/sdp", "Contact": f"<sip:{self.user}@{host}:{port}>"}
        from_uri = f"sip:{self.user}@{self.domain}"
        common = dict(from_uri=from_uri, to_uri=ruri, call_id=call_id, from_tag=from_tag, body=sdp)
        reply, cseq = None, 1
        self.send(self.build("INVITE", ruri, cseq=1, headers=base, **common))
        reply = self._final(wait, call_id=call_id)
        if reply is None:
            return None, None
        if status(reply) == 407:
            self._ack_failure("INVITE", ruri, reply, 1, common, self.last_via)
            challenge = parse_challenge(header(reply, "Proxy-Authenticate") or "")
            auth = digest_header("INVITE", ruri, self.user, self.password, challenge)
            cseq = 2
            self.send(self.build("INVITE", ruri, cseq=2, headers={**base, "Proxy-Authorization": auth}, **common))
            reply = self._final(wait, call_id=call_id)
            if reply is None:
                return None, None
        code = status(reply)
        if code >= 300:
            self._ack_failure("INVITE", ruri, reply, cseq, common, self.last_via)
            return code, None
        text = reply.decode("utf-8", "replace")
        route_set = list(reversed([rr for value in all_headers(text, "Record-Route") for rr in value.split(",")]))
        dialog = Dialog(call_id, f"<{from_uri}>;tag={from_tag}", header(text, "To") or "",
                        uri_of(header(text, "Contact") or ""), [r.strip() for r in route_set], cseq + 1,
                        time.monotonic())
        self._in_dialog("ACK", dialog, cseq=cseq)
        return code, dialog

    def bye(self, dialog: Dialog, wait: float = 5.0) -> int | None:
        """BYE through the dialog's route set (its first hop, whoever holds that address now)."""
        self._in_dialog("BYE", dialog, cseq=dialog.cseq)
        reply = self._final(wait, "BYE", dialog.call_id)
        return None if reply is None else status(reply)

    def _in_dialog(self, method: str, dialog: Dialog, cseq: int) -> None:
        host, port = self.local
        lines = [f"{method} {dialog.remote_target} SIP/2.0",
                 f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
                 "Max-Forwards: 70", f"From: {dialog.from_header}", f"To: {dialog.to_header}",
                 f"Call-ID: {dialog.call_id}", f"CSeq: {cseq} {method}"]
        lines += [f"Route: {r}" for r in dialog.route_set]
        lines += ["Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), dialog.next_hop)

    def _final(self, wait: float, method: str = "INVITE", call_id: str | None = None) -> bytes | None:
        """The next final reply to a `method` request of `call_id` (late ones to others are skipped)."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is None:
                return None
            cseq = (header(reply, "CSeq") or "").split()
            if reply.startswith(b"SIP/2.0 ") and status(reply) >= 200 and cseq[-1:] == [method] and (
                    call_id is None or header(reply, "Call-ID") == call_id):
                return reply
        return None
