"""The site's settings: one TOML file, read by Python and rendered for kamailio.cfg.

Every value a site changes (listen sockets, SIP domain, DB URL, usrloc mode, ...) lives
in one TOML file. Kamailio never reads it directly: `render_kamailio_defines()` turns it
into `kamailio-settings.cfg` (#!define lines, listen=, modparams) that kamailio.cfg
includes, and the Python routing loads the same file at mod_init. Both sides therefore
see one value, written once.

Validation happens once, at load: a bad value raises SettingsError naming the key, what
was found and what is accepted, and Kamailio refuses to start.

    python3 -m kemi.settings check  [FILE]   validate, print the effective settings
    python3 -m kemi.settings render [FILE] [OUTDIR]  write OUTDIR/kamailio-settings.cfg
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "settings.toml"
SETTINGS_ENV = "KEMI_SETTINGS"
RENDERED_CFG_NAME = "kamailio-settings.cfg"

LISTEN_RE = re.compile(r"^(udp|tcp|tls):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
USRLOC_DB_MODES = {1: "write-through", 2: "write-back", 3: "DB only"}
LOG_LEVELS = {-3: "alert", -2: "crit", -1: "err", 0: "warn", 1: "notice", 2: "info", 3: "debug"}


class SettingsError(ValueError):
    """A setting is missing, unknown or has a value we cannot run with."""

    def __init__(self, key: str, problem: str, fix: str, source: str = ""):
        where = f" in {source}" if source else ""
        super().__init__(f"setting '{key}'{where}: {problem}; {fix}")
        self.key = key


# --- the schema: one dataclass per TOML table, defaults are the loopback demo --------


@dataclass(frozen=True)
class Listen:
    proto: str
    address: str
    port: int

    @property
    def socket(self) -> str:
        return f"{self.proto}:{self.address}:{self.port}"

    @property
    def host(self) -> str:
        return self.address.strip("[]")


@dataclass(frozen=True)
class SipSettings:
    # the SIP domain of the subscribers (kamctl's SIP_DOMAIN); also the digest realm
    domain: str = "127.0.0.1"
    # sockets Kamailio listens on, "proto:address:port"
    listen: tuple[Listen, ...] = (Listen("udp", "127.0.0.1", 5060),)
    # SIP worker processes per UDP socket
    children: int = 4
    # extra names the proxy answers to, besides listen addresses and the domain
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "mysql://kamailio:kamailiorw@localhost/kamailio"
    # read-only account for kamctl (it insists on having one)
    ro_url: str = "mysql://kamailioro:kamailioro@localhost/kamailio"
    # usrloc db_mode: 1 write-through, 2 write-back, 3 DB only
    usrloc_db_mode: int = 1
    # seconds a subscriber-exists answer is cached by the Python side
    cache_ttl: int = 30
    cache_size: int = 10000

    def connect_args(self) -> dict:
        """mysqlclient keyword arguments for this URL (host 'localhost' = unix socket)."""
        parts = urlsplit(self.url)
        args = {"host": parts.hostname or "localhost", "user": unquote(parts.username or ""),
                "passwd": unquote(parts.password or ""), "db": parts.path.lstrip("/"),
                "charset": "utf8mb4", "connect_timeout": 2}
        if parts.port:
            args["port"] = parts.port
        return args


@dataclass(frozen=True)
class RegistrarSettings:
    max_expires: int = 3600
    min_expires: int = 60
    default_expires: int = 3600
    # contacts kept per AOR (0 = unlimited)
    max_contacts: int = 10


@dataclass(frozen=True)
class PythonSettings:
    # "module:Class" of the routing class Kamailio runs; a subclass of kemi.routing.Router
    router: str = "kemi.routing:Router"
    # folders added to sys.path first, where a site keeps its own routing modules
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeSettings:
    # where Kamailio puts its pid file and control sockets (kamcmd / kamctl use them)
    dir: str = "/run/kamailio"
    # Kamailio debug level: -3 alert .. 3 debug
    log_level: int = 2


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    python: PythonSettings = field(default_factory=PythonSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    source: str = ""

    @property
    def ctl_socket(self) -> str:
        return f"{self.runtime.dir}/kamailio_ctl"

    @property
    def rpc_fifo(self) -> str:
        return f"{self.runtime.dir}/kamailio_rpc.fifo"

    @property
    def pid_file(self) -> str:
        return f"{self.runtime.dir}/kamailio.pid"


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
    return parse_settings(raw, source=str(file))


def parse_settings(raw: dict, source: str = "") -> Settings:
    """Build and validate Settings from a parsed TOML document."""
    _reject_unknown(raw, Settings, "", source)
    tables = {}
    for f in fields(Settings):
        if f.name == "source":
            continue
        tables[f.name] = _build_table(f.name, raw.get(f.name, {}), f.default_factory, source)
    settings = Settings(**tables, source=source)
    _validate(settings, source)
    return settings


def _reject_unknown(raw: dict, cls, prefix: str, source: str) -> None:
    known = {f.name for f in fields(cls) if f.name != "source"}
    for key in raw:
        if key not in known:
            raise SettingsError(prefix + key, "unknown key",
                                f"accepted keys here: {', '.join(sorted(known))}", source)


def _build_table(name: str, raw, factory, source: str):
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
        elif name == "sip" and f.name == "listen":
            values[f.name] = _parse_listen(key, raw[f.name], source)
        else:
            values[f.name] = _coerce(key, raw[f.name], current, source)
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


def _require(ok: bool, key: str, problem: str, fix: str, source: str) -> None:
    if not ok:
        raise SettingsError(key, problem, fix, source)


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


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text))


# --- rendering for kamailio.cfg ------------------------------------------------------


def render_kamailio_defines(s: Settings) -> str:
    """The cfg fragment kamailio.cfg includes: every site value it needs, from `s`."""
    entry = PROJECT_ROOT / "kemi" / "kamailio_entry.py"
    lines = [
        f"# Generated from {s.source or 'defaults'} by `python3 -m kemi.settings render`.",
        "# Do not edit: change the settings file and render again (make run does).",
        f'#!define KEMI_SETTINGS "{s.source}"',
        f'#!define KEMI_ROOT "{PROJECT_ROOT}"',
        f'#!define KEMI_ENTRY "{entry}"',
        f'#!define DBURL "{s.database.url}"',
        f'#!define SIP_DOMAIN "{s.sip.domain}"',
        f"#!define USRLOC_DB_MODE {s.database.usrloc_db_mode}",
        f"#!define REG_MAX_EXPIRES {s.registrar.max_expires}",
        f"#!define REG_MIN_EXPIRES {s.registrar.min_expires}",
        f"#!define REG_DEFAULT_EXPIRES {s.registrar.default_expires}",
        f"#!define REG_MAX_CONTACTS {s.registrar.max_contacts}",
        f"#!define SIP_CHILDREN {s.sip.children}",
        f"#!define SUBSCRIBER_CACHE_TTL {s.database.cache_ttl}",
        f"#!define LOG_LEVEL {s.runtime.log_level}",
        f'#!define CTL_SOCKET "unix:{s.ctl_socket}"',
        f'#!define RPC_FIFO "{s.rpc_fifo}"',
        *(f"#!define {name} {value}" for name, value in flag_defines().items()),
    ]
    if any(l.proto == "tcp" or l.proto == "tls" for l in s.sip.listen):
        lines.append("#!define WITH_TCP")
    lines += [f"listen={l.socket}" for l in s.sip.listen]
    # alias=NAME:PORT, never a bare NAME: a bare alias makes every port of that host "us",
    # and a phone registered at 127.0.0.1:5071 would look like the proxy to loose_route
    listening = {(l.host, l.port) for l in s.sip.listen}
    for name in dict.fromkeys([s.sip.domain, *s.sip.aliases]):
        for port in dict.fromkeys(l.port for l in s.sip.listen):
            if (name.strip("[]"), port) not in listening:
                lines.append(f"alias={name}:{port}")
    return "\n".join(lines) + "\n"


def flag_defines() -> dict[str, int]:
    """Message/branch flag numbers shared by kamailio.cfg modparams and the Python routes."""
    from kemi import flags
    return {name: getattr(flags, name) for name in flags.__all__}


def write_kamailio_defines(s: Settings, outdir: str | os.PathLike) -> Path:
    out = Path(outdir) / RENDERED_CFG_NAME
    out.write_text(render_kamailio_defines(s), encoding="utf-8")
    return out


def describe(obj, prefix: str = "") -> list[str]:
    """Flat 'key = value' lines of the effective settings (for `check`)."""
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name == "source":
            continue
        if is_dataclass(value) and not isinstance(value, Listen):
            out += describe(value, f"{prefix}{f.name}.")
        elif f.name == "listen":
            out.append(f"{prefix}{f.name} = {[l.socket for l in value]}")
        else:
            out.append(f"{prefix}{f.name} = {value!r}")
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "render"):
        print(__doc__.strip().splitlines()[-2:], file=sys.stderr)
        return 2
    try:
        settings = load_settings(argv[1] if len(argv) > 1 else None)
    except SettingsError as exc:
        print(f"kemi: {exc}", file=sys.stderr)
        return 1
    if argv[0] == "check":
        print(f"# {settings.source}: valid")
        print("\n".join(describe(settings)))
    else:
        out = write_kamailio_defines(settings, argv[2] if len(argv) > 2 else PROJECT_ROOT)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
