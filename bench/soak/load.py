"""The soak's traffic: SIPp streams at steady rates, a scanner, a password guesser, reloads.

Every stream is one SIPp process that runs from the start to the end of a phase: a client
offers its calls at its rate (bounded by -m and -timeout: at most the phase's time), a server
(a callee, a gateway) takes them. At the end the clients get SIGUSR1 (SIPp's soft exit: no new
calls, the ones in progress finish), then the servers are stopped: every call ends as a
phone would end it, so what is left in Kamailio and rtpengine afterwards is a leak.

Registrar mix (rates at scale 1; about 460 requests/s reach Kamailio):
    registrations with digest, refreshes of 650 contacts (expires 300 s)   20/s  (2 requests each)
    calls answered, 1 s up (INVITE, 407, INVITE, 180, 200, ACK, BYE)       30/s  (5)
    calls to a busy phone (486)                                           10/s  (4)
    calls cancelled while ringing (CANCEL, 487)                           10/s  (5)
    calls to a subscriber with no contact (480)                           10/s  (4)
    calls with audio and video through rtpengine (RTP and RTCP played)     1/s  (5)
    OPTIONS keepalives to the server                                     120/s  (1)
    a password guesser (wrong password; banned after 5, again after 30 s)  4/s  (2)
    a scanner (friendly-scanner: dropped silently, banned)                10/s  (1)

SBC mix: trunk calls from the public gateway to unmapped DIDs (dispatched to the private
gateways) and to DIDs mapped to extensions, registrations and calls of extensions on the
private side, their calls out through the public gateways, cancelled and 480 calls,
keepalives, the scanner and the guesser on the public side (about 400 requests/s).
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kemi_tools.rtp import write_call_pcaps
from kemi_tools.sipp import Sipp, auth_row
from kemi_tools.stack.netns import Namespace

from bench.soak import net as soaknet
from bench.soak.stack import PASSWORD, SBC_GATEWAY_PORT, extension

REGISTER_EXPIRES = 300
PREREGISTER_RATE = 100          # registrations per second when the phones boot, before the mix
RECV_TIMEOUT_S = 5
SOFT_EXIT_WAIT_S = 40          # a client's calls in progress finish within this after SIGUSR1
WRONG_PASSWORD = "not-the-password"
# users (extension(i)): who has which phone behind it
ANSWER = range(0, 400)          # uas_callee: answers, the caller hangs up after hold_ms
BUSY = range(400, 500)          # uas_busy: 486
RINGING = range(500, 600)       # uas_ring_cancelled: rings until the caller cancels
MEDIA = range(600, 650)         # media_uas: answers, RTP and RTCP both ways
UNREGISTERED = range(700, 800)  # subscribers that never register: 480
CALLERS = range(1000, 2000)
GUESSED = 3000                  # the guesser tries this (existing) user with a wrong password
# SBC: DIDs the trunk calls; the mapped ones ring extensions of ANSWER
MAPPED_DIDS = {f"1555020{i:04d}": extension(i) for i in ANSWER}
UNMAPPED_DID_COUNT = 1000


@dataclass
class Stream:
    """One SIPp process of the mix."""
    name: str
    ns: Namespace
    scenario: str
    local_ip: str
    local_port: int
    rate: float = 0.0                  # calls per second (0: a server)
    target: str | None = None
    rows: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    media: bool = False                # plays audio.pcap / video.pcap (written in its workdir)
    sipp: Sipp | None = None

    @property
    def client(self) -> bool:
        return self.target is not None

    def start(self, workdir: Path, seconds: float) -> None:
        wd = workdir / self.name
        if self.media:
            write_call_pcaps(wd, ssrc_base=0x5000 + self.local_port)
        if self.client:
            self.sipp = Sipp(self.scenario, wd, self.local_ip, self.local_port, target=self.target, rows=self.rows,
                             keys=self.keys, sets=self.sets, calls=max(1, int(self.rate * seconds)),
                             rate=self.rate, timeout=seconds + SOFT_EXIT_WAIT_S, timeout_error=False,
                             recv_timeout=RECV_TIMEOUT_S, logs=False, trace_rtt=False, extra=self.extra,
                             netns=self.ns.name)
        else:
            self.sipp = Sipp(self.scenario, wd, self.local_ip, self.local_port, keys=self.keys, calls=None,
                             timeout=None, recv_timeout=None, logs=False, trace_rtt=False, extra=self.extra,
                             netns=self.ns.name)
        self.sipp.start()

    def register_all(self, workdir: Path, rate: float = PREREGISTER_RATE) -> tuple[int, int]:
        """A registration stream's users, each registered once now (the phones booting), so the
        calls find every contact from the start; (successful, created)."""
        sipp = Sipp(self.scenario, workdir / f"{self.name}-boot", self.local_ip, self.local_port, target=self.target,
                    rows=self.rows, keys=self.keys, calls=len(self.rows), rate=rate, timeout=60, timeout_error=False,
                    recv_timeout=RECV_TIMEOUT_S, logs=False, trace_rtt=False, netns=self.ns.name)
        done = sipp.run()
        return done.sipp_count("SuccessfulCall") or 0, len(self.rows)

    def soft_exit(self) -> None:
        """SIPp's SIGUSR1: no new calls; it exits once the calls in progress are done."""
        if self.sipp and self.sipp.proc and not self.sipp.exited():
            with contextlib.suppress(ProcessLookupError):
                self.sipp.proc.send_signal(signal.SIGUSR1)

    def counts(self) -> dict:
        stats = self.sipp.stats() if self.sipp else {}

        def get(key: str) -> int:
            value = stats.get(key, "0")
            return int(value) if value.isdigit() else 0
        return {"created": get("TotalCallCreated"), "successful": get("SuccessfulCall(C)"),
                "failed": get("FailedCall(C)"), "retransmissions": get("Retransmissions(C)"),
                "exit": self.sipp.rc if self.sipp else None}


