"""The media-attack test network: a PBX whose relay a stranger can reach, real phones, a NATed phone.

    kemi<slot>-<pid>-pbx          Kamailio (SIP_PORT on 127.0.0.1 and RELAY), rtpengine (ng on
                                  127.0.0.1:NG_PORT, relay on RELAY)
      wan0 203.0.113.1   <-veth->  kemi<slot>-<pid>-atk   eth0 203.0.113.66   the attacker
      lan0 198.51.100.1  <-veth->  kemi<slot>-<pid>-lan   eth0 198.51.100.20  office phones (no NAT)
      nat0 192.0.2.1/25  <-veth->  kemi<slot>-<pid>-nat   wan 192.0.2.2/25    masquerade: UDP source
                                                                              ports rewritten to
                                                                              NAT_PORTS, at random
                                                          lan 192.0.2.129/25 <-veth-> kemi<slot>-<pid>-home
                                                                              eth0 192.0.2.130 a phone

The relay (rtpengine) is on 203.0.113.1, the address the attacker's namespace reaches: a
stranger on the internet side. The office phones send from the address their SDP announces;
the home phone's NAT changes its public port, so rtpengine sees its media from another port
than its SDP says (the case that needs learning). Nothing is routed between the attacker and
the phones (the PBX does not forward). Every phone's AOR names RELAY:SIP_PORT, a Kamailio
socket (the SIP domain and realm stay 127.0.0.1, Kamailio's other socket; auth and usrloc
ignore the domain). MariaDB is reached through its unix socket (a path, visible from any
namespace).
Every address is a documentation address.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import stack
from harness.baresip import Baresip, dominant_frequency, pcmu_samples
from harness.media import RTPENGINE_PORT_MAX, RTPENGINE_PORT_MIN, LoopbackCapture
from harness.netns import Topology
from harness.sbc import probe
from harness.sbc_media import NetnsNgClient, entered
from harness.media import ETH_P_ALL, PACKET_OUTGOING, attach_udp_port_filter
from kemi.settings import MediaInterface, RtpengineDaemon, load_settings
from kemi_tools.stack import kamailio
from kemi_tools.stack import relay_guard
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.process import wait_for

RELAY = "203.0.113.1"
ATTACKER = "203.0.113.66"
PBX_LAN, OFFICE_PHONE = "198.51.100.1", "198.51.100.20"
PBX_NAT_SIDE, NAT_WAN = "192.0.2.1", "192.0.2.2"
NAT_LAN, HOME_PHONE = "192.0.2.129", "192.0.2.130"
NAT_PORTS = (41000, 41999)
SIP_PORT = stack.PORT_BASE + 76
NG_PORT = stack.PORT_BASE + 77
ATTACK_TOOL = Path(__file__).with_name("rtpattack.py")
RTP_HEADER, PCMU_20MS = 12, 160


class AttackNetwork:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.topology = Topology()
        try:
            self._build()
        except Exception:
            self.topology.teardown()
            raise
        self.ng = NetnsNgClient(self.pbx, ("127.0.0.1", NG_PORT))
        self.kamailio = None
        self.rtpengine = None
        self.runs = 0

    def _build(self) -> None:
        t = self.topology
        self.pbx, self.atk, self.lan = t.namespace("pbx"), t.namespace("atk"), t.namespace("lan")
        self.nat, self.home = t.namespace("nat"), t.namespace("home")
        t.link(self.pbx, "wan0", [f"{RELAY}/24"], self.atk, "eth0", [f"{ATTACKER}/24"])
        t.link(self.pbx, "lan0", [f"{PBX_LAN}/24"], self.lan, "eth0", [f"{OFFICE_PHONE}/24"])
        t.link(self.pbx, "nat0", [f"{PBX_NAT_SIDE}/25"], self.nat, "wan", [f"{NAT_WAN}/25"])
        t.link(self.nat, "lan", [f"{NAT_LAN}/25"], self.home, "eth0", [f"{HOME_PHONE}/25"])
        self.lan.add_route("203.0.113.0/24", PBX_LAN)
        self.nat.add_route("203.0.113.0/24", PBX_NAT_SIDE)
        self.home.add_route("203.0.113.0/24", NAT_LAN)
        self.nat.sysctl("net.ipv4.ip_forward", "1")
        self.nat.run(["nft", "-f", "-"], input=(
            "table ip kemi_test_nat {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority srcnat;\n"
            f"    oifname \"wan\" meta l4proto udp masquerade to :{NAT_PORTS[0]}-{NAT_PORTS[1]} random\n"
            "  }\n"
            "}\n"))

    # --- rtpengine and Kamailio -------------------------------------------------------------

    def nft(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """A command in the pbx namespace, as kemi_tools.stack.relay_guard runs nft."""
        return subprocess.run(self.pbx.argv(argv), **kw)

    def guard(self, on: bool) -> None:
        """The relay's per-source flood limit (kemi_tools/stack/relay_guard.py) in the pbx
        namespace, loaded or removed."""
        if on:
            relay_guard.apply(self.daemon_settings(), run=self.nft)
        else:
            relay_guard.remove(run=self.nft)

    def guard_dropped(self) -> int:
        return relay_guard.dropped(run=self.nft)

    def daemon_settings(self, learning: str = "nat") -> RtpengineDaemon:
        t = self.rtpengine_table()
        return RtpengineDaemon(listen_ng=t["listen_ng"], interfaces=(MediaInterface("default", RELAY),),
                               port_min=t["port_min"], port_max=t["port_max"], delete_delay=0,
                               endpoint_learning=learning)

    def rtpengine_table(self) -> dict:
        return {"listen_ng": f"127.0.0.1:{NG_PORT}", "interfaces": [{"name": "default", "address": RELAY}],
                "port_min": RTPENGINE_PORT_MIN, "port_max": RTPENGINE_PORT_MAX, "delete_delay": 0}

    def start_rtpengine(self, argv_extra: tuple[str, ...] = (), settings: RtpengineDaemon | None = None,
                        without: tuple[str, ...] = ()) -> None:
        """rtpengine in the pbx namespace, as `make run` starts it (kemi_tools.stack.rtpengine.argv),
        plus `argv_extra`, minus the options named in `without` (a control's old options)."""
        if self.rtpengine is not None:
            self.rtpengine.stop()
        self.runs += 1
        daemon = settings or self.daemon_settings()
        argv = [a for a in rtpengine_stack.argv(daemon) if a.split("=")[0] not in without] + list(argv_extra)
        self.rtpengine_argv = argv
        self.rtpengine_log = self.workdir / f"rtpengine-{self.runs}.log"
        self.rtpengine = self.pbx.spawn(argv, self.rtpengine_log, name="rtpengine")
        wait_for(self.ng.ping, 20, "rtpengine in the pbx namespace to answer ping", self.rtpengine, interval=0.2)

    def tables(self, media: dict | None = None, rtpengine: dict | None = None) -> dict:
        return {
            "sip": {"domain": stack.DOMAIN, "children": 2,
                    "listen": [f"udp:127.0.0.1:{SIP_PORT}", f"udp:{RELAY}:{SIP_PORT}"]},
            "database": {"url": stack.TEST_DB_URL, "ro_url": stack.TEST_DB_RO_URL},
            "runtime": {"dir": str(self.workdir / "kamailio" / "run"), "log_level": 2},
            "media": {"enabled": True, "rtpengine": {**self.rtpengine_table(), **(rtpengine or {})}, **(media or {})},
        }

    def start_kamailio(self, media: dict | None = None, rtpengine: dict | None = None) -> None:
        if self.kamailio is not None:
            self.kamailio.stop()
        workdir = self.workdir / "kamailio"
        workdir.mkdir(parents=True, exist_ok=True)
        settings_file = workdir / "settings.toml"
        settings_file.write_text(stack.toml_dump(self.tables(media, rtpengine)))
        settings = load_settings(settings_file)
        cfg = kamailio.prepare(settings, workdir)
        kamailio.require_valid_config(cfg)
        self.kamailio_log = workdir / f"kamailio-{self.runs}.log"
        proc = self.kamailio = self.pbx.spawn(kamailio.command(cfg, settings.pid_file), self.kamailio_log,
                                              name="kamailio", cwd=cfg.parent)
        wait_for(lambda: probe(self.pbx, "127.0.0.1", "127.0.0.1", SIP_PORT), 30,
                 "Kamailio in the pbx namespace to answer OPTIONS", proc, interval=0.3)

    @property
    def proxy(self) -> str:
        """Where every phone sends its SIP (and what its AOR names)."""
        return f"{RELAY}:{SIP_PORT}"

    def stop_daemons(self) -> None:
        for d in (self.kamailio, self.rtpengine):
            if d is not None:
                d.stop()
        self.kamailio = self.rtpengine = None

    def teardown(self) -> list[str]:
        self.stop_daemons()
        return self.topology.teardown()

    # --- phones -----------------------------------------------------------------------------

    def phone(self, user: str, tone_hz: float, *, home: bool = False, **kw) -> Baresip:
        """A baresip phone in the office (no NAT), or (home=True) behind the NAT."""
        return Baresip(self.workdir, user, tone_hz=tone_hz, address=HOME_PHONE if home else OFFICE_PHONE, **kw)

    def start_phone(self, phone: Baresip, dial: str | None = None, seconds: int = 30) -> Baresip:
        ns = self.home if phone.address == HOME_PHONE else self.lan
        return phone.start(self.proxy, dial=dial, seconds=seconds, netns=ns)

    # --- the attacker -----------------------------------------------------------------------

    def attack(self, mode: str, *args: str) -> "Attack":
        """rtpattack.py MODE ARGS in the attacker's namespace (it stops by itself)."""
        proc = self.atk.popen([sys.executable, str(ATTACK_TOOL), mode, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return Attack(proc, mode, time.monotonic())

    def spray(self, seconds: float, rate: int = 20000) -> "Attack":
        """Sweep the whole relay range (this slot's) at `rate` packets/s for `seconds`."""
        return self.attack("spray", RELAY, str(RTPENGINE_PORT_MIN), str(RTPENGINE_PORT_MAX),
                           "--seconds", str(seconds), "--rate", str(rate))

    def flood(self, ports: list[int], seconds: float, rate: int = 0) -> "Attack":
        return self.attack("flood", RELAY, ",".join(map(str, ports)), "--seconds", str(seconds), "--rate", str(rate))

    def call_ports(self) -> list[int]:
        """The relay ports rtpengine has open for its calls (every stream, RTP and RTCP)."""
        ports = set()
        for call_id in self.ng.calls():
            q = self.ng.query(call_id)
            for tag in (q.get("tags") or {}).values():
                for medium in tag.get("medias", []):
                    for stream in medium.get("streams", []):
                        local = stream.get("local port")
                        if local:
                            ports.add(int(local))
        return sorted(ports)


@dataclass
class Attack:
    proc: subprocess.Popen
    mode: str
    started: float
    out: dict = field(default_factory=dict)

    def result(self, timeout: float = 60) -> dict:
        if not self.out:
            stdout, stderr = self.proc.communicate(timeout=timeout)
            if self.proc.returncode != 0 or not stdout.strip():
                raise AssertionError(f"rtpattack {self.mode} failed ({self.proc.returncode}): {stderr[-2000:]}")
            self.out = json.loads(stdout)
        return self.out

    def media_received(self) -> list[list]:
        """Packets the relay sent the attacker that are not its own (its SSRC echoed back)."""
        from harness.rtpattack import ATTACKER_SSRC
        return [r for r in self.result()["received"] if r[4] != ATTACKER_SSRC]

    def echoed(self) -> list[list]:
        from harness.rtpattack import ATTACKER_SSRC
        return [r for r in self.result()["received"] if r[4] == ATTACKER_SSRC]

    def heard(self) -> tuple[float, float]:
        """(dominant frequency, share) of the PCMU the attacker received from others."""
        from harness.rtpattack import ATTACKER_SSRC
        bodies = []
        for h in self.result()["payload_hex"]:
            data = bytes.fromhex(h)
            if len(data) == RTP_HEADER + PCMU_20MS and int.from_bytes(data[8:12], "big") != ATTACKER_SSRC:
                bodies.append(data[RTP_HEADER:])
        return dominant_frequency(pcmu_samples(bodies)) if bodies else (0.0, 0.0)


class RelayCapture(LoopbackCapture):
    """What the relay sends (UDP from its port range) on every NIC of the pbx namespace, each
    packet once (loopback shows a packet twice: its received copy is kept). Filtered in the
    kernel to the relay's source ports, so a flood AT the relay does not reach this capture
    (which reads in Python) and the timestamps stay those of the relay's own sending."""

    def __init__(self, ns, low: int = RTPENGINE_PORT_MIN, high: int = RTPENGINE_PORT_MAX):
        super().__init__(low, high, keep_payloads=True)
        self.ns = ns

    def _open_socket(self) -> socket.socket:
        with entered(self.ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_udp_port_filter(sock, self.low, self.high, sources_only=True)
        sock.settimeout(0.2)
        return sock

    def _run(self) -> None:
        import struct
        from harness.media import Captured
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[0] == "lo" and addr[2] == PACKET_OUTGOING:
                continue
            if len(data) < 14 + 20 + 8:
                continue
            ihl = (data[14] & 0x0F) * 4
            src_ip, dst_ip = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
            sport, dport = struct.unpack("!HH", data[14 + ihl:14 + ihl + 4])
            payload = data[14 + ihl + 8:]
            self.packets.append(Captured((src_ip, sport), (dst_ip, dport), payload[1] if len(payload) > 1 else -1,
                                         payload, time.monotonic()))


def to_phone(packets, phone: Baresip, injected: bool = False) -> list:
    """RTP packets the relay sent toward `phone`: to its RTP port block, or for the home phone
    to its NAT's public address (any port). The other party's, or (injected) the attacker's."""
    from harness.rtpattack import ATTACKER_SSRC
    out = []
    for p in packets:
        if p.src[0] != RELAY or len(p.payload) != RTP_HEADER + PCMU_20MS:
            continue
        if (int.from_bytes(p.payload[8:12], "big") == ATTACKER_SSRC) != injected:
            continue
        if phone.address == HOME_PHONE:
            if p.dst[0] == NAT_WAN:
                out.append(p)
        elif p.dst[0] == phone.address and phone.rtp_min <= p.dst[1] < phone.rtp_min + 20:
            out.append(p)
    return out


def window(packets, start: float, end: float) -> list:
    return [p for p in packets if start <= p.at < end]


def tone(packets) -> tuple[float, float]:
    """(dominant frequency, share) of PCMU payloads."""
    bodies = [p.payload[RTP_HEADER:] for p in packets]
    return dominant_frequency(pcmu_samples(bodies)) if bodies else (0.0, 0.0)
