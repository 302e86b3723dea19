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
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
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


# --- [media]: rtpengine media anchoring (parsed by _parse_media, rendered by media_defines) ---


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


@dataclass(frozen=True)
class SecuritySettings:
    # master switch: false turns off scanner drops, flood detection and bans (digest auth stays)
    enabled: bool = True
    # User-Agent substrings (case-insensitive) of SIP scanners: such requests are dropped
    # silently and the source banned; [] disables the check
    scanner_user_agents: tuple[str, ...] = ("friendly-scanner", "sipvicious", "sipcli",
                                            "VaxSIPUserAgent", "pplsip")
    # pike flood detection: more than flood_requests requests per flood_interval seconds
    # from one source address (reached between 1x and 3x for IPv4, see pike) bans it
    flood_detection: bool = True
    flood_interval: int = 2
    flood_requests: int = 30
    # failed digest attempts (wrong password or unknown user) from one source address that
    # get it banned; the count is forgotten auth_failure_window seconds after the last one.
    # 0 = never ban for failed attempts
    auth_failure_limit: int = 5
    auth_failure_window: int = 60
    # seconds a banned source is dropped silently
    ban_time: int = 600
    # secret for the signed Record-Route (kemi/security/dialog.py); "" = a random one per
    # start, which makes dialogs set up before a restart unroutable: set it in production
    route_secret: str = ""


@dataclass(frozen=True)
class TlsSettings:
    # true: load the tls module; sip.listen must then name at least one "tls:" socket
    enabled: bool = False
    # PEM files (absolute paths); the key must not be passphrase-protected
    certificate: str = ""
    private_key: str = ""
    # PEM bundle of CAs to verify client certificates against ("" = clients are not asked)
    ca_list: str = ""
    # oldest protocol accepted: "TLSv1.2+" or "TLSv1.3"
    method: str = "TLSv1.2+"


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    python: PythonSettings = field(default_factory=PythonSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    sbc: SbcSettings = field(default_factory=SbcSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    source: str = ""

    @property
    def listens(self) -> tuple[tuple[Listen, str], ...]:
        """Every socket Kamailio listens on, with its name ("" = unnamed)."""
        out = [(l, "") for l in self.sip.listen]
        if self.sbc.enabled:
            for side in self.sbc.sides:
                out += list(zip(side.listen, side.socket_names()))
        return tuple(out)

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
        build = _TABLE_PARSERS.get(f.name, _build_table)
        tables[f.name] = build(f.name, raw.get(f.name, {}), f.default_factory, source)
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
        elif f.name == "listen":
            values[f.name] = _parse_listen(key, raw[f.name], source)
        elif is_dataclass(current):
            values[f.name] = _build_table(key, raw[f.name], lambda current=current: current, source)
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
    _validate_media(s.media, source)
    _validate_sbc(s, source)
    _validate_sbc_media(s, source)
    _validate_security(s.security, source)
    _validate_tls(s, source)


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
            raise SettingsError(f"{key}.{name}", "unknown key",
                                f"accepted keys here: {', '.join(sorted(known))}", source)
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
        values[f.name] = _coerce(f"{key}.{f.name}", raw[f.name], default, source) if f.name in raw else default
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
        _require(NG_SOCKET_RE.match(inst.ng) is not None, f"{key}.ng", f"{inst.ng!r} is not an ng socket",
                 'write "udp:HOST:PORT" or "udp6:[ADDRESS]:PORT", e.g. "udp:127.0.0.1:2223"', source)
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
    _require(not (d.port_min <= int(port) <= d.port_max), "media.rtpengine.listen_ng",
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
                raise SettingsError(f"{key}.{attr}", f"{value!r} is not an IP address",
                                    "write a literal IPv4/IPv6 address; rtpengine's \"any\" skips loopback, "
                                    "so list every address explicitly", source) from None


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
        _require(sbc.list_file.startswith("/") and '"' not in sbc.list_file, "sbc.list_file",
                 f"{sbc.list_file!r} is not an absolute path", 'write e.g. "/etc/kemi/dispatcher.list"', source)
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
                raise SettingsError(f"{key}.networks", f"{cidr!r} is not a network ({exc})",
                                    'write "address/prefix" with no host bits, e.g. "203.0.113.0/24"', source) from None
        if sbc.gateways_from == "settings":
            _require(bool(side.gateways), f"{key}.gateways", "no gateway for this side",
                     'list them, e.g. ["sip:203.0.113.10:5060"], or set sbc.gateways_from', source)
        else:
            _require(not side.gateways, f"{key}.gateways", f"listed but sbc.gateways_from is {sbc.gateways_from!r}",
                     f'remove them (the {sbc.gateways_from} is used), or set gateways_from = "settings"', source)
        for uri in side.gateways:
            _require(GATEWAY_URI_RE.match(uri) is not None, f"{key}.gateways", f"{uri!r} is not a gateway URI",
                     'write "sip:HOST[:PORT][;transport=udp|tcp|tls]", e.g. "sip:203.0.113.10:5060"', source)
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
        _require(path.startswith("/") and '"' not in path, f"tls.{key}", f"{path!r} is not an absolute path",
                 "write the absolute path of a PEM file", source)
        _require(Path(path).is_file(), f"tls.{key}", f"{path} does not exist",
                 "create it (e.g. with openssl req -x509 ...) or fix the path", source)


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text))


# --- rendering for kamailio.cfg ------------------------------------------------------


def render_kamailio_defines(s: Settings, outdir: str | os.PathLike | None = None) -> str:
    """The cfg fragment kamailio.cfg includes: every site value it needs, from `s`.

    `outdir` is where write_kamailio_defines() puts it (and the rendered dispatcher list).
    """
    entry = PROJECT_ROOT / "kemi" / "kamailio_entry.py"
    sbc = s.sbc
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
        f"#!define LOG_LEVEL {s.runtime.log_level}",
        f'#!define CTL_SOCKET "unix:{s.ctl_socket}"',
        f'#!define RPC_FIFO "{s.rpc_fifo}"',
        # a hop that does not answer at all within this is down (SBC: failover and probes)
        f"#!define TM_FR_TIMER {sbc.failover_timeout if sbc.enabled else TM_FR_TIMER_DEFAULT}",
        *(f"#!define {name} {value}" for name, value in flag_defines().items()),
    ]
    if sbc.enabled:
        lines += [
            "#!define WITH_SBC",
            f"#!define DS_PING_INTERVAL {sbc.probing_interval}",
            f"#!define DS_PROBING_THRESHOLD {sbc.probing_threshold}",
            f"#!define DS_INACTIVE_THRESHOLD {sbc.inactive_threshold}",
        ]
        if sbc.gateways_from == "database":
            lines.append("#!define DS_FROM_DB")
        else:
            lines.append(f'#!define DS_LIST_FILE "{dispatcher_list_path(s, outdir)}"')
    listens = s.listens
    if any(l.proto in ("tcp", "tls") for l, _ in listens):
        lines.append("#!define WITH_TCP")
    lines += media_defines(s)
    lines += security_defines(s)
    lines += [f'listen={l.socket} name "{name}"' if name else f"listen={l.socket}" for l, name in listens]
    # alias=NAME:PORT, never a bare NAME: a bare alias makes every port of that host "us",
    # and a phone registered at 127.0.0.1:5071 would look like the proxy to loose_route
    listening = {(l.host, l.port) for l, _ in listens}
    for name in dict.fromkeys([s.sip.domain, *s.sip.aliases]):
        for port in dict.fromkeys(l.port for l, _ in listens):
            if (name.strip("[]"), port) not in listening:
                lines.append(f"alias={name}:{port}")
    return "\n".join(lines) + "\n"