TOLERATE_LATE_REPLIES = ["-default_behaviors", "all,-abortunexp"]


def _register(name, ns, ip, port, target, domain, users, contact_port, rate, password=PASSWORD):
    return Stream(name, ns, "register.xml", ip, port, rate, target,
                  rows=[auth_row(extension(i), password, domain) for i in users],
                  keys={"contact_port": contact_port, "contact_host": ip, "expires": REGISTER_EXPIRES})


def _calls(name, ns, ip, port, target, domain, callees, rate, scenario="uac_call.xml", hold_ms=1000, **kw):
    callees = list(callees)
    rows = [auth_row(extension(c), PASSWORD, domain, extension(callees[n % len(callees)]))
            for n, c in enumerate(CALLERS)]
    return Stream(name, ns, scenario, ip, port, rate, target, rows=rows, sets={"hold_ms": hold_ms},
                  extra=list(TOLERATE_LATE_REPLIES), **kw)


def registrar_mix(n: soaknet.Net, scale: float) -> list[Stream]:
    ns, ip, domain = n.phones_ns, n.phones_ip, n.domain
    target = f"{n.sip_address}:{soaknet.SIP_PORT}"
    r = lambda rate: rate * scale          # noqa: E731
    return [
        # the phones (servers first: their contacts must answer from the first call on)
        Stream("callee", ns, "uas_callee.xml", ip, 5070),
        Stream("busy", ns, "uas_busy.xml", ip, 5071),
        Stream("ringing", ns, "uas_ring_cancelled.xml", ip, 5072),
        Stream("media-callee", ns, "media_uas.xml", ip, 5073, keys={"media_attr": "sendrecv"},
               extra=["-mp", "41000"], media=True),
        _register("register-answer", ns, ip, 5080, target, domain, ANSWER, 5070, r(12)),
        _register("register-busy", ns, ip, 5081, target, domain, BUSY, 5071, r(3)),
        _register("register-ringing", ns, ip, 5082, target, domain, RINGING, 5072, r(3)),
        _register("register-media", ns, ip, 5083, target, domain, MEDIA, 5073, r(2)),
        _calls("calls", ns, ip, 5090, target, domain, ANSWER, r(30)),
        _calls("calls-busy", ns, ip, 5091, target, domain, BUSY, r(10)),
        _calls("calls-cancelled", ns, ip, 5092, target, domain, RINGING, r(10), scenario="uac_cancel.xml",
               hold_ms=500),
        _calls("calls-unregistered", ns, ip, 5093, target, domain, UNREGISTERED, r(10)),
        _calls("calls-media", ns, ip, 5094, target, domain, MEDIA, max(0.5, r(1)), scenario="media_uac.xml",
               keys={"media_attr": "sendrecv"}, media=True),
        Stream("keepalives", ns, "options.xml", ip, 5095, r(120), target, rows=[f"{extension(i)};{domain}"
                                                                              for i in CALLERS]),
        _register("guesser", n.attack_ns, n.guesser_ip, 5096, target, domain, [GUESSED], 5070, r(4),
                  password=WRONG_PASSWORD),
    ]


