"""[sbc]: the dual-NIC SBC's sides (sockets, networks, gateways, dispatcher algorithm), failover
and probing, and with media on each side's rtpengine interface; renders the dispatcher
defines and the gateways' dispatcher list. docs/sbc.md."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kemi.media.settings import MEDIA_NAME_RE, require_security
from kemi.schema import Listen, SettingsError, report, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

# dispatcher algorithms a gateway set may use (the others need extra modules or parameters)
DS_ALGORITHMS = {0: "hash over Call-ID", 1: "hash over From URI", 2: "hash over To URI",
                 3: "hash over R-URI user", 4: "round-robin", 5: "hash over auth username",
                 6: "random", 8: "priority order", 9: "weight", 11: "relative weight"}
GATEWAY_SOURCES = ("settings", "file", "database")
SOCKET_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
GATEWAY_URI_RE = re.compile(r"^sip:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
                            r"(?:;transport=(?P<transport>udp|tcp|tls))?$")
TM_FR_TIMER_DEFAULT = 30000          # ms, tm fr_timer when the SBC is off (RFC 3261 timer F is 32 s)
DISPATCHER_LIST_NAME = "dispatcher.list"


@dataclass(frozen=True)
class SbcSide:
    """One NIC of the SBC: its sockets, the networks behind it, the gateways reached through it."""
    # the side's name: Kamailio's listen socket name (a second socket is NAME-2, ...) and
    # what the routing calls this side (rtpengine's interface for it, in the media part)
    name: str
    # gateway set (dispatcher setid) of the gateways on this side
    gateway_set: int
    # Kamailio's sockets on this NIC, "proto:address:port"
    listen: tuple[Listen, ...] = ()
    # source networks (CIDR, IPv4 or IPv6) that belong to this side; most specific wins
    networks: tuple[str, ...] = ()
    # dispatcher algorithm for this side's gateway set (4 = round-robin)
    algorithm: int = 4
    # the gateways, "sip:host[:port][;transport=udp|tcp|tls]" (gateways_from = "settings")
    gateways: tuple[str, ...] = ()
    # media (media.enabled): the rtpengine interface (a media.rtpengine.interfaces name) this
    # side's media uses, "" = the side's name; and the [media.profiles] entry for SDP sent to
    # this side (its rtcp-mux and codec handling), "" = media.profile
    rtpengine_interface: str = ""
    media_profile: str = ""
    # media security of the parties on this side (any, rtp, srtp, sdes, dtls, webrtc),
    # "" = media.security; e.g. "srtp" on a public side: SRTP only, a plain offer gets 488
    media_security: str = ""

    @property
    def media_interface(self) -> str:
        """The rtpengine interface name for this side (direction=)."""
        return self.rtpengine_interface or self.name

    def socket_names(self) -> tuple[str, ...]:
        """Name of each listen socket, in order: NAME, NAME-2, NAME-3, ..."""
        return tuple(self.name if i == 0 else f"{self.name}-{i + 1}" for i in range(len(self.listen)))


@dataclass(frozen=True)
class SbcSettings:
    # off: the plain registrar (one install serves both deployments)
    enabled: bool = False
    # where the gateway sets come from: "settings" (the gateways lists below, rendered into a
    # dispatcher list file), "file" (your own dispatcher list, list_file) or "database" (the
    # dispatcher table). Each is reloadable with `kamcmd dispatcher.reload`.
    gateways_from: str = "settings"
    list_file: str = ""
    # ms without any answer (not even 100 Trying) before a gateway is given up and the next
    # tried; also the timeout of each OPTIONS probe (tm fr_timer)
    failover_timeout: int = 3000
    # seconds between OPTIONS probes of every gateway (0 = no probing)
    probing_interval: int = 10
    # failed probes before a gateway goes inactive / answered probes before it is active again
    probing_threshold: int = 1
    inactive_threshold: int = 1
    # the DID map (table did_map): seconds a lookup is cached, and how many are kept
    did_cache_ttl: int = 30
    did_cache_size: int = 10000
    public: SbcSide = SbcSide("public", 1)
    private: SbcSide = SbcSide("private", 2)

    @property
    def sides(self) -> tuple[SbcSide, SbcSide]:
        return (self.public, self.private)


def validate(s: Settings, source: str) -> None:
    sbc = s.sbc
    require(sbc.gateways_from in GATEWAY_SOURCES, "sbc.gateways_from", f"{sbc.gateways_from!r} is not supported",
            "use " + ", ".join(f'"{g}"' for g in GATEWAY_SOURCES), source)
    require(100 <= sbc.failover_timeout <= 60000, "sbc.failover_timeout", f"{sbc.failover_timeout} ms is out of range",
            "use 100 to 60000 milliseconds", source)
    require(0 <= sbc.probing_interval <= 3600, "sbc.probing_interval", f"{sbc.probing_interval} is out of range",
            "use 0 (no probing) to 3600 seconds", source)
    for key in ("probing_threshold", "inactive_threshold"):
        value = getattr(sbc, key)
        require(1 <= value <= 100, f"sbc.{key}", f"{value} is out of range", "use 1 to 100", source)
    require(0 <= sbc.did_cache_ttl <= 3600, "sbc.did_cache_ttl", f"{sbc.did_cache_ttl} is out of range",
            "use 0 to 3600 seconds", source)
    require(1 <= sbc.did_cache_size <= 10_000_000, "sbc.did_cache_size", f"{sbc.did_cache_size} is out of range",
            "use 1 to 10000000 entries", source)
    if not sbc.enabled:
        return
    if sbc.gateways_from == "file":
        if require(sbc.list_file.startswith("/") and '"' not in sbc.list_file, "sbc.list_file",
                   f"{sbc.list_file!r} is not an absolute path", 'write e.g. "/etc/kemi/dispatcher.list"', source):
            require(Path(sbc.list_file).is_file(), "sbc.list_file", f"{sbc.list_file} does not exist",
                    "create it (dispatcher list format, see docs/sbc.md)", source)
    else:
        require(not sbc.list_file, "sbc.list_file", f"is set but gateways_from is {sbc.gateways_from!r}",
                'remove it, or set gateways_from = "file"', source)
    names: dict[str, str] = {}
    sets: dict[int, str] = {}
    sockets = {listen.socket: "sip.listen" for listen in s.sip.listen}
    for role, side in (("public", sbc.public), ("private", sbc.private)):
        key = f"sbc.{role}"
        require(SOCKET_NAME_RE.match(side.name) is not None, f"{key}.name", f"{side.name!r} is not a usable name",
                "use letters, digits, '-' or '_', starting with a letter (at most 32)", source)
        require(side.name not in names, f"{key}.name", f"{side.name!r} is also the name of sbc.{names.get(side.name)}",
                "give each side its own name", source)
        names[side.name] = role
        require(1 <= side.gateway_set <= 10000, f"{key}.gateway_set", f"{side.gateway_set} is out of range",
                "use a dispatcher set id from 1 to 10000", source)
        require(side.gateway_set not in sets, f"{key}.gateway_set",
                f"set {side.gateway_set} is also sbc.{sets.get(side.gateway_set)}'s", "give each side its own set",
                source)
        sets[side.gateway_set] = role
        require(side.algorithm in DS_ALGORITHMS, f"{key}.algorithm", f"{side.algorithm} is not supported",
                "use " + ", ".join(f"{k} ({v})" for k, v in DS_ALGORITHMS.items()), source)
        require(bool(side.listen), f"{key}.listen", "no socket for this side",
                f'list the SBC\'s address on the {role} NIC, e.g. ["udp:203.0.113.1:5060"]', source)
        for listen in side.listen:
            require(listen.socket not in sockets, f"{key}.listen", f"{listen.socket} is also in "
                    f"{sockets.get(listen.socket)}", "list each socket once", source)
            sockets[listen.socket] = f"{key}.listen"
        require(bool(side.networks), f"{key}.networks", "no network for this side",
                'list the CIDRs of the hosts on this side, e.g. ["203.0.113.0/24", "2001:db8::/32"]', source)
        for cidr in side.networks:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                report(SettingsError(f"{key}.networks", f"{cidr!r} is not a network ({exc})",
                                     'write "address/prefix" with no host bits, e.g. "203.0.113.0/24"', source))
        if sbc.gateways_from == "settings":
            require(bool(side.gateways), f"{key}.gateways", "no gateway for this side",
                    'list them, e.g. ["sip:203.0.113.10:5060"], or set sbc.gateways_from', source)
        else:
            require(not side.gateways, f"{key}.gateways", f"listed but sbc.gateways_from is {sbc.gateways_from!r}",
                    f'remove them (the {sbc.gateways_from} is used), or set gateways_from = "settings"', source)
        for uri in side.gateways:
            if not require(GATEWAY_URI_RE.match(uri) is not None, f"{key}.gateways", f"{uri!r} is not a gateway URI",
                           'write "sip:HOST[:PORT][;transport=udp|tcp|tls]", e.g. "sip:203.0.113.10:5060"', source):
                continue
            require(gateway_socket_name(side, uri) is not None, f"{key}.gateways",
                    f"{uri!r}: no socket of sbc.{role}.listen has its protocol and address family",
                    "add such a socket to the side's listen list", source)


def validate_media(s: Settings, source: str) -> None:
    """An SBC with media anchoring: each side has its own rtpengine interface, and (when make
    run starts rtpengine) that interface is one of media.rtpengine.interfaces."""
    sbc, m = s.sbc, s.media
    if not (sbc.enabled and m.enabled):
        return
    profiles = [p.name for p in m.profiles]
    used: dict[str, str] = {}
    for role, side in (("public", sbc.public), ("private", sbc.private)):
        key, name = f"sbc.{role}", side.media_interface
        require(MEDIA_NAME_RE.match(name) is not None, f"{key}.rtpengine_interface",
                f"{name!r} is not a valid rtpengine interface name",
                'use letters, digits, _ and -, starting with a letter, e.g. "public"', source)
        require(name not in used, f"{key}.rtpengine_interface",
                f"{name!r} is also sbc.{used.get(name)}'s rtpengine interface",
                "give each side its own interface: media must leave each NIC from that NIC's address",
                source)
        used[name] = role
        require_security(side.media_security, f"{key}.media_security", source, empty_ok=True)
        require(not side.media_profile or side.media_profile in profiles, f"{key}.media_profile",
                f"{side.media_profile!r} is not a profile",
                f"define [media.profiles.{side.media_profile}] or use one of: {', '.join(profiles)}", source)
        if not m.rtpengine.start:
            continue          # a remote rtpengine: its --interface names are not in these settings
        names = [i.name for i in m.rtpengine.interfaces]
        example = side.listen[0].host if side.listen else "ADDRESS"
        require(name in names, "media.rtpengine.interfaces",
                f"no interface named {name!r} for the SBC's {role} side "
                f"(sbc.{role}.rtpengine_interface, default: the side's name)",
                f'add {{ name = "{name}", address = "{example}" }} (the SBC\'s address on the {role} NIC), '
                f"or set sbc.{role}.rtpengine_interface to one of: {', '.join(names)}", source)


def gateway_socket_name(side: SbcSide, uri: str) -> str | None:
    """The name of the side's socket a gateway is reached through (same proto and family)."""
    m = GATEWAY_URI_RE.match(uri)
    if not m:
        return None
    proto = m.group("transport") or "udp"
    host = m.group("host")
    family = 6 if host.startswith("[") else 4 if re.fullmatch(r"[0-9.]+", host) else None
    for listen, name in zip(side.listen, side.socket_names(), strict=True):
        listen_family = 6 if listen.address.startswith("[") else 4
        if listen.proto == proto and family in (None, listen_family):
            return name
    return None



