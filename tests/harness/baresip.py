"""baresip (Debian's baresip-core) as a real softphone for the media-security tests.

    phone = Baresip(workdir, "4112", sip_port, tone_hz=1400, mediaenc=None, register=True).start()
    caller = Baresip(workdir, "4111", sip_port2, tone_hz=600, mediaenc="srtp-mand")
    caller.start(dial="4112", proxy=kamailio, seconds=8)     # dials at once, hangs up after 8 s
    caller.wait(); phone.received_tone()                     # dominant frequency it heard

Each phone plays an 8 kHz mono WAV tone of its own frequency (aufile), and records what it
decodes (sndfile, snd_path): the test reads the tone each side heard from those files.
SIP and RTP stay on loopback (net_interface 127.0.0.1) unless the phone is given an `address`
(a host in a network namespace, IPv4 or IPv6: tests/harness/nat.py); ports come from the
slot's ranges (tests/harness/stack.py and media.py): SIP from the SIPp range, RTP from the
phones' media range. baresip also binds TLS on the SIP port + 1, so phones are spaced 2 ports apart.
Modules: g711 (PCMU only: every tone check decodes G.711), srtp (mediaenc=srtp-mand: SDES),
dtls_srtp (mediaenc=dtls_srtp); a phone without mediaenc loads neither (plain RTP only).
"""
from __future__ import annotations

import itertools
import math
import re
import struct
import wave
from pathlib import Path

from harness import stack
from harness.media import PHONE_MEDIA_MAX, PHONE_MEDIA_MIN
from kemi_tools.sipp import uri_host
from kemi_tools.stack.process import Daemon

SAMPLE_RATE = 8000
MODULES = "/usr/lib/baresip/modules"
# two SIP ports per phone (UDP/TCP on P, TLS on P+1); a block of RTP ports each
_sip_ports = itertools.cycle(range(stack.PORT_BASE + 900, stack.PORT_BASE + 1000, 2))
_rtp_blocks = itertools.cycle(range(PHONE_MEDIA_MIN, PHONE_MEDIA_MAX - 19, 20))
# ctrl_tcp: commands (re-INVITE, hold) to a phone during a call
_ctrl_ports = itertools.cycle(range(stack.PORT_BASE + 880, stack.PORT_BASE + 900))


def sip_port() -> int:
    return next(_sip_ports)


