"""[media]: rtpengine media anchoring: the instances Kamailio uses, the daemon `make run` starts, the
flag profiles and each party's media security; parsed (nested tables), checked and rendered
for the rtpengine module. docs/media.md."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from kemi.media.security import SECURITIES
from kemi.names import RTPENGINE_INSTANCE_PV
from kemi.schema import SettingsError, record, report, require, table_list

if TYPE_CHECKING:
    from kemi.settings.model import Settings


@dataclass(frozen=True)
class RtpengineInstance:
    """One rtpengine control (ng) socket Kamailio's rtpengine module talks to."""
    # "udp:HOST:PORT" or "udp6:[ADDRESS]:PORT"
    ng: str
    # share of new calls, relative to the other instances (rtpengine_sock "=weight")
    weight: int = 1


@dataclass(frozen=True)
class MediaInterface:
    """One rtpengine --interface: a name the routes can use in direction=, an address."""
    name: str
    address: str
    # the address written into SDP when it differs from the local one (1:1 NAT), "" = address
    advertised: str = ""

    @property
    def option(self) -> str:
        """The value of rtpengine's --interface=NAME/IP[!ADVERTISED]."""
        return f"{self.name}/{self.address}" + (f"!{self.advertised}" if self.advertised else "")


@dataclass(frozen=True)
class MediaProfile:
    """A named set of rtpengine flags for offer/answer (kemi.media.flags builds the string)."""
    name: str
    # rtpengine flags on every offer and answer; kemi adds trust-address or
    # SIP-source-address itself (from NAT detection) and direction= (from the routes)
    flags: tuple[str, ...] = ("replace-origin", "replace-session-connection")
    # rtcp-mux handling on offers: any of accept, offer, demux, reject, require; () = pass through
    rtcp_mux: tuple[str, ...] = ()
    # codec filtering on offers, passed through as codec-mask=X / codec-strip=X / codec-transcode=X
    codec_mask: tuple[str, ...] = ()
    codec_strip: tuple[str, ...] = ()
    codec_transcode: tuple[str, ...] = ()


DEFAULT_MEDIA_PROFILE = MediaProfile("default")


@dataclass(frozen=True)
class RtpengineDaemon:
    """The rtpengine-daemon `make run` starts (userspace forwarding, no kernel module)."""
    # false: make run starts none (rtpengine runs elsewhere; media.instances names it)
    start: bool = True
    # its ng control socket "ADDRESS:PORT": loopback only (the ng protocol has no authentication)
    listen_ng: str = "127.0.0.1:2223"
    # where media is relayed; rtpengine's interface=any skips loopback, so addresses are explicit
    interfaces: tuple[MediaInterface, ...] = (MediaInterface("default", "127.0.0.1"),)
    # UDP ports for RTP/RTCP (two per media stream and side)
    port_min: int = 30000
    port_max: int = 40000
    # seconds a deleted session is kept for late packets and statistics (rtpengine default 30)
    delete_delay: int = 30
    # seconds without any media before rtpengine drops a session by itself
    media_timeout: int = 60
    # rtpengine log level: 3 err .. 7 debug
    log_level: int = 6

    @property
    def ng_socket(self) -> str:
        """listen_ng as the rtpengine module writes a socket ("udp:IP:PORT", "udp6:[IP]:PORT")."""
        return f"{'udp6' if self.listen_ng.startswith('[') else 'udp'}:{self.listen_ng}"

    @property
    def ng_address(self) -> tuple[str, int]:
        host, _, port = self.listen_ng.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class MediaSettings:
    # false: no rtpengine at all, SDP passes through untouched (the "no RTP proxy" setup)
    enabled: bool = True
    # the flag profile the routes use (a key of media.profiles, or "default")
    profile: str = "default"
    # rtpengine ng sockets Kamailio uses, with weights; none given = media.rtpengine.listen_ng
    instances: tuple[RtpengineInstance, ...] = ()
    # how long Kamailio waits for rtpengine's answer (ms), and how often it sends a command
    timeout_ms: int = 500
    retries: int = 2
    # seconds an instance that did not answer is skipped before it is tried again
    disable_seconds: int = 60
    # while EVERY instance is marked down, each new call pings them all first: calls recover
    # on the first call after rtpengine is back, but while it hangs each new call waits up to
    # timeout_ms x retries more. false: recovery waits for disable_seconds
    ping_when_all_down: bool = True
    rtpengine: RtpengineDaemon = field(default_factory=RtpengineDaemon)
    profiles: tuple[MediaProfile, ...] = (DEFAULT_MEDIA_PROFILE,)
    # media security (kemi/media/security.py, docs/media.md): what a party is sent and must
    # offer, one of any, rtp, srtp, sdes, dtls, webrtc. "any": the offer passes as it is
    security: str = "any"
    # [media.transport_security]: by the SIP transport a party uses (udp, tcp, tls, ws, wss);
    # browsers (WebSocket) need WebRTC media
    transport_security: tuple[tuple[str, str], ...] = (("ws", "webrtc"), ("wss", "webrtc"))
    # [media.extension_security]: per extension (the To user an SDP is sent to, the From user
    # it comes from); the most specific rule wins: extension, transport, side, security
    extension_security: tuple[tuple[str, str], ...] = ()

    def get_profile(self, name: str | None = None) -> MediaProfile:
        wanted = name or self.profile
        for p in self.profiles:
            if p.name == wanted:
                return p
        raise KeyError(wanted)

    @property
    def sockets(self) -> str:
        """The ng sockets, for log lines."""
        return ", ".join(i.ng for i in self.instances)

    @property
    def rtpengine_sock(self) -> str:
        """The rtpengine module's rtpengine_sock value (one set, weights)."""
        return " ".join(f"{i.ng}={i.weight}" for i in self.instances)


