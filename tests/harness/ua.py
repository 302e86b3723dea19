"""A SIP user agent for the call-limit tests: a trunk or a phone on an address of a test namespace,
driven from the test, that holds calls up until the test hangs them up.

    ua = UA(net.public.ns, "203.0.113.10", (SBC_PUBLIC, SBC_PORT))     # a public gateway's address
    call = ua.call("15550100")              # INVITE; final reply waited for; 2xx ACKed
    call.code, call.reason, call.headers    # what came back (Retry-After, ...)
    ua.bye(call)                            # ends it through the route set
    ringing = ua.invite("15550100")         # INVITE, returns once a 1xx came
    ua.cancel(ringing)                      # CANCEL, then the 487 is waited for and ACKed

A background thread reads the socket: replies go to the waiting call, requests are answered
(BYE, OPTIONS, CANCEL: 200; an INVITE to a phone in `answer` mode: 180 + 200 with SDP, its
Record-Route echoed) and remembered in `received`, unless `dead` is set (then nothing is
answered: a party that has gone away). With `user`/`password` a 407 is answered with digest
credentials, and `register()` works. Plain UDP; documentation addresses only.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

from harness.phone import all_headers, hostport, uri_of
from harness.sipclient import digest_header, header, parse_challenge, status

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@dataclass
class Call:
    ruri: str
    call_id: str
    from_tag: str
    cseq: int = 1
    via: str = ""                          # the INVITE's Via (CANCEL and a failure's ACK reuse it)
    code: int | None = None                # final reply
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    to_header: str = ""
    route_set: list[str] = field(default_factory=list)
    remote_target: str = ""
    provisional: list[int] = field(default_factory=list)
    authorized: bool = False               # the INVITE was sent again with credentials

    @property
    def up(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


@dataclass
class Request:
    method: str
    call_id: str
    at: float
    text: str


class UA:
    def __init__(self, ns, address: str, server: tuple[str, int], user: str = "", password: str = "",
                 domain: str = "", answer: int | None = None, port: int = 0):
        self.sock = ns.socket()
        self.sock.bind((address, port))
        self.sock.settimeout(0.1)
        self.address, self.port = self.sock.getsockname()[:2]
        self.server, self.user, self.password, self.domain = server, user, password, domain or server[0]
        self.answer = answer                   # a phone: answer INVITEs with this code (None: never rung)
        self.dead = False                      # True: answer nothing (the party is gone)
        self.received: list[Request] = []
        self.calls: dict[str, Call] = {}
        self._replies: dict[str, queue.Queue] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    # --- requests the test makes -------------------------------------------------------------

    def call(self, number: str, wait: float = 8.0, host: str | None = None) -> Call:
        """INVITE number@host; returns when its final reply came (code None: nothing came)."""
        call = self.invite(number, host=host, ringing=False)
        self.finish(call, wait)
        return call

    def invite(self, number: str, host: str | None = None, ringing: bool = True, wait: float = 8.0) -> Call:
        """Send the INVITE; with `ringing`, return once a 180 came (or a final reply)."""
        ruri = f"sip:{number}@{host or self.domain}"
        call = Call(ruri, f"{uuid.uuid4().hex}@kemi-limits", uuid.uuid4().hex[:8])
        self._replies[call.call_id] = queue.Queue()
        self.calls[call.call_id] = call
        self._send_invite(call, {})
        if ringing:
            deadline = time.monotonic() + wait
            while call.code is None and 180 not in call.provisional and time.monotonic() < deadline:
                self._next_reply(call, deadline)
        return call

    def finish(self, call: Call, wait: float = 8.0) -> Call:
        """Wait for the INVITE's final reply (answering a 407 once); ACK it."""
        deadline = time.monotonic() + wait
        while call.code is None and time.monotonic() < deadline:
            self._next_reply(call, deadline)
        return call

    def bye(self, call: Call, wait: float = 5.0) -> int | None:
        call.cseq += 1
        self._in_dialog("BYE", call, call.cseq)
        return self._wait_final(call, "BYE", wait)

    def cancel(self, call: Call, wait: float = 5.0) -> Call:
        """CANCEL a ringing call; the INVITE's 487 is waited for (and ACKed)."""
        lines = [f"CANCEL {call.ruri} SIP/2.0", f"Via: {call.via}", "Max-Forwards: 70",
                 f"From: <sip:{self._from_user()}@{self.domain}>;tag={call.from_tag}", f"To: <{call.ruri}>",
                 f"Call-ID: {call.call_id}", f"CSeq: {call.cseq} CANCEL", "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), self.server)
        return self.finish(call, wait)

    def register(self, expires: int = 3600, wait: float = 5.0) -> int | None:
        aor = f"sip:{self.user}@{self.domain}"
        call = Call(f"sip:{self.domain}", f"{uuid.uuid4().hex}@kemi-limits", uuid.uuid4().hex[:8])
        self._replies[call.call_id] = queue.Queue()
        extra = {"Expires": str(expires), "Contact": f"<sip:{self.user}@{self.address}:{self.port}>"}
        for attempt in range(2):
            self.sock.sendto(self._request("REGISTER", call.ruri, call, aor, aor, attempt + 1, extra), self.server)
            reply = self._wait_reply(call, "REGISTER", wait)
            if reply is None or status(reply) not in (401, 407) or attempt:
                return None if reply is None else status(reply)
            challenge = parse_challenge(header(reply, "WWW-Authenticate") or "")
            extra["Authorization"] = digest_header("REGISTER", call.ruri, self.user, self.password, challenge)
        return None

    def requests(self, method: str, call: Call | None = None) -> list[Request]:
        return [r for r in list(self.received)
                if r.method == method and (call is None or r.call_id == call.call_id)]

    # --- building and sending ----------------------------------------------------------------

    def _from_user(self) -> str:
        return self.user or "trunk"

    def _request(self, method: str, ruri: str, call: Call, from_uri: str, to_uri: str, cseq: int,
                 extra: dict, body: str = "") -> bytes:
        call.via = f"SIP/2.0/UDP {self.address}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport"
        lines = [f"{method} {ruri} SIP/2.0", f"Via: {call.via}", "Max-Forwards: 70",
                 f"From: <{from_uri}>;tag={call.from_tag}", f"To: <{to_uri}>", f"Call-ID: {call.call_id}",
                 f"CSeq: {cseq} {method}", *(f"{k}: {v}" for k, v in extra.items())]
        lines += [f"Content-Length: {len(body)}", "", ""]
        return ("\r\n".join(lines) + body).encode()

    def _send_invite(self, call: Call, extra: dict) -> None:
        headers = {"Contact": f"<sip:{self._from_user()}@{self.address}:{self.port}>",
                   "Content-Type": "application/sdp", **extra}
        body = SDP.format(ip=self.address, port=self.port + 2)
        self.sock.sendto(self._request("INVITE", call.ruri, call, f"sip:{self._from_user()}@{self.domain}",
                                       call.ruri, call.cseq, headers, body), self.server)

    def _ack_failure(self, call: Call, to: str) -> None:
        lines = [f"ACK {call.ruri} SIP/2.0", f"Via: {call.via}", "Max-Forwards: 70",
                 f"From: <sip:{self._from_user()}@{self.domain}>;tag={call.from_tag}", f"To: {to}",
                 f"Call-ID: {call.call_id}", f"CSeq: {call.cseq} ACK", "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), self.server)

    def _in_dialog(self, method: str, call: Call, cseq: int) -> None:
        lines = [f"{method} {call.remote_target} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.address}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
                 "Max-Forwards: 70", f"From: <sip:{self._from_user()}@{self.domain}>;tag={call.from_tag}",
                 f"To: {call.to_header}", f"Call-ID: {call.call_id}", f"CSeq: {cseq} {method}"]
        lines += [f"Route: {r}" for r in call.route_set]
        lines += ["Content-Length: 0", "", ""]
        hop = hostport(uri_of(call.route_set[0])) if call.route_set else hostport(call.remote_target)
        self.sock.sendto("\r\n".join(lines).encode(), hop)

    # --- replies -------------------------------------------------------------------------------

    def _next_reply(self, call: Call, deadline: float) -> None:
        reply = self._wait_reply(call, "INVITE", max(0.0, deadline - time.monotonic()))
        if reply is None:
            return
        code = status(reply)
        if code < 200:
            call.provisional.append(code)
            return
        text = reply.decode("utf-8", "replace")
        if code in (401, 407) and self.password and not call.authorized:
            self._ack_failure(call, header(text, "To") or "")
            challenge = parse_challenge(header(text, "Proxy-Authenticate") or "")
            auth = digest_header("INVITE", call.ruri, self.user, self.password, challenge)
            call.cseq += 1
            call.authorized = True
            self._send_invite(call, {"Proxy-Authorization": auth})
            return
        call.code, call.reason = code, text.split("\r\n", 1)[0].split(" ", 2)[2]
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        call.headers.update({k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head)})
        call.to_header = header(text, "To") or ""
        if code >= 300:
            self._ack_failure(call, call.to_header)
            return
        rr = [r.strip() for value in all_headers(text, "Record-Route") for r in value.split(",")]
        call.route_set = list(reversed(rr))
        call.remote_target = uri_of(header(text, "Contact") or "")
        self._in_dialog("ACK", call, call.cseq)

    def _wait_reply(self, call: Call, method: str, wait: float) -> bytes | None:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = self._replies[call.call_id].get(timeout=left)
            except queue.Empty:
                return None
            if (header(reply, "CSeq") or "").split()[-1:] == [method]:
                return reply
        return None

    def _wait_final(self, call: Call, method: str, wait: float) -> int | None:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            reply = self._wait_reply(call, method, left)
            if reply is not None and status(reply) >= 200:
                return status(reply)
        return None

    # --- the background thread -----------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if data.startswith(b"SIP/2.0 "):
                found = self._replies.get(header(data, "Call-ID") or "")
                if found is not None:
                    found.put(data)
                continue
            text = data.decode("utf-8", "replace")
            method = text.split(" ", 1)[0]
            self.received.append(Request(method, header(text, "Call-ID") or "", time.monotonic(), text))
            if self.dead or method == "ACK":
                continue
            if method == "INVITE" and self.answer is not None:
                tag = uuid.uuid4().hex[:8]
                self._reply(text, source, 180, "Ringing", tag)
                self._reply(text, source, self.answer, "OK" if self.answer == 200 else "Busy Here", tag,
                            sdp=self.answer == 200)
            elif method in ("BYE", "OPTIONS", "CANCEL", "INVITE"):
                self._reply(text, source, 200, "OK", None)

    def _reply(self, request: str, source, code: int, reason: str, tag: str | None, sdp: bool = False) -> None:
        lines = [f"SIP/2.0 {code} {reason}", *(f"Via: {v}" for v in all_headers(request, "Via"))]
        to = header(request, "To") or ""
        if tag and ";tag=" not in to:
            to += f";tag={tag}"
        lines += [f"From: {header(request, 'From')}", f"To: {to}", f"Call-ID: {header(request, 'Call-ID')}",
                  f"CSeq: {header(request, 'CSeq')}"]
        if code < 300 and request.startswith("INVITE"):
            lines += [f"Record-Route: {rr}" for rr in all_headers(request, "Record-Route")]
            lines.append(f"Contact: <sip:{self.user or 'ua'}@{self.address}:{self.port}>")
        body = SDP.format(ip=self.address, port=self.port + 2) if sdp else ""
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        with contextlib.suppress(OSError):
            self.sock.sendto(("\r\n".join(lines) + body).encode(), source)


def retry_after(call: Call) -> str | None:
    return call.headers.get("Retry-After")


def wait_for_request(ua: UA, method: str, call: Call, timeout: float) -> float | None:
    """Seconds until `ua` got a `method` request of `call` (None: none within timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if ua.requests(method, call):
            return time.monotonic() - start
        time.sleep(0.05)
    return None

