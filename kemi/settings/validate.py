"""Loading a settings file: parse the TOML, build the dataclasses, validate every value once.

Every problem is a SettingsError naming the key, what was found and what is accepted.
parse_settings() collects them all (a value that cannot be read counts once, its default
stands in for the rest of the checks) and raises the one problem, or SettingsProblems
listing every one: `kemi check` prints them all, Kamailio's start logs them all.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from contextvars import ContextVar
from dataclasses import MISSING, fields, is_dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from kemi.settings.environment import apply_overrides, blame_environment, environment_overrides
from kemi.settings.schema import (DEFAULT_MEDIA_PROFILE, DEFAULT_SETTINGS_FILE, DS_ALGORITHMS,
    GATEWAY_SOURCES, GATEWAY_URI_RE, HOSTNAME_RE, LISTEN_RE, LOG_LEVELS, META_FIELDS, Listen, MediaInterface,
    MediaProfile, MediaSettings, RtpengineDaemon, RtpengineInstance, SETTINGS_ENV, SOCKET_NAME_RE,
    SbcSide, SecuritySettings, Settings, SettingsError, SettingsProblems, USRLOC_DB_MODES)


# --- loading and validation ----------------------------------------------------------


def settings_path(path: str | os.PathLike | None = None) -> Path:
    """The settings file: explicit argument, else $KEMI_SETTINGS, else ./settings.toml."""
    if path:
        return Path(path).resolve()
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV]).resolve()
    return DEFAULT_SETTINGS_FILE


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    file = settings_path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError("(file)", f"{file} does not exist",
                            f"create it or point ${SETTINGS_ENV} at your settings file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("(file)", f"{file} is not valid TOML ({exc})",
                            "fix the syntax (see settings.toml in the project)") from None
    # KEMI__SECTION__KEY variables win over the file (docker); errors name the variable
    overrides = environment_overrides()
    try:
        settings = parse_settings(apply_overrides(raw, overrides, str(file)), source=str(file))
    except SettingsError as exc:
        raise blame_environment(exc, overrides) from None
    return replace(settings, environment=tuple((ov.variable, ov.text) for ov in overrides))


def parse_settings(raw: dict, source: str = "") -> Settings:
    """Build and validate Settings from a parsed TOML document; raise every problem found."""
    found: list[SettingsError] = []
    token = _found.set(found)
    try:
        _reject_unknown(raw, Settings, "", source)
        tables = {}
        for f in fields(Settings):
            if f.name in META_FIELDS:
                continue
            build = _TABLE_PARSERS.get(f.name, _build_table)
            tables[f.name] = _checked(build, f.name, raw.get(f.name, {}), f.default_factory, source,
                                      fallback=f.default_factory)
        settings = Settings(**tables, source=source)
        unreadable = {e.key for e in found}
        parsed = len(found)
        _validate(settings, source)
    finally:
        _found.reset(token)
    # a key that could not be read was checked with its default: what the checks then say
    # about it (or inside it) is not the site's problem
    found[parsed:] = [e for e in found[parsed:]
                      if not any(e.key == k or e.key.startswith(k + ".") for k in unreadable)]
    if found:
        raise found[0] if len(found) == 1 else SettingsProblems(found)
    return settings


# the problems parse_settings() has found so far (None outside it: the first one raises)
_found: ContextVar[list | None] = ContextVar("kemi_settings_problems", default=None)


def _report(err: SettingsError) -> None:
    found = _found.get()
    if found is None:
        raise err
    if all(str(err) != str(e) for e in found):
        found.append(err)


def _checked(step, *args, fallback=None):
    """step(*args); when it raises a SettingsError that is reported and fallback() returned."""
    try:
        return step(*args)
    except SettingsError as err:
        _report(err)
        return fallback() if callable(fallback) else fallback


def _reject_unknown(raw: dict, cls, prefix: str, source: str) -> None:
    known = {f.name for f in fields(cls) if f.name not in META_FIELDS}
    for key in raw:
        if key not in known:
            _report(SettingsError(prefix + key, "unknown key",
                                  f"accepted keys here: {', '.join(sorted(known))}", source))


def _build_table(name: str, raw, factory, source: str):
    """One TOML table (`name` is its dotted key) into the dataclass `factory()` returns."""
    if not isinstance(raw, dict):
        raise SettingsError(name, f"expected a table [{name}], found {raw!r}",
                            f"write it as a [{name}] section", source)
    default = factory()
    cls = type(default)
    _reject_unknown(raw, cls, name + ".", source)
    values = {}
    for f in fields(cls):
        key = f"{name}.{f.name}"
        current = getattr(default, f.name)
        if f.name not in raw:
            values[f.name] = current
        elif f.name == "listen" and isinstance(current, tuple):     # SIP sockets (metrics.listen is a str)
            values[f.name] = _checked(_parse_listen, key, raw[f.name], source, fallback=current)
        elif is_dataclass(current):
            values[f.name] = _checked(_build_table, key, raw[f.name], lambda current=current: current, source,
                                      fallback=current)
        else:
            values[f.name] = _checked(_coerce, key, raw[f.name], current, source, fallback=current)
    return cls(**values)


def _coerce(key: str, value, default, source: str):
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected true or false, found {value!r}", "write true or false", source)
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected a whole number, found {value!r}", "write a number without quotes", source)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise SettingsError(key, f"expected a string, found {value!r}", "put the value in double quotes", source)
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise SettingsError(key, f"expected a list of strings, found {value!r}", 'write ["a", "b"]', source)
    raise SettingsError(key, "unsupported value", "see settings.toml", source)


def _parse_listen(key: str, value, source: str) -> tuple[Listen, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SettingsError(key, f"expected a non-empty list of sockets, found {value!r}",
                            'write e.g. ["udp:127.0.0.1:5060"]', source)
    sockets = []
    for item in value:
        m = LISTEN_RE.match(item) if isinstance(item, str) else None
        if not m:
            raise SettingsError(key, f"{item!r} is not a socket",
                                'write "proto:address:port" with proto udp, tcp or tls, '
                                'e.g. "udp:127.0.0.1:5060" or "udp:[::1]:5060"', source)
        proto, addr, port = m.group(1), m.group(2), int(m.group(3))
        try:
            ipaddress.ip_address(addr.strip("[]"))
        except ValueError:
            raise SettingsError(key, f"{addr!r} in {item!r} is not an IP address",
                                "listen on a literal IPv4 or [IPv6] address", source) from None
        if ":" in addr and not addr.startswith("["):
            raise SettingsError(key, f"IPv6 address in {item!r} needs brackets", 'write "udp:[::1]:5060"', source)
        if not 1 <= port <= 65535:
            raise SettingsError(key, f"port {port} in {item!r} is out of range", "use a port from 1 to 65535", source)
        sockets.append(Listen(proto, addr, port))
    return tuple(sockets)


def _require(ok: bool, key: str, problem: str, fix: str, source: str) -> bool:
    """Report the problem unless `ok`; returns `ok` (checks that build on it skip when False)."""
    if not ok:
        _report(SettingsError(key, problem, fix, source))
    return ok


def _validate(s: Settings, source: str) -> None:
    sip, db, reg, rt = s.sip, s.database, s.registrar, s.runtime
    _require(_is_host(sip.domain), "sip.domain", f"{sip.domain!r} is not a hostname or IP address",
             'write the domain your subscribers use, e.g. "pbx.example.com" or "127.0.0.1"', source)
    for alias in sip.aliases:
        _require(_is_host(alias), "sip.aliases", f"{alias!r} is not a hostname or IP address",
                 "list hostnames or IP addresses", source)
    _require(1 <= sip.children <= 64, "sip.children", f"{sip.children} is out of range", "use 1 to 64", source)
    for key, value in (("database.url", db.url), ("database.ro_url", db.ro_url)):
        url = urlsplit(value)
        _require(url.scheme == "mysql" and bool(url.hostname) and len(url.path) > 1 and bool(url.username),
                 key, f"{value!r} is not a MySQL URL", 'write "mysql://USER:PASSWORD@HOST[:PORT]/DATABASE"', source)
    _require(urlsplit(db.ro_url).path == urlsplit(db.url).path, "database.ro_url",
             "names another database than database.url", "use the same database name in both URLs", source)
    _require(db.usrloc_db_mode in USRLOC_DB_MODES, "database.usrloc_db_mode",
             f"{db.usrloc_db_mode} is not supported",
             "use " + ", ".join(f"{k} ({v})" for k, v in USRLOC_DB_MODES.items()), source)
    _require(0 <= db.cache_ttl <= 3600, "database.cache_ttl", f"{db.cache_ttl} is out of range", "use 0 to 3600 seconds", source)
    _require(1 <= db.cache_size <= 10_000_000, "database.cache_size", f"{db.cache_size} is out of range",
             "use 1 to 10000000 entries", source)
    _require(1 <= reg.min_expires <= reg.default_expires <= reg.max_expires <= 86400, "registrar",
             f"expires must satisfy 1 <= min ({reg.min_expires}) <= default ({reg.default_expires}) "
             f"<= max ({reg.max_expires}) <= 86400", "adjust registrar.min_expires/default_expires/max_expires", source)
    _require(0 <= reg.max_contacts <= 1000, "registrar.max_contacts", f"{reg.max_contacts} is out of range",
             "use 0 (unlimited) to 1000", source)
    _require(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", s.python.router) is not None, "python.router",
             f"{s.python.router!r} is not 'module:Class'", 'write e.g. "kemi.routing:Router"', source)
    _require(rt.dir.startswith("/") and '"' not in rt.dir, "runtime.dir", f"{rt.dir!r} is not an absolute path",
             'write e.g. "/run/kamailio"', source)
    _require(rt.log_level in LOG_LEVELS, "runtime.log_level", f"{rt.log_level} is not a Kamailio debug level",
             "use -3 (alert) to 3 (debug)", source)
    for key, text in (("database.url", db.url), ("sip.domain", sip.domain)):
        _require('"' not in text and "\n" not in text, key, "contains a double quote or newline",
                 "remove it (the value is written into kamailio.cfg defines)", source)
    _checked(_validate_media, s.media, source)
    _checked(_validate_sbc, s, source)
    _checked(_validate_sbc_media, s, source)
    _checked(_validate_security, s.security, source)
    _checked(_validate_tls, s, source)
    _checked(_validate_metrics, s, source)
    _checked(_validate_logging, s, source)


# --- [media]: parsing and validation ---------------------------------------------------

NG_SOCKET_RE = re.compile(r"^(udp):([0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})$|^(udp6):\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$")
MEDIA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
RTP_FLAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=/:+-]*$")
CODEC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+/-]*$")
RTCP_MUX_MODES = ("accept", "offer", "demux", "reject", "require")
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


def _record(key: str, raw, cls, source: str, **given):
    """A frozen dataclass from one TOML table; `given` fields are not read from `raw`."""
    if not isinstance(raw, dict):
        raise SettingsError(key, f"expected a table, found {raw!r}",
                            "write it as a TOML table (see docs/media.md)", source)
    known = {f.name for f in fields(cls)} - set(given)
    for name in raw:
        if name not in known:
            _report(SettingsError(f"{key}.{name}", "unknown key",
                                  f"accepted keys here: {', '.join(sorted(known))}", source))
    values = dict(given)
    for f in fields(cls):
        if f.name in given:
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        elif f.name not in raw:
            raise SettingsError(f"{key}.{f.name}", "is missing", f"add {f.name} = ... (see docs/media.md)", source)
        else:
            default = ""              # the required fields are all strings
        values[f.name] = (_checked(_coerce, f"{key}.{f.name}", raw[f.name], default, source, fallback=default)
                          if f.name in raw else default)
    return cls(**values)


def _table_list(key: str, raw, source: str) -> list:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise SettingsError(key, f"expected a list of tables, found {raw!r}",
                            f"write [[{key}]] sections (or a list of {{ ... }} inline tables)", source)
    return raw


def _parse_media(name: str, raw, factory, source: str) -> "MediaSettings":
    nested = ("instances", "rtpengine", "profiles")
    scalars = {k: v for k, v in raw.items() if k not in nested} if isinstance(raw, dict) else raw
    plain = _record(name, scalars, MediaSettings, source,
                    **{k: None for k in nested})
    d_raw = raw.get("rtpengine", {})
    interfaces = DEFAULT_DAEMON.interfaces
    if isinstance(d_raw, dict) and "interfaces" in d_raw:
        items = _table_list("media.rtpengine.interfaces", d_raw["interfaces"], source)
        interfaces = tuple(_record(f"media.rtpengine.interfaces[{i}]", item, MediaInterface, source)
                           for i, item in enumerate(items))
        d_raw = {k: v for k, v in d_raw.items() if k != "interfaces"}
    daemon = _record("media.rtpengine", d_raw, RtpengineDaemon, source, interfaces=interfaces)
    if "instances" in raw:
        items = _table_list("media.instances", raw["instances"], source)
        instances = tuple(_record(f"media.instances[{i}]", item, RtpengineInstance, source)
                          for i, item in enumerate(items))
    else:
        instances = (RtpengineInstance(daemon.ng_socket),)
    p_raw = raw.get("profiles", {})
    if not isinstance(p_raw, dict):
        raise SettingsError("media.profiles", f"expected tables, found {p_raw!r}",
                            "write one [media.profiles.NAME] section per profile", source)
    profiles = {DEFAULT_MEDIA_PROFILE.name: DEFAULT_MEDIA_PROFILE}
    for pname, table in p_raw.items():
        profiles[pname] = _record(f"media.profiles.{pname}", table, MediaProfile, source, name=pname)
    return MediaSettings(**{f.name: getattr(plain, f.name) for f in fields(MediaSettings) if f.name not in nested},
                         instances=instances, rtpengine=daemon, profiles=tuple(profiles.values()))


DEFAULT_DAEMON = RtpengineDaemon()
_TABLE_PARSERS = {"media": _parse_media}


def _validate_media(m: "MediaSettings", source: str) -> None:
    for key, (low, high, unit) in MEDIA_RANGES.items():
        value = getattr(m, key)
        _require(low <= value <= high, f"media.{key}", f"{value} is out of range", f"use {low} to {high} {unit}", source)
    # a hung rtpengine: each instance gets the command, then (all down) a ping
    worst = m.timeout_ms * m.retries * len(m.instances) * (2 if m.ping_when_all_down else 1)
    _require(worst <= MAX_OFFER_WAIT_MS, "media.timeout_ms",
             f"a new call would wait up to {worst} ms for its 503 while rtpengine hangs "
             f"(timeout_ms x retries x instances{' x 2 for the ping' if m.ping_when_all_down else ''})",
             f"keep it at most {MAX_OFFER_WAIT_MS} ms: lower timeout_ms or retries", source)
    names = [p.name for p in m.profiles]
    _require(m.profile in names, "media.profile", f"{m.profile!r} is not a profile",
             f"define [media.profiles.{m.profile}] or use one of: {', '.join(names)}", source)
    for p in m.profiles:
        _validate_profile(p, source)
    _validate_daemon(m, source)
    _require(bool(m.instances), "media.instances", "is empty", 'list at least one { ng = "udp:127.0.0.1:2223" }', source)
    for i, inst in enumerate(m.instances):
        key = f"media.instances[{i}]"
        if _require(NG_SOCKET_RE.match(inst.ng) is not None, f"{key}.ng", f"{inst.ng!r} is not an ng socket",
                    'write "udp:HOST:PORT" or "udp6:[ADDRESS]:PORT", e.g. "udp:127.0.0.1:2223"', source):
            port = int(inst.ng.rsplit(":", 1)[1])
            _require(1 <= port <= 65535, f"{key}.ng", f"port {port} is out of range", "use a port from 1 to 65535", source)
        _require(1 <= inst.weight <= 1000, f"{key}.weight", f"{inst.weight} is out of range", "use 1 to 1000", source)
    socks = [inst.ng for inst in m.instances]
    _require(len(set(socks)) == len(socks), "media.instances", "names one ng socket twice",
             "list each rtpengine once (use weight to prefer one)", source)
    _require_local_instance(m, source)


def _validate_profile(p: "MediaProfile", source: str) -> None:
    key = f"media.profiles.{p.name}"
    _require(MEDIA_NAME_RE.match(p.name) is not None, key, "is not a valid profile name",
             "use letters, digits, _ and - (starting with a letter)", source)
    for flag in p.flags:
        _require(RTP_FLAG_RE.match(flag) is not None, f"{key}.flags", f"{flag!r} is not an rtpengine flag",
                 "write one flag per list item, without spaces or quotes, e.g. \"replace-origin\"", source)
        owned = next((o for o in ROUTE_OWNED_FLAGS if flag == o or (o.endswith("=") and flag.startswith(o))), None)
        _require(owned is None, f"{key}.flags", f"{flag!r} is set by the routes, not by a profile",
                 "remove it: kemi adds trust-address or SIP-source-address from NAT detection, "
                 "and direction= from the interfaces the route chooses", source)
    for mode in p.rtcp_mux:
        _require(mode in RTCP_MUX_MODES, f"{key}.rtcp_mux", f"{mode!r} is not an rtcp-mux mode",
                 f"use any of {', '.join(RTCP_MUX_MODES)} (rtcp-mux-MODE)", source)
    for field_name in ("codec_mask", "codec_strip", "codec_transcode"):
        for codec in getattr(p, field_name):
            _require(CODEC_RE.match(codec) is not None, f"{key}.{field_name}", f"{codec!r} is not a codec name",
                     'write encoding names as rtpengine knows them, e.g. "PCMU", "opus", "all"', source)


def _validate_daemon(m: "MediaSettings", source: str) -> None:
    d = m.rtpengine
    for key, (low, high, unit) in DAEMON_RANGES.items():
        value = getattr(d, key)
        _require(low <= value <= high, f"media.rtpengine.{key}", f"{value} is out of range",
                 f"use {low} to {high} {unit}", source)
    host, _, port = d.listen_ng.rpartition(":")
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback and port.isdigit()
    except ValueError:
        loopback = False
    _require(loopback and 1 <= int(port) <= 65535, "media.rtpengine.listen_ng",
             f"{d.listen_ng!r} is not a loopback ADDRESS:PORT",
             'listen on loopback, e.g. "127.0.0.1:2223" (the ng protocol has no authentication)', source)
    _require(1024 <= d.port_min < d.port_max <= 65535 and d.port_max - d.port_min >= 3, "media.rtpengine",
             f"port_min ({d.port_min}) .. port_max ({d.port_max}) is not a usable range",
             "use 1024 <= port_min < port_max <= 65535 with at least 4 ports (one call needs 4 per medium)", source)
    _require(not (port.isdigit() and d.port_min <= int(port) <= d.port_max), "media.rtpengine.listen_ng",
             f"port {port} lies in the media port range", "move listen_ng or the port range apart", source)
    _require(bool(d.interfaces), "media.rtpengine.interfaces", "is empty",
             'list at least one { name = "default", address = "127.0.0.1" }', source)
    seen = set()
    for i, itf in enumerate(d.interfaces):
        key = f"media.rtpengine.interfaces[{i}]"
        _require(MEDIA_NAME_RE.match(itf.name) is not None, f"{key}.name", f"{itf.name!r} is not a valid name",
                 'use letters, digits, _ and -, e.g. "public"', source)
        _require(itf.name not in seen, f"{key}.name", f"{itf.name!r} is used twice", "give each interface its own name", source)
        seen.add(itf.name)
        for attr in ("address", "advertised"):
            value = getattr(itf, attr)
            if attr == "advertised" and not value:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                _report(SettingsError(f"{key}.{attr}", f"{value!r} is not an IP address",
                                      "write a literal IPv4/IPv6 address; rtpengine's \"any\" skips loopback, "
                                      "so list every address explicitly", source))


def _require_local_instance(m: "MediaSettings", source: str) -> None:
    d = m.rtpengine
    if m.enabled and d.start:
        _require(any(inst.ng == d.ng_socket for inst in m.instances), "media.instances",
                 f"none of them is the rtpengine make run starts ({d.ng_socket})",
                 f'add {{ ng = "{d.ng_socket}" }} or set media.rtpengine.start = false', source)


def _validate_sbc(s: Settings, source: str) -> None:
    sbc = s.sbc
    _require(sbc.gateways_from in GATEWAY_SOURCES, "sbc.gateways_from", f"{sbc.gateways_from!r} is not supported",
             "use " + ", ".join(f'"{g}"' for g in GATEWAY_SOURCES), source)
    _require(100 <= sbc.failover_timeout <= 60000, "sbc.failover_timeout", f"{sbc.failover_timeout} ms is out of range",
             "use 100 to 60000 milliseconds", source)
    _require(0 <= sbc.probing_interval <= 3600, "sbc.probing_interval", f"{sbc.probing_interval} is out of range",
             "use 0 (no probing) to 3600 seconds", source)
    for key in ("probing_threshold", "inactive_threshold"):
        value = getattr(sbc, key)
        _require(1 <= value <= 100, f"sbc.{key}", f"{value} is out of range", "use 1 to 100", source)
    _require(0 <= sbc.did_cache_ttl <= 3600, "sbc.did_cache_ttl", f"{sbc.did_cache_ttl} is out of range",
             "use 0 to 3600 seconds", source)
    _require(1 <= sbc.did_cache_size <= 10_000_000, "sbc.did_cache_size", f"{sbc.did_cache_size} is out of range",
             "use 1 to 10000000 entries", source)
    if not sbc.enabled:
        return
    if sbc.gateways_from == "file":
        if _require(sbc.list_file.startswith("/") and '"' not in sbc.list_file, "sbc.list_file",
                    f"{sbc.list_file!r} is not an absolute path", 'write e.g. "/etc/kemi/dispatcher.list"', source):
            _require(Path(sbc.list_file).is_file(), "sbc.list_file", f"{sbc.list_file} does not exist",
                     "create it (dispatcher list format, see docs/sbc.md)", source)
    else:
        _require(not sbc.list_file, "sbc.list_file", f"is set but gateways_from is {sbc.gateways_from!r}",
                 'remove it, or set gateways_from = "file"', source)
    names, sets, sockets = {}, {}, {l.socket: "sip.listen" for l in s.sip.listen}
    for role, side in (("public", sbc.public), ("private", sbc.private)):
        key = f"sbc.{role}"
        _require(SOCKET_NAME_RE.match(side.name) is not None, f"{key}.name", f"{side.name!r} is not a usable name",
                 "use letters, digits, '-' or '_', starting with a letter (at most 32)", source)
        _require(side.name not in names, f"{key}.name", f"{side.name!r} is also the name of sbc.{names.get(side.name)}",
                 "give each side its own name", source)
        names[side.name] = role
        _require(1 <= side.gateway_set <= 10000, f"{key}.gateway_set", f"{side.gateway_set} is out of range",
                 "use a dispatcher set id from 1 to 10000", source)
        _require(side.gateway_set not in sets, f"{key}.gateway_set",
                 f"set {side.gateway_set} is also sbc.{sets.get(side.gateway_set)}'s", "give each side its own set", source)
        sets[side.gateway_set] = role
        _require(side.algorithm in DS_ALGORITHMS, f"{key}.algorithm", f"{side.algorithm} is not supported",
                 "use " + ", ".join(f"{k} ({v})" for k, v in DS_ALGORITHMS.items()), source)
        _require(bool(side.listen), f"{key}.listen", "no socket for this side",
                 f'list the SBC\'s address on the {role} NIC, e.g. ["udp:203.0.113.1:5060"]', source)
        for l in side.listen:
            _require(l.socket not in sockets, f"{key}.listen", f"{l.socket} is also in {sockets.get(l.socket)}",
                     "list each socket once", source)
            sockets[l.socket] = f"{key}.listen"
        _require(bool(side.networks), f"{key}.networks", "no network for this side",
                 'list the CIDRs of the hosts on this side, e.g. ["203.0.113.0/24", "2001:db8::/32"]', source)
        for cidr in side.networks:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                _report(SettingsError(f"{key}.networks", f"{cidr!r} is not a network ({exc})",
                                      'write "address/prefix" with no host bits, e.g. "203.0.113.0/24"', source))
        if sbc.gateways_from == "settings":
            _require(bool(side.gateways), f"{key}.gateways", "no gateway for this side",
                     'list them, e.g. ["sip:203.0.113.10:5060"], or set sbc.gateways_from', source)
        else:
            _require(not side.gateways, f"{key}.gateways", f"listed but sbc.gateways_from is {sbc.gateways_from!r}",
                     f'remove them (the {sbc.gateways_from} is used), or set gateways_from = "settings"', source)
        for uri in side.gateways:
            if not _require(GATEWAY_URI_RE.match(uri) is not None, f"{key}.gateways", f"{uri!r} is not a gateway URI",
                            'write "sip:HOST[:PORT][;transport=udp|tcp|tls]", e.g. "sip:203.0.113.10:5060"', source):
                continue
            _require(gateway_socket_name(side, uri) is not None, f"{key}.gateways",
                     f"{uri!r}: no socket of sbc.{role}.listen has its protocol and address family",
                     "add such a socket to the side's listen list", source)


def _validate_sbc_media(s: Settings, source: str) -> None:
    """An SBC with media anchoring: each side has its own rtpengine interface, and (when make
    run starts rtpengine) that interface is one of media.rtpengine.interfaces."""
    sbc, m = s.sbc, s.media
    if not (sbc.enabled and m.enabled):
        return
    profiles = [p.name for p in m.profiles]
    used = {}
    for role, side in (("public", sbc.public), ("private", sbc.private)):
        key, name = f"sbc.{role}", side.media_interface
        _require(MEDIA_NAME_RE.match(name) is not None, f"{key}.rtpengine_interface",
                 f"{name!r} is not a valid rtpengine interface name",
                 'use letters, digits, _ and -, starting with a letter, e.g. "public"', source)
        _require(name not in used, f"{key}.rtpengine_interface",
                 f"{name!r} is also sbc.{used.get(name)}'s rtpengine interface",
                 "give each side its own interface: media must leave each NIC from that NIC's address",
                 source)
        used[name] = role
        _require(not side.media_profile or side.media_profile in profiles, f"{key}.media_profile",
                 f"{side.media_profile!r} is not a profile",
                 f"define [media.profiles.{side.media_profile}] or use one of: {', '.join(profiles)}", source)
        if not m.rtpengine.start:
            continue          # a remote rtpengine: its --interface names are not in these settings
        names = [i.name for i in m.rtpengine.interfaces]
        example = side.listen[0].host if side.listen else "ADDRESS"
        _require(name in names, "media.rtpengine.interfaces",
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


SECURITY_RANGES = {             # key: (lowest, highest, unit) accepted
    "flood_interval": (1, 60, "seconds"),
    "flood_requests": (2, 100_000, "requests"),
    "auth_failure_limit": (0, 1000, "failed attempts (0 = never ban for them)"),
    "auth_failure_window": (1, 86400, "seconds"),
    "ban_time": (1, 7 * 86400, "seconds"),
}
TLS_METHODS = ("TLSv1.2+", "TLSv1.3")


def _validate_security(sec: "SecuritySettings", source: str) -> None:
    for name, (low, high, unit) in SECURITY_RANGES.items():
        value = getattr(sec, name)
        _require(low <= value <= high, f"security.{name}", f"{value} is out of range",
                 f"use {low} to {high} {unit}", source)
    _require(sec.route_secret == "" or (len(sec.route_secret) >= 16 and sec.route_secret.isprintable()),
             "security.route_secret", "is shorter than 16 characters or has control characters",
             'use e.g. the output of `openssl rand -hex 32`, or "" for a random one per start', source)
    for agent in sec.scanner_user_agents:
        _require(bool(agent.strip()) and agent.isprintable(), "security.scanner_user_agents",
                 f"{agent!r} is empty or has control characters", "list plain User-Agent substrings", source)


def _validate_tls(s: "Settings", source: str) -> None:
    tls, has_tls_socket = s.tls, any(l.proto == "tls" for l in s.sip.listen)
    if not tls.enabled:
        _require(not has_tls_socket, "sip.listen", "has a tls: socket but tls.enabled is false",
                 "set tls.enabled = true with a certificate and key, or remove the tls: socket", source)
        return
    _require(has_tls_socket, "tls.enabled", "is true but sip.listen has no tls: socket",
             'add e.g. "tls:127.0.0.1:5061" to sip.listen', source)
    _require(tls.method in TLS_METHODS, "tls.method", f"{tls.method!r} is not supported",
             "use " + " or ".join(TLS_METHODS), source)
    for key in ("certificate", "private_key", "ca_list"):
        path = getattr(tls, key)
        if key == "ca_list" and not path:
            continue
        if _require(path.startswith("/") and '"' not in path, f"tls.{key}", f"{path!r} is not an absolute path",
                    "write the absolute path of a PEM file", source):
            _require(Path(path).is_file(), f"tls.{key}", f"{path} does not exist",
                     "create it (e.g. with openssl req -x509 ...) or fix the path", source)


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text))


# --- [metrics] and [logging] (docs/observability.md) -----------------------------------

CORE_STATS_RE = re.compile(r"^(all|[A-Za-z0-9_]+:?)?$")


def _validate_metrics(s: Settings, source: str) -> None:
    from kemi.observe.metrics import METRICS_SOCKET_NAME

    m = s.metrics
    _require(CORE_STATS_RE.match(m.core_stats) is not None, "metrics.core_stats",
             f"{m.core_stats!r} is not a statistics selection",
             'use "all", "" (none), a group like "tm:" or one statistic name', source)
    host, sep, port = m.listen.rpartition(":")
    try:
        addr = ipaddress.ip_address(host.strip("[]")) if sep and port.isdigit() else None
    except ValueError:
        addr = None
    fix = 'write "ADDRESS:PORT" with a literal IP, e.g. "127.0.0.1:9090" or "[::1]:9090"'
    # _require records a problem and returns False: the later checks need a parsed address
    if not _require(addr is not None and (addr.version == 4) == (not host.startswith("[")) and
                    (addr.version == 4 or host.endswith("]")), "metrics.listen",
                    f"{m.listen!r} is not ADDRESS:PORT", fix, source):
        return
    if not _require(1 <= int(port) <= 65535, "metrics.listen", f"port {port} is out of range",
                    "use a port from 1 to 65535", source):
        return
    _require(not addr.is_unspecified, "metrics.listen", f"{m.listen!r} listens on every address",
             "name one address: the endpoint has no authentication (loopback, or a management "
             "network's address)", source)
    if not m.enabled:
        return
    for listen, name in s.listens:
        _require(not (listen.host == str(addr) and listen.port == int(port)), "metrics.listen",
                 f"{m.listen} is also the SIP socket {listen.socket}",
                 "give the metrics endpoint a port of its own (SIP never reaches it)", source)
        _require(name != METRICS_SOCKET_NAME, "sbc", f"a side's socket is named {name!r}",
                 f"rename the SBC side: {METRICS_SOCKET_NAME!r} names the metrics socket", source)


def _validate_logging(s: Settings, source: str) -> None:
    from kemi.observe.decisions import DECISION_LEVELS

    level = s.logging.decision_level
    _require(level in DECISION_LEVELS, "logging.decision_level", f"{level!r} is not supported",
             "use " + " or ".join(f'"{x}"' for x in DECISION_LEVELS), source)