NG_SOCKET_RE = re.compile(r"^(udp):([0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})$|^(udp6):\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$")
MEDIA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
RTP_FLAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=/:+-]*$")
CODEC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+/-]*$")
RTCP_MUX_MODES = ("accept", "offer", "demux", "reject", "require")
# the transports a party's SIP can use ($pr), for media.transport_security
SIP_TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")
EXTENSION_RE = re.compile(r"^[A-Za-z0-9_.+*#-]{1,64}$")
# flags the routes set themselves: a profile listing them would contradict NAT detection
# (trust-address / SIP-source-address) or the SBC's interface choice (direction=)
ROUTE_OWNED_FLAGS = ("trust-address", "SIP-source-address", "direction=", "internal", "external")
MEDIA_RANGES = {                 # key: (lowest, highest, unit)
    "timeout_ms": (10, 10_000, "milliseconds"),
    "retries": (1, 10, "attempts"),
    "disable_seconds": (0, 3600, "seconds"),
}
DAEMON_RANGES = {
    "delete_delay": (0, 3600, "seconds"),
    "media_timeout": (1, 86400, "seconds"),
    "log_level": (0, 7, "(3 err .. 7 debug)"),
}
# the longest a new call may wait for its 503 while rtpengine does not answer
MAX_OFFER_WAIT_MS = 10_000


def parse(name: str, raw, factory, source: str) -> MediaSettings:
    nested = ("instances", "rtpengine", "profiles", "transport_security", "extension_security")
    scalars = {k: v for k, v in raw.items() if k not in nested} if isinstance(raw, dict) else raw
    plain = record(name, scalars, MediaSettings, source,
                   **{k: None for k in nested})
    d_raw = raw.get("rtpengine", {})
    interfaces = DEFAULT_DAEMON.interfaces
    if isinstance(d_raw, dict) and "interfaces" in d_raw:
        items = table_list("media.rtpengine.interfaces", d_raw["interfaces"], source)
        interfaces = tuple(record(f"media.rtpengine.interfaces[{i}]", item, MediaInterface, source)
                           for i, item in enumerate(items))
        d_raw = {k: v for k, v in d_raw.items() if k != "interfaces"}
    daemon = record("media.rtpengine", d_raw, RtpengineDaemon, source, interfaces=interfaces)
    if "instances" in raw:
        items = table_list("media.instances", raw["instances"], source)
        instances = tuple(record(f"media.instances[{i}]", item, RtpengineInstance, source)
                          for i, item in enumerate(items))
    else:
        instances = (RtpengineInstance(daemon.ng_socket),)
    p_raw = raw.get("profiles", {})
    if not isinstance(p_raw, dict):
        raise SettingsError("media.profiles", f"expected tables, found {p_raw!r}",
                            "write one [media.profiles.NAME] section per profile", source)
    profiles = {DEFAULT_MEDIA_PROFILE.name: DEFAULT_MEDIA_PROFILE}
    for pname, table in p_raw.items():
        profiles[pname] = record(f"media.profiles.{pname}", table, MediaProfile, source, name=pname)
    def security(key: str) -> tuple[tuple[str, str], ...]:
        return security_table(f"media.{key}", raw[key], source) if key in raw else getattr(DEFAULTS, key)
    return replace(plain, instances=instances, rtpengine=daemon, profiles=tuple(profiles.values()),
                   transport_security=security("transport_security"),
                   extension_security=security("extension_security"))


