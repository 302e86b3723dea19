"""The settings schema: one frozen dataclass per TOML table; defaults are the loopback demo.

Also the names shared by validation and rendering (constants, SettingsError).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kemi.names import DMQ_SOCKET_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "settings.toml"
SETTINGS_ENV = "KEMI_SETTINGS"
RENDERED_CFG_NAME = "kamailio-settings.cfg"
# Settings fields that are not TOML tables: where the values came from
META_FIELDS = ("source", "environment")

LISTEN_RE = re.compile(r"^(udp|tcp|tls):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
PYTHON_ENGINES = ("auto", "app_python3", "app_python3s")
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


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class SettingsError(ValueError):
    """A setting is missing, unknown or has a value we cannot run with."""

    def __init__(self, key: str, problem: str, fix: str, source: str = ""):
        where = f" in {source}" if source else ""
        super().__init__(f"setting '{key}'{where}: {problem}; {fix}")
        self.key = key
        self.problems: tuple[SettingsError, ...] = (self,)


class SettingsProblems(SettingsError):
    """Several problems in one settings file, reported together: one line each, in file order.

    `key` is the first problem's key; `problems` holds every one (kemi check prints them all).
    """

    def __init__(self, problems: list[SettingsError]):
        ValueError.__init__(self, "\n".join(str(p) for p in problems))
        self.key = problems[0].key
        self.problems = tuple(problems)


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
    # more servers of the same (replicated, e.g. Galera) database, "HOST[:PORT]", tried in
    # order when url's host fails: Kamailio through db_cluster, the Python side by itself.
    # Same user, password and database name as url
    failover: tuple[str, ...] = ()

    def connect_args(self) -> dict:
        """mysqlclient keyword arguments for this URL (host 'localhost' = unix socket)."""
        parts = urlsplit(self.url)
        args = {"host": parts.hostname or "localhost", "user": unquote(parts.username or ""),
                "passwd": unquote(parts.password or ""), "db": parts.path.lstrip("/"),
                "charset": "utf8mb4", "connect_timeout": 2}
        if parts.port:
            args["port"] = parts.port
        return args

    def failover_urls(self) -> tuple[str, ...]:
        """url with its host replaced by each failover server, in order."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        return tuple(parts._replace(netloc=f"{userinfo}@{server}").geturl() for server in self.failover)

    def all_connect_args(self) -> tuple[dict, ...]:
        """connect_args() for url, then for each failover server."""
        out = [self.connect_args()]
        for server in self.failover:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            args = dict(out[0], host=host or server)
            args.pop("port", None)
            if port:
                args["port"] = int(port)
            out.append(args)
        return tuple(out)


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
    # the Kamailio module that runs the routing: "auto" (app_python3s on Kamailio 6+, where it
    # exists and enters Python cheaper, app_python3 on 5.x), "app_python3" or "app_python3s"
    engine: str = "auto"


@dataclass(frozen=True)
class RuntimeSettings:
    # where Kamailio puts its pid file and control sockets (kamcmd / kamctl use them)
    dir: str = "/run/kamailio"
    # Kamailio debug level: -3 alert .. 3 debug
    log_level: int = 2
    # Kamailio's shared memory (MB, its shm_mem_size); 0 = Kamailio's default (64). A cluster
    # node with many contacts needs more: each replicated save holds shm per peer for seconds
    shm_mb: int = 0


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
    # whose media address rtpengine learns from packets (kemi/media/learning.py): "nat" only
    # parties behind NAT, "none" nobody, "all" everyone (rtpengine's default, no strict-source)
    endpoint_learning: str = "nat"

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
class MetricsSettings:
    # true: Prometheus metrics over HTTP (xhttp + xhttp_prom), GET http://LISTEN/metrics
    enabled: bool = False
    # "ADDRESS:PORT" (TCP) of the metrics endpoint; no authentication: keep it on loopback
    # or a management network. Only this socket serves /metrics, and it takes no SIP.
    listen: str = "127.0.0.1:9090"
    # Kamailio's own statistics beside the package's counters (xhttp_prom_stats):
    # "all", "" (none), a group "tm:" or one statistic name
    core_stats: str = "all"
    # count every entry into Python per callback (Kamailio statistics kemi_entries_*, also on
    # /metrics with core_stats): what make bench reports per call; one KSR call per entry
    count_python_entries: bool = False

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def socket(self) -> str:
        return f"tcp:{self.listen}"


WEBSOCKET_SCHEMES = {"ws": "tcp", "wss": "tls"}        # WebSocket listen scheme -> Kamailio's socket proto
WEBSOCKET_LISTEN_RE = re.compile(r"^(ws|wss):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")