def sbc_mix(n: soaknet.Net, scale: float) -> list[Stream]:
    assert n.trunk_ns is not None and n.gateways_ns is not None
    priv, pub = n.phones_ns, n.trunk_ns
    ip, domain = n.phones_ip, n.domain
    private_target = f"{soaknet.SBC_PRIVATE}:{soaknet.SIP_PORT}"
    public_target = f"{soaknet.SBC_PUBLIC}:{soaknet.SIP_PORT}"
    r = lambda rate: rate * scale          # noqa: E731
    gw = SBC_GATEWAY_PORT
    unmapped = [f"1555010{i:04d}" for i in range(UNMAPPED_DID_COUNT)]
    return [
        *(Stream(f"gateway-{a}", pub, "gw_answer.xml", a, gw) for a in soaknet.PUBLIC_GATEWAYS),
        *(Stream(f"gateway-{a}", priv, "gw_answer.xml", a, gw) for a in soaknet.PRIVATE_GATEWAYS),
        Stream("callee", priv, "uas_callee.xml", ip, 5070),
        Stream("ringing", priv, "uas_ring_cancelled.xml", ip, 5072),
        _register("register-answer", priv, ip, 5080, private_target, domain, ANSWER, 5070, r(12)),
        _register("register-ringing", priv, ip, 5082, private_target, domain, RINGING, 5072, r(3)),
        Stream("trunk-to-gateways", pub, "trunk_call.xml", soaknet.TRUNK, 5090, r(30), public_target,
               rows=[f"1555999{i:04d};{did};{soaknet.SBC_PUBLIC}" for i, did in enumerate(unmapped)],
               sets={"hold_ms": 1000}, extra=list(TOLERATE_LATE_REPLIES)),
        Stream("trunk-to-extensions", pub, "trunk_call.xml", soaknet.TRUNK, 5091, r(5), public_target,
               rows=[f"1555888{i:04d};{did};{soaknet.SBC_PUBLIC}" for i, did in enumerate(MAPPED_DIDS)],
               sets={"hold_ms": 1000}, extra=list(TOLERATE_LATE_REPLIES)),
        _calls("calls", priv, ip, 5092, private_target, domain, ANSWER, r(20)),
        Stream("calls-out", priv, "uac_call.xml", ip, 5093, r(10), private_target,
               rows=[auth_row(extension(c), PASSWORD, domain, f"1444{c:06d}") for c in CALLERS],
               sets={"hold_ms": 1000}, extra=list(TOLERATE_LATE_REPLIES)),
        _calls("calls-cancelled", priv, ip, 5094, private_target, domain, RINGING, r(5),
               scenario="uac_cancel.xml", hold_ms=500),
        _calls("calls-unregistered", priv, ip, 5095, private_target, domain, UNREGISTERED, r(5)),
        Stream("keepalives", priv, "options.xml", ip, 5096, r(60), private_target,
               rows=[f"{extension(i)};{domain}" for i in CALLERS]),
        _register("guesser", n.attack_ns, n.guesser_ip, 5097, public_target, domain, [GUESSED], 5070, r(4),
                  password=WRONG_PASSWORD),
    ]


class Scanner:
    """A SIP scanner (User-Agent friendly-scanner, as sipvicious sends): OPTIONS and INVITEs
    from its own address at a steady rate. Kamailio must drop every one silently (and ban
    it); any answer it gets is counted, and the soak fails on it."""

    def __init__(self, ns: Namespace, source: str, target: tuple[str, int], rate: float):
        self.ns, self.source, self.target, self.rate = ns, source, target, rate
        self.sent = self.replies = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-scanner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        host, port = self.target
        with self.ns.socket() as s:
            s.bind((self.source, 0))
            s.settimeout(1.0 / self.rate)
            lport = s.getsockname()[1]
            n = 0
            while not self._stop.is_set():
                n += 1
                method = "INVITE" if n % 2 else "OPTIONS"
                msg = (f"{method} sip:{100 + n % 900}@{host} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP {self.source}:{lport};branch=z9hG4bK-scan{n};rport\r\n"
                       f"Max-Forwards: 70\r\nFrom: <sip:100@{self.source}>;tag=scan{n}\r\n"
                       f"To: <sip:{100 + n % 900}@{host}>\r\nCall-ID: scan-{n}@{self.source}\r\n"
                       f"CSeq: 1 {method}\r\nContact: <sip:100@{self.source}:{lport}>\r\n"
                       f"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
                try:
                    s.sendto(msg.encode(), (host, port))
                    self.sent += 1
                    s.recv(4096)
                    self.replies += 1
                except TimeoutError:
                    continue
                except OSError:
                    time.sleep(1.0 / self.rate)