def security_table(key: str, raw, source: str) -> tuple[tuple[str, str], ...]:
    """[media.transport_security] / [media.extension_security]: NAME = "security" lines."""
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SettingsError(key, f"expected a table of strings, found {raw!r}",
                            f'write [{key}] with lines like ws = "webrtc" or "2001" = "sdes"', source)
    if key.endswith("transport_security"):         # over the defaults (ws, wss: webrtc)
        merged = dict(DEFAULTS.transport_security)
        merged.update((str(k).lower(), v) for k, v in raw.items())
        return tuple(merged.items())
    return tuple((str(k), v) for k, v in raw.items())


DEFAULTS = MediaSettings()


DEFAULT_DAEMON = RtpengineDaemon()


def validate(s: Settings, source: str) -> None:
    m = s.media
    for key, (low, high, unit) in MEDIA_RANGES.items():
        value = getattr(m, key)
        require(low <= value <= high, f"media.{key}", f"{value} is out of range", f"use {low} to {high} {unit}", source)
    # a hung rtpengine: each instance gets the command, then (all down) a ping
    worst = m.timeout_ms * m.retries * len(m.instances) * (2 if m.ping_when_all_down else 1)
    require(worst <= MAX_OFFER_WAIT_MS, "media.timeout_ms",
            f"a new call would wait up to {worst} ms for its 503 while rtpengine hangs "
            f"(timeout_ms x retries x instances{' x 2 for the ping' if m.ping_when_all_down else ''})",
            f"keep it at most {MAX_OFFER_WAIT_MS} ms: lower timeout_ms or retries", source)
    names = [p.name for p in m.profiles]
    require(m.profile in names, "media.profile", f"{m.profile!r} is not a profile",
            f"define [media.profiles.{m.profile}] or use one of: {', '.join(names)}", source)
    for p in m.profiles:
        validate_profile(p, source)
    validate_daemon(m, source)
    require(bool(m.instances), "media.instances", "is empty", 'list at least one { ng = "udp:127.0.0.1:2223" }', source)
    for i, inst in enumerate(m.instances):
        key = f"media.instances[{i}]"
        if require(NG_SOCKET_RE.match(inst.ng) is not None, f"{key}.ng", f"{inst.ng!r} is not an ng socket",
                   'write "udp:HOST:PORT" or "udp6:[ADDRESS]:PORT", e.g. "udp:127.0.0.1:2223"', source):
            port = int(inst.ng.rsplit(":", 1)[1])
            require(1 <= port <= 65535, f"{key}.ng", f"port {port} is out of range", "use a port from 1 to 65535",
                    source)
        require(1 <= inst.weight <= 1000, f"{key}.weight", f"{inst.weight} is out of range", "use 1 to 1000", source)
    socks = [inst.ng for inst in m.instances]
    require(len(set(socks)) == len(socks), "media.instances", "names one ng socket twice",
            "list each rtpengine once (use weight to prefer one)", source)
    require_local_instance(m, source)
    validate_security(m, source)


def require_security(value: str, key: str, source: str, empty_ok: bool = False) -> bool:
    ok = value in SECURITIES or (empty_ok and value == "")
    return require(ok, key, f"{value!r} is not a media security",
                   "use one of " + ", ".join(SECURITIES) + (' (or "" for media.security)' if empty_ok else "")
                   + ": docs/media.md, \"Media security\"", source)


def validate_security(m: MediaSettings, source: str) -> None:
    require_security(m.security, "media.security", source)
    for name, value in m.transport_security:
        key = f"media.transport_security.{name}"
        require(name in SIP_TRANSPORTS, key, f"{name!r} is not a SIP transport",
                "use one of " + ", ".join(SIP_TRANSPORTS), source)
        require_security(value, key, source)
    for name, value in m.extension_security:
        key = f"media.extension_security.{name}"
        require(EXTENSION_RE.match(name) is not None, key, f"{name!r} is not an extension",
                'write the username as in the subscriber table, e.g. "2001"', source)
        require_security(value, key, source)