def timer_lines(s: Settings) -> list[str]:
    # a hop that does not answer at all within this is down (SBC: failover and probes)
    sbc = s.sbc
    return [f"#!define TM_FR_TIMER {sbc.failover_timeout if sbc.enabled else TM_FR_TIMER_DEFAULT}"]


def cfg_lines(s: Settings, outdir: str | os.PathLike | None, project_root: Path) -> list[str]:
    """dispatcher's defines: probing, and where the gateway sets come from."""
    sbc = s.sbc
    if not sbc.enabled:
        return []
    lines = [
        "#!define WITH_SBC",
        f"#!define DS_PING_INTERVAL {sbc.probing_interval}",
        f"#!define DS_PROBING_THRESHOLD {sbc.probing_threshold}",
        f"#!define DS_INACTIVE_THRESHOLD {sbc.inactive_threshold}",
    ]
    if sbc.gateways_from == "database":
        lines.append("#!define DS_FROM_DB")
    else:
        lines.append(f'#!define DS_LIST_FILE "{dispatcher_list_path(s, outdir, project_root)}"')
    return lines


def dispatcher_list_path(s: Settings, outdir: str | os.PathLike | None, project_root: Path) -> Path:
    """The dispatcher list Kamailio reads: the site's own file, or the one rendered beside the cfg."""
    if s.sbc.gateways_from == "file":
        return Path(s.sbc.list_file)
    return Path(outdir or project_root).resolve() / DISPATCHER_LIST_NAME


def render_dispatcher_list(s: Settings) -> str:
    """dispatcher list file lines for the gateways in the settings (gateways_from = "settings").

    Each gateway is pinned to its side's socket (sockname=), so requests and OPTIONS probes
    to it leave through the right NIC.
    """
    lines = [f"# Generated from {s.source or 'defaults'} by `python3 -m kemi.settings render`.",
             "# setid destination flags priority attributes. Change the settings, render, then",
             "# `kamcmd dispatcher.reload` (no restart needed)."]
    for side in s.sbc.sides:
        lines.append(f"# {side.name} gateways (set {side.gateway_set})")
        for uri in side.gateways:
            lines.append(f"{side.gateway_set} {uri} 0 0 sockname={gateway_socket_name(side, uri)}")
    return "\n".join(lines) + "\n"