def write_tone(path: Path, hz: float, seconds: float = 20.0, amplitude: int = 8000) -> None:
    """An 8 kHz mono 16-bit WAV sine at `hz`."""
    frames = b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)))
                      for i in range(int(seconds * SAMPLE_RATE)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(frames)


def read_wav(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2), f"{path}: not mono 16-bit"
        data = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def goertzel_power(samples: list[float], hz: float, rate: int = SAMPLE_RATE) -> float:
    """Power of one frequency in `samples` (the Goertzel filter: one DFT bin, plain Python)."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


# candidate frequencies a tone is looked for among (50 Hz steps over the telephone band)
SCAN_HZ = tuple(range(300, 3401, 50))


def dominant_frequency(samples: list[float], rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """(frequency, share of the scanned power in that bin) of the loudest SCAN_HZ bin."""
    powers = [(goertzel_power(samples, hz, rate), hz) for hz in SCAN_HZ]
    total = sum(p for p, _ in powers) or 1.0
    power, hz = max(powers)
    return hz, power / total


ULAW_TABLE = []
for _byte in range(256):
    _u = ~_byte & 0xFF
    _t = ((_u & 0x0F) << 3) + 0x84
    _t <<= (_u & 0x70) >> 4
    ULAW_TABLE.append((0x84 - _t) if _u & 0x80 else (_t - 0x84))


def pcmu_samples(payloads: list[bytes]) -> list[int]:
    """G.711 mu-law payloads decoded as if they were plain RTP (ciphertext decodes to noise)."""
    return [ULAW_TABLE[b] for p in payloads for b in p]


class Baresip:
    """One baresip process with its own config folder, tone and recordings."""

    def __init__(self, workdir: Path, user: str, port: int | None = None, tone_hz: float = 600,
                 mediaenc: str | None = None, password: str = stack.PASSWORD, register: bool = False,
                 answer: bool = True, address: str = "127.0.0.1", transport: str = "udp",
                 regint: int = 600):
        self.user, self.password, self.tone_hz, self.mediaenc = user, password, tone_hz, mediaenc
        self.register, self.answer, self.regint = register, answer, regint
        # the phone's own address (its SIP and RTP), and the transport of its account (udp, tcp)
        self.address, self.transport = address, transport
        self.netns = None            # the harness.netns.Namespace it runs in (start(netns=...))
        self.cafile: str | None = None   # transport tls: the CA (the proxy's certificate) it trusts
        self.port = port or sip_port()
        self.ctrl_port = next(_ctrl_ports)
        self.rtp_min = next(_rtp_blocks)
        self.dir = workdir / f"baresip-{user}"
        self.recordings = self.dir / "recordings"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.tone = self.dir / "tone.wav"
        write_tone(self.tone, tone_hz)
        self.daemon: Daemon | None = None

    def write_config(self, proxy: str) -> None:
        (self.dir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {uri_host(self.address)}:{self.port}",
            f"net_interface {self.address}",
            f"audio_source aufile,{self.tone}",
            "audio_player aufile,/dev/null",
            "audio_alert aufile,/dev/null",
            # no ringback tone on a 180: baresip 1.1.0 (Debian 13) plays it through the aufile
            # player, and the auto-answering callee's 200 comes a few ms later and frees that
            # player before its write thread has started; aufile's destructor joins the thread
            # only once the thread itself has set `run` (fixed upstream in 2.0.0, ac3f6a66), so
            # the thread runs on freed memory ("auframe: init: unsupported sample format 5")
            # and the call never gets established. 1.0.0 (Debian 12) has no aufile player.
            "ringback_disabled yes",
            f"rtp_ports {self.rtp_min}-{self.rtp_min + 19}",
            "audio_buffer 20-160",
            f"module_path {MODULES}",
            "module stdio.so", "module g711.so", "module aufile.so", "module sndfile.so",
            # a plain phone has no crypto at all (with dtls_srtp.so loaded baresip would take a
            # DTLS offer by itself, and the control calls would prove nothing)
            *(["module srtp.so", "module dtls_srtp.so"] if self.mediaenc else []),
            "module_app account.so", "module_app menu.so", "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            *([f"sip_cafile {self.cafile}"] if self.cafile else []),
            f"snd_path {self.recordings}",
            "",
        ]))
        params = [f"auth_pass={self.password}", f"regint={self.regint if self.register else 0}"]
        if self.answer:
            params.append("answermode=auto")
        if self.mediaenc:
            params.append(f"mediaenc={self.mediaenc}")
        # the AOR names the proxy's port: every request goes there, and it is "myself" for Kamailio
        transport = "" if self.transport == "udp" else f";transport={self.transport}"
        (self.dir / "accounts").write_text(f"<sip:{self.user}@{proxy}{transport}>;" + ";".join(params) + "\n")

    def start(self, proxy: str, dial: str | None = None, seconds: int = 30, netns=None) -> "Baresip":
        """Start registered (register=True) or dialing `dial` (an extension) at `proxy`
        (HOST:PORT); baresip quits by itself after `seconds` (a caller's hang-up). With
        `netns` (a harness.netns.Namespace) it runs there, stopped by its topology too."""
        self.write_config(proxy)
        argv = ["baresip", "-f", str(self.dir), "-t", str(seconds)]
        if dial:
            transport = "" if self.transport == "udp" else f";transport={self.transport}"
            argv += ["-e", f"/dial sip:{dial}@{proxy}{transport}"]
        name, log = f"baresip-{self.user}", self.dir / "baresip.log"
        self.netns = netns
        self.daemon = netns.spawn(argv, log, name=name) if netns is not None else Daemon(name, argv, log)
        return self

    def dial(self, callee: str, proxy: str) -> str:
        """A call from a running phone (ctrl_tcp), to extension `callee` at `proxy` (HOST:PORT)."""
        transport = "" if self.transport == "udp" else f";transport={self.transport}"
        return self.command("dial", f"sip:{callee}@{proxy}{transport}")

    def hangup(self) -> str:
        return self.command("hangup")

    def command(self, command: str, params: str = "") -> str:
        """A menu command through ctrl_tcp (netstring JSON), e.g. "reinvite", "hold"; its answer."""
        import json
        import socket
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        # ctrl_tcp listens on the loopback of the phone's namespace: the socket is made there
        sock = self.netns.socket(socket.AF_INET, socket.SOCK_STREAM) if self.netns is not None \
            else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", self.ctrl_port))
        with sock as s:
            s.sendall(b"%d:%s," % (len(body), body))
            data = b""
            while not data.endswith(b","):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace")

    def wait(self, timeout: float) -> int | None:
        """Wait for baresip to quit; its exit code (None if it had to be stopped)."""
        try:
            return self.daemon.proc.wait(timeout)
        except Exception:
            self.stop()
            return None

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()

    def kill(self) -> None:
        """SIGKILL: the phone dies without unregistering (its sockets close with it)."""
        import os
        import signal
        if self.daemon and self.daemon.alive():
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.proc.wait(10)

    def log(self) -> str:
        path = self.dir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def established(self) -> bool:
        return "Call established" in self.log()

    def call_failed_reason(self) -> str:
        """The SIP status line baresip reported for a call that did not come up ("" if none)."""
        m = re.search(r"session closed: (\d{3} [^\n]*)", self.log()) or \
            re.search(r"Call with \S+ terminated \(duration: [^)]*\)", self.log())
        return m.group(1) if m and m.groups() else (m.group(0) if m else "")

    def decoded_audio(self) -> list[int]:
        """What this phone decoded from the other party (sndfile's *-dec.wav of its last call)."""
        files = sorted(self.recordings.glob("*-dec.wav"))
        return read_wav(files[-1]) if files else []

    def received_tone(self, seconds: float = 2.0) -> tuple[float, float]:
        """(dominant frequency, its power share) of the audio this phone received: the last
        `seconds` of 100 ms windows with sound in them (a call starts with silence)."""
        samples, window = self.decoded_audio(), SAMPLE_RATE // 10
        loud = [samples[i:i + window] for i in range(0, len(samples) - window + 1, window)
                if max(abs(x) for x in samples[i:i + window]) > 500]
        if not loud:
            return 0.0, 0.0
        chosen = loud[-int(seconds * 10) - 1:-1] or loud
        return dominant_frequency([x for chunk in chosen for x in chunk])


# --- what crossed the wire between a phone and rtpengine ------------------------------------

RTP_HEADER = 12
PCMU_20MS = 160
SRTP_TAG_80 = 10          # AES_CM_128_HMAC_SHA1_80 (SDES default, DTLS-SRTP SRTP_AES128_CM_SHA1_80)


def packet_kind(payload: bytes) -> str:
    """RFC 7983 demultiplexing of what one UDP payload on a media port is."""
    if not payload:
        return "empty"
    first = payload[0]
    if first <= 3:
        return "stun"
    if 20 <= first <= 63:
        return "dtls"
    if 128 <= first <= 191:
        return "rtcp" if len(payload) > 1 and 192 <= payload[1] <= 223 else "rtp"
    return "other"


class Leg:
    """The packets between one phone (its RTP port block on 127.0.0.1) and rtpengine."""

    def __init__(self, packets, phone: Baresip, relay_address: str):
        ports = range(phone.rtp_min, phone.rtp_min + 20)
        self.to_phone = [p for p in packets if p.dst[0] == "127.0.0.1" and p.dst[1] in ports
                         and p.src[0] == relay_address]
        self.from_phone = [p for p in packets if p.src[0] == "127.0.0.1" and p.src[1] in ports
                           and p.dst[0] == relay_address]

    @staticmethod
    def rtp(packets) -> list[bytes]:
        return [p.payload for p in packets if packet_kind(p.payload) == "rtp"]

    def kinds(self, packets) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in packets:
            kind = packet_kind(p.payload)
            out[kind] = out.get(kind, 0) + 1
        return out

    @staticmethod
    def plaintext_tone(payloads: list[bytes]) -> tuple[float, float]:
        """The payloads decoded as plain PCMU: (dominant frequency, power share). A plain
        stream gives the sender's tone with most of the power; SRTP ciphertext gives noise."""
        body = [p[RTP_HEADER:RTP_HEADER + PCMU_20MS] for p in payloads[-100:]]
        return dominant_frequency(pcmu_samples(body)) if body else (0.0, 0.0)

    @staticmethod
    def all_srtp(payloads: list[bytes]) -> bool:
        """Every RTP packet carries an SRTP auth tag (160 bytes of PCMU + 10) and none of the
        payload decodes to a tone: nothing of it is plaintext."""
        return bool(payloads) and all(len(p) == RTP_HEADER + PCMU_20MS + SRTP_TAG_80 for p in payloads) \
            and Leg.plaintext_tone(payloads)[1] < 0.2

    @staticmethod
    def all_plain(payloads: list[bytes]) -> bool:
        return bool(payloads) and all(len(p) == RTP_HEADER + PCMU_20MS for p in payloads)

    def summary(self) -> str:
        return (f"to phone {self.kinds(self.to_phone)} (RTP sizes {sorted({len(p) for p in self.rtp(self.to_phone)})}), "
                f"from phone {self.kinds(self.from_phone)} (RTP sizes "
                f"{sorted({len(p) for p in self.rtp(self.from_phone)})})")