def validate_profile(p: MediaProfile, source: str) -> None:
    key = f"media.profiles.{p.name}"
    require(MEDIA_NAME_RE.match(p.name) is not None, key, "is not a valid profile name",
            "use letters, digits, _ and - (starting with a letter)", source)
    for flag in p.flags:
        require(RTP_FLAG_RE.match(flag) is not None, f"{key}.flags", f"{flag!r} is not an rtpengine flag",
                "write one flag per list item, without spaces or quotes, e.g. \"replace-origin\"", source)
        owned = next((o for o in ROUTE_OWNED_FLAGS if flag == o or (o.endswith("=") and flag.startswith(o))), None)
        require(owned is None, f"{key}.flags", f"{flag!r} is set by the routes, not by a profile",
                "remove it: kemi adds trust-address or SIP-source-address from NAT detection, "
                "and direction= from the interfaces the route chooses", source)
    for mode in p.rtcp_mux:
        require(mode in RTCP_MUX_MODES, f"{key}.rtcp_mux", f"{mode!r} is not an rtcp-mux mode",
                f"use any of {', '.join(RTCP_MUX_MODES)} (rtcp-mux-MODE)", source)
    for field_name in ("codec_mask", "codec_strip", "codec_transcode"):
        for codec in getattr(p, field_name):
            require(CODEC_RE.match(codec) is not None, f"{key}.{field_name}", f"{codec!r} is not a codec name",
                    'write encoding names as rtpengine knows them, e.g. "PCMU", "opus", "all"', source)


def validate_daemon(m: MediaSettings, source: str) -> None:
    d = m.rtpengine
    for key, (low, high, unit) in DAEMON_RANGES.items():
        value = getattr(d, key)
        require(low <= value <= high, f"media.rtpengine.{key}", f"{value} is out of range",
                f"use {low} to {high} {unit}", source)
    host, _, port = d.listen_ng.rpartition(":")
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback and port.isdigit()
    except ValueError:
        loopback = False
    require(loopback and 1 <= int(port) <= 65535, "media.rtpengine.listen_ng",
            f"{d.listen_ng!r} is not a loopback ADDRESS:PORT",
            'listen on loopback, e.g. "127.0.0.1:2223" (the ng protocol has no authentication)', source)
    require(1024 <= d.port_min < d.port_max <= 65535 and d.port_max - d.port_min >= 3, "media.rtpengine",
            f"port_min ({d.port_min}) .. port_max ({d.port_max}) is not a usable range",
            "use 1024 <= port_min < port_max <= 65535 with at least 4 ports (one call needs 4 per medium)", source)
    require(not (port.isdigit() and d.port_min <= int(port) <= d.port_max), "media.rtpengine.listen_ng",
            f"port {port} lies in the media port range", "move listen_ng or the port range apart", source)
    require(bool(d.interfaces), "media.rtpengine.interfaces", "is empty",
            'list at least one { name = "default", address = "127.0.0.1" }', source)
    seen = set()
    for i, itf in enumerate(d.interfaces):
        key = f"media.rtpengine.interfaces[{i}]"
        require(MEDIA_NAME_RE.match(itf.name) is not None, f"{key}.name", f"{itf.name!r} is not a valid name",
                'use letters, digits, _ and -, e.g. "public"', source)
        require(itf.name not in seen, f"{key}.name", f"{itf.name!r} is used twice", "give each interface its own name",
                source)
        seen.add(itf.name)
        for attr in ("address", "advertised"):
            value = getattr(itf, attr)
            if attr == "advertised" and not value:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                report(SettingsError(f"{key}.{attr}", f"{value!r} is not an IP address",
                                     "write a literal IPv4/IPv6 address; rtpengine's \"any\" skips loopback, "
                                     "so list every address explicitly", source))


def require_local_instance(m: MediaSettings, source: str) -> None:
    d = m.rtpengine
    if m.enabled and d.start:
        require(any(inst.ng == d.ng_socket for inst in m.instances), "media.instances",
                f"none of them is the rtpengine make run starts ({d.ng_socket})",
                f'add {{ ng = "{d.ng_socket}" }} or set media.rtpengine.start = false', source)



def cfg_lines(s: Settings) -> list[str]:
    """#!define lines for the rtpengine module (kamailio.cfg loads it only WITH_RTPENGINE)."""
    m = s.media
    if not m.enabled:
        return []
    return [
        "#!define WITH_RTPENGINE",
        f'#!define RTPENGINE_SOCK "{m.rtpengine_sock}"',
        f"#!define RTPENGINE_TOUT_MS {m.timeout_ms}",
        f"#!define RTPENGINE_RETR {m.retries}",
        f"#!define RTPENGINE_DISABLE_TOUT {m.disable_seconds}",
        f"#!define RTPENGINE_REDETECT {int(m.ping_when_all_down)}",
        f'#!define RTPENGINE_INSTANCE_PV "{RTPENGINE_INSTANCE_PV}"',
    ]