@dataclass(frozen=True)
class WebsocketSettings:
    # true: SIP over WebSocket (RFC 7118) for browsers: the websocket module, on the sockets below
    enabled: bool = False
    # "ws:ADDRESS:PORT" (plain, over TCP) and "wss:ADDRESS:PORT" (over TLS: needs [tls] with a
    # certificate). Browsers refuse ws: from an https page: use wss in production
    listen: tuple[str, ...] = ("ws:127.0.0.1:8080",)
    # Origin headers a handshake may carry (e.g. "https://phone.example.com"); [] = any origin
    origins: tuple[str, ...] = ()

    @property
    def sockets(self) -> tuple[tuple[Listen, str], ...]:
        """(Listen, socket name) per listen entry: "ws", "wss", then "ws-2", ..."""
        out, count = [], {}
        for entry in self.listen:
            m = WEBSOCKET_LISTEN_RE.match(entry)
            if not m:
                continue
            scheme = m.group(1)
            count[scheme] = count.get(scheme, 0) + 1
            name = scheme if count[scheme] == 1 else f"{scheme}-{count[scheme]}"
            out.append((Listen(WEBSOCKET_SCHEMES[scheme], m.group(2), int(m.group(3))), name))
        return tuple(out)


@dataclass(frozen=True)
class LoggingSettings:
    # the structured decision log (docs/observability.md) at start; switch it at runtime with
    # `kamcmd cfg.seti kemi_log decisions 1` (0 = off), no restart
    decisions: bool = False
    # the Kamailio log level of those lines: "info" or "notice"
    decision_level: str = "info"


# --- [cluster]: several nodes share registrations, bans and the Record-Route secret (docs/cluster.md) ---
CLUSTER_REGISTRATIONS = {"dmq": "in memory on every node, replicated by DMQ (dmq_usrloc)",
                         "database": "usrloc db_mode 3 on the shared (Galera) database"}


@dataclass(frozen=True)
class ClusterSettings:
    # off: one node, exactly as without this table
    enabled: bool = False
    # this node: its position in `nodes`, from 1 (also Kamailio's server_id, so the
    # rtpengine ng cookies of two nodes never collide)
    node: int = 1
    # every node's cluster address (IPv4 or IPv6), in the same order on every node
    nodes: tuple[str, ...] = ()
    # the DMQ socket's UDP port on each node's address (KDMQ requests, peers only)
    dmq_port: int = 5090
    # the shared secret of the cluster: signs the Record-Route, so an in-dialog request a
    # node signed passes any other (security.route_secret stays "")
    secret: str = ""
    # where the location set lives: "dmq" (every node's memory, dmq_usrloc) or "database"
    # (usrloc db_mode 3 on the shared database)
    registrations: str = "dmq"
    # bans and failed-auth counts replicated to every node (htable over DMQ)
    share_bans: bool = True
    # the floating address (keepalived/VRRP) in front of the nodes: every node listens on it
    # too (it needs net.ipv4.ip_nonlocal_bind=1). "" = none
    floating_address: str = ""
    # keepalived (kemi_tools/stack/keepalived.py): the NIC and prefix length the floating
    # address goes on, the VRRP router id (unique on that LAN), the advert interval (ms): a
    # dead holder is replaced after about 3 intervals
    floating_interface: str = "eth0"
    floating_prefix: int = 24
    floating_router_id: int = 51
    floating_advert_ms: int = 500
    # dmq mode: a starting node asks its peers for every contact they hold (dmq_usrloc sync)
    sync: bool = True
    # dmq mode: a starting node asks its peers how many contacts they hold and answers a
    # call for an unregistered user 503 (Retry-After) instead of 480 until it holds as many,
    # for at most this many seconds (0: no wait)
    sync_wait: int = 30
    # dmq_usrloc full sync: contacts per KDMQ message (up to 150), and per batch, between
    # which the sender pauses sync_pause_ms
    sync_contacts_per_message: int = 50
    sync_batch: int = 2000
    sync_pause_ms: int = 20

    @property
    def address(self) -> str:
        """This node's cluster address ("" while `node` names no entry: the check reports it)."""
        return self.nodes[self.node - 1] if 1 <= self.node <= len(self.nodes) else ""

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(a for i, a in enumerate(self.nodes, 1) if i != self.node)

    def dmq_uri(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"sip:{host}:{self.dmq_port}"


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
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    websocket: WebsocketSettings = field(default_factory=WebsocketSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    source: str = ""
    # the KEMI__ environment variables applied over the file: (variable, value as written)
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def listens(self) -> tuple[tuple[Listen, str], ...]:
        """Every socket Kamailio listens on, with its name ("" = unnamed)."""
        out = [(l, "") for l in self.sip.listen]
        if self.sbc.enabled:
            for side in self.sbc.sides:
                out += list(zip(side.listen, side.socket_names()))
        c = self.cluster
        if c.enabled:
            # the floating address on every SIP port; the DMQ socket on this node's address
            if c.floating_address:
                ports = dict.fromkeys((l.proto, l.port) for l in self.sip.listen if l.proto in ("udp", "tcp"))
                out += [(Listen(proto, _bracket(c.floating_address), port), "") for proto, port in ports]
            if c.address:
                out.append((Listen("udp", _bracket(c.address), c.dmq_port), DMQ_SOCKET_NAME))
        if self.websocket.enabled:
            out += list(self.websocket.sockets)
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
