"""Overload: new requests offered well above what Kamailio can serve, and what each caller got.

offer() sends REGISTERs without credentials at a steady rate for a bounded time, each a new
transaction (its own Call-ID and branch) from a few sockets, and waits a bounded time for the
replies. Each request ends one of three ways:

    served      the challenge (401) or any other final reply but 503: the registrar did its work
    refused     503 with Retry-After: refused early (kemi/overload/, pipelimit)
    unanswered  nothing within `answer_wait` s: the caller times out (what overload must prevent)

A phone retransmits over UDP (T1 = 500 ms); this sender does not, so a request left unanswered
is one the proxy dropped or served too late, never one that an extra copy stood in for.

The figures (goodput = served per second of offered load, p99 of the served, refused,
unanswered) go to docs/reliability.md; tests/e2e/test_overload_live.py judges them.
"""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

SOCKETS = 4                 # source sockets the load is spread over (phones behind one NAT)
ANSWER_WAIT_S = 4.0         # after the last send: a reply later than this counts as none
MAX_SECONDS = 120.0         # every offer() stops by itself within this, whatever it is asked
REFUSED = 503


@dataclass
class Outcome:
    rate: float
    seconds: float
    sent: int = 0
    codes: Counter = field(default_factory=Counter)
    served_latency: list[float] = field(default_factory=list)
    refused: int = 0
    refused_without_retry_after: int = 0

    @property
    def served(self) -> int:
        return len(self.served_latency)

    @property
    def unanswered(self) -> int:
        return self.sent - self.served - self.refused - self.refused_without_retry_after

    def p(self, q: float) -> float | None:
        if not self.served_latency:
            return None
        ordered = sorted(self.served_latency)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict:
        p50, p99 = self.p(0.50), self.p(0.99)
        return {"offered_rate": self.rate, "seconds": self.seconds, "sent": self.sent,
                "served": self.served, "goodput": round(self.served / self.seconds, 1),
                "refused_503": self.refused, "refused_503_without_retry_after": self.refused_without_retry_after,
                "unanswered": self.unanswered, "unanswered_share": round(self.unanswered / max(1, self.sent), 3),
                "served_p50_ms": None if p50 is None else round(p50 * 1000, 1),
                "served_p99_ms": None if p99 is None else round(p99 * 1000, 1),
                "codes": dict(self.codes)}


def register(target: tuple[str, int], source: tuple[str, int], n: int, user: str, domain: str) -> bytes:
    host, port = target
    src, sport = source
    return (f"REGISTER sip:{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{sport};branch=z9hG4bK-ovl{n}-{time.monotonic_ns()};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=ovl{n}\r\nTo: <sip:{user}@{domain}>\r\n"
            f"Call-ID: ovl-{n}@{src}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{src}:{sport}>\r\n"
            f"Expires: 60\r\nUser-Agent: kemi-overload\r\nContent-Length: 0\r\n\r\n").encode()