def media_defines(s: Settings) -> list[str]:
    """#!define lines for the rtpengine module (kamailio.cfg loads it only WITH_RTPENGINE)."""
    from kemi.media import RTPENGINE_INSTANCE_PV

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
def dispatcher_list_path(s: Settings, outdir: str | os.PathLike | None = None) -> Path:
    """The dispatcher list Kamailio reads: the site's own file, or the one rendered beside the cfg."""
    if s.sbc.gateways_from == "file":
        return Path(s.sbc.list_file)
    return Path(outdir or PROJECT_ROOT).resolve() / DISPATCHER_LIST_NAME


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


# htable names the Python routes use (kemi/security/ban.py) and kamailio.cfg declares
BAN_TABLE = "ipban"
AUTH_FAILURE_TABLE = "authfail"
# htable expiry timer (seconds): a ban or a failure count lives at most this much longer
HTABLE_TIMER_INTERVAL = 5


def security_defines(s: Settings) -> list[str]:
    """#!define lines for pike, htable and tls modparams (kamailio.cfg uses them by name)."""
    sec, tls = s.security, s.tls
    lines = [
        f"#!define PIKE_SAMPLING_TIME {sec.flood_interval}",
        f"#!define PIKE_REQS_DENSITY {sec.flood_requests}",
        # pike forgets a source (its hit counts) after this many seconds without requests
        f"#!define PIKE_REMOVE_LATENCY {max(sec.flood_interval * 2, 4)}",
        f'#!define HTABLE_BAN "{BAN_TABLE}=>size=10;autoexpire={sec.ban_time};"',
        # initval=0: sht_inc() creates a missing counter (without it, it fails on a new key)
        f'#!define HTABLE_AUTHFAIL "{AUTH_FAILURE_TABLE}=>size=10;autoexpire={sec.auth_failure_window};initval=0;"',
        f"#!define HTABLE_TIMER_INTERVAL {HTABLE_TIMER_INTERVAL}",
    ]
    if tls.enabled:
        lines += [
            "#!define WITH_TLS",
            f'#!define TLS_METHOD "{tls.method}"',
            f'#!define TLS_CERTIFICATE "{tls.certificate}"',
            f'#!define TLS_PRIVATE_KEY "{tls.private_key}"',
        ]
        if tls.ca_list:
            lines += ["#!define WITH_TLS_CLIENT_CA", f'#!define TLS_CA_LIST "{tls.ca_list}"']
    return lines


def flag_defines() -> dict[str, int]:
    """Message/branch flag numbers shared by kamailio.cfg modparams and the Python routes."""
    from kemi import flags
    return {name: getattr(flags, name) for name in flags.__all__}


def write_kamailio_defines(s: Settings, outdir: str | os.PathLike) -> Path:
    out = Path(outdir) / RENDERED_CFG_NAME
    out.write_text(render_kamailio_defines(s, outdir), encoding="utf-8")
    if s.sbc.enabled and s.sbc.gateways_from == "settings":
        # written next to it, then replaced atomically: a dispatcher.reload never reads half
        target = dispatcher_list_path(s, outdir)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(render_dispatcher_list(s), encoding="utf-8")
        tmp.replace(target)
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
        elif "secret" in f.name and value:
            out.append(f"{prefix}{f.name} = '(set, not shown)'")
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
