"""[sbc]: the dual-NIC SBC's sides, gateways and, with media on, each side's rtpengine interface. docs/sbc.md."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from kemi.settings.schema import GATEWAY_SOURCES, GATEWAY_URI_RE, DS_ALGORITHMS, SOCKET_NAME_RE, SbcSide, Settings, SettingsError
from kemi.settings.validate.media import MEDIA_NAME_RE, require_security
from kemi.settings.validate.problems import report, require


def validate_sbc(s: Settings, source: str) -> None:
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
    names, sets, sockets = {}, {}, {l.socket: "sip.listen" for l in s.sip.listen}
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
                f"set {side.gateway_set} is also sbc.{sets.get(side.gateway_set)}'s", "give each side its own set", source)
        sets[side.gateway_set] = role
        require(side.algorithm in DS_ALGORITHMS, f"{key}.algorithm", f"{side.algorithm} is not supported",
                "use " + ", ".join(f"{k} ({v})" for k, v in DS_ALGORITHMS.items()), source)
        require(bool(side.listen), f"{key}.listen", "no socket for this side",
                f'list the SBC\'s address on the {role} NIC, e.g. ["udp:203.0.113.1:5060"]', source)
        for l in side.listen:
            require(l.socket not in sockets, f"{key}.listen", f"{l.socket} is also in {sockets.get(l.socket)}",
                    "list each socket once", source)
            sockets[l.socket] = f"{key}.listen"
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


def validate_sbc_media(s: Settings, source: str) -> None:
    """An SBC with media anchoring: each side has its own rtpengine interface, and (when make
    run starts rtpengine) that interface is one of media.rtpengine.interfaces."""
    sbc, m = s.sbc, s.media
    if not (sbc.enabled and m.enabled):
        return
    profiles = [p.name for p in m.profiles]
    used = {}
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
    for listen, name in zip(side.listen, side.socket_names()):
        listen_family = 6 if listen.address.startswith("[") else 4
        if listen.proto == proto and family in (None, listen_family):
            return name
    return None