def _parse(data: bytes) -> tuple[int, int | None, bool]:
    """(status code, request number from the Call-ID, has Retry-After)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    try:
        code = int(head[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return 0, None, False
    n, retry_after = None, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("call-id", "i") and value.strip().startswith("ovl-"):
            try:
                n = int(value.strip()[4:].split("@", 1)[0])
            except ValueError:
                n = None
        elif name == "retry-after" and value.strip():
            retry_after = True
    return code, n, retry_after


def offer(target: tuple[str, int], rate: float, seconds: float, local_ip: str = "127.0.0.1",
          domain: str | None = None, users: range = range(300000, 301000), socket_factory=None,
          answer_wait: float = ANSWER_WAIT_S) -> Outcome:
    """`rate` REGISTERs per second for `seconds` (bounded by MAX_SECONDS), then `answer_wait`
    s for the last replies. `socket_factory(family)` makes a socket elsewhere (a namespace)."""
    seconds = min(seconds, MAX_SECONDS)
    domain = domain or target[0]
    make = socket_factory or (lambda family: socket.socket(family, socket.SOCK_DGRAM))
    socks = []
    try:
        for _ in range(SOCKETS):
            s = make(socket.AF_INET)
            s.bind((local_ip, 0))
            s.setblocking(False)
            socks.append(s)
        out = Outcome(rate, seconds)
        sent_at: dict[int, float] = {}
        answered: set[int] = set()
        total = int(rate * seconds)
        start = time.monotonic()
        stop_at = start + seconds + answer_wait
        n = 0
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            while n < total and start + n / rate <= now:
                s = socks[n % SOCKETS]
                # the local buffer full: counted as sent, it goes unanswered
                with contextlib.suppress(BlockingIOError):
                    s.sendto(register(target, s.getsockname(), n, str(users[n % len(users)]), domain), target)
                sent_at[n] = time.monotonic()
                n += 1
            if n >= total and len(answered) >= total:
                break
            wait = max(0.0, min(start + n / rate, stop_at) - time.monotonic()) if n < total else 0.05
            readable, _, _ = select.select(socks, [], [], wait)
            arrived = time.monotonic()
            for s in readable:
                while True:
                    try:
                        data = s.recv(65535)
                    except BlockingIOError:
                        break
                    code, i, retry_after = _parse(data)
                    if i is None or i in answered or i not in sent_at or code < 200:
                        continue
                    answered.add(i)
                    out.codes[code] += 1
                    if code == REFUSED:
                        if retry_after:
                            out.refused += 1
                        else:
                            out.refused_without_retry_after += 1
                    elif arrived - sent_at[i] <= answer_wait:
                        out.served_latency.append(arrived - sent_at[i])
        out.sent = n
        return out
    finally:
        for s in socks:
            s.close()


def options_latency(address: tuple[str, int], timeout: float = 2.0) -> float | None:
    """Seconds until an OPTIONS to `address` was answered, or None when it was not within
    `timeout` (a load balancer's health probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        started = time.monotonic()
        port, tag = s.getsockname()[1], time.monotonic_ns()
        host, hport = address
        s.sendto((f"OPTIONS sip:{host}:{hport} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-h{tag}\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:health@127.0.0.1>;tag=h{tag}\r\nTo: <sip:{host}:{hport}>\r\n"
                  f"Call-ID: health-{tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), address)
        try:
            answered = s.recv(4096).startswith(b"SIP/2.0 ")
        except OSError:
            return None
        return time.monotonic() - started if answered else None


class Watcher:
    """OPTIONS to `address` every `every` s in a thread until stop(), at most `limit` probes:
    `latencies` holds each probe's seconds to its answer, or None."""

    def __init__(self, address: tuple[str, int], every: float = 0.5, timeout: float = 2.0, limit: int = 400):
        self.address, self.every, self.timeout, self.limit = address, every, timeout, limit
        self.latencies: list[float | None] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.is_set() and len(self.latencies) < self.limit:
            self.latencies.append(options_latency(self.address, self.timeout))
            self._done.wait(self.every)

    def stop(self) -> None:
        """No new probe from now on (one under way still ends: result() waits for it)."""
        self._done.set()

    def result(self) -> list[float | None]:
        self._done.set()
        self._thread.join(self.timeout + 5)
        return list(self.latencies)


def answered_within(latencies: list[float | None], within: float) -> int:
    return sum(1 for x in latencies if x is not None and x <= within)


def describe_probes(latencies: list[float | None], prompt: float) -> str:
    answered = sorted(x for x in latencies if x is not None)
    slowest = f", slowest {answered[-1] * 1000:.0f} ms" if answered else ""
    return (f"{len(answered)}/{len(latencies)} answered, {answered_within(latencies, prompt)} within "
            f"{prompt * 1000:.0f} ms{slowest}")


def probe(target: tuple[str, int], local_ip: str = "127.0.0.1", socket_factory=None,
          timeout: float = 2.0) -> tuple[int, float] | None:
    """One REGISTER now: (status, seconds to its final reply), or None when none came."""
    out = offer(target, rate=1.0, seconds=1.0, local_ip=local_ip, users=range(309999, 310000),
                socket_factory=socket_factory, answer_wait=timeout)
    for code in out.codes:
        return code, (out.served_latency[0] if out.served_latency else 0.0)
    return None
