"""The top-level Settings: one field per TOML table, each table's dataclass from its own module.

The tables a feature has live in its folder (kemi/media/settings.py is [media], ...); the
proxy's own ([sip] [database] [registrar] [python] [runtime] [tls]) here in kemi/settings/.
The field order is the order `kemi check` prints them in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kemi.cluster.settings import ClusterSettings
from kemi.limits.settings import LimitsSettings
from kemi.media.settings import MediaSettings
from kemi.names import DMQ_SOCKET_NAME
from kemi.nat.settings import NatSettings
from kemi.observe.settings import LoggingSettings, MetricsSettings
from kemi.overload.settings import OverloadSettings
from kemi.records.settings import CaptureSettings, RecordsSettings
from kemi.sbc.settings import SbcSettings
from kemi.schema import Listen, bracket
from kemi.security.settings import SecuritySettings
from kemi.settings.database import DatabaseSettings
from kemi.settings.python import PythonSettings
from kemi.settings.registrar import RegistrarSettings
from kemi.settings.runtime import RuntimeSettings
from kemi.settings.sip import SipSettings
from kemi.settings.tls import TlsSettings
from kemi.topology.settings import TopologySettings
from kemi.websocket.settings import WebsocketSettings


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    nat: NatSettings = field(default_factory=NatSettings)
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
    topology: TopologySettings = field(default_factory=TopologySettings)     # kemi/topology/
    records: RecordsSettings = field(default_factory=RecordsSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)        # kemi/limits/: call limits
    overload: OverloadSettings = field(default_factory=OverloadSettings)
    source: str = ""
    # the KEMI__ environment variables applied over the file: (variable, value as written)
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def listens(self) -> tuple[tuple[Listen, str], ...]:
        """Every socket Kamailio listens on, with its name ("" = unnamed)."""
        out = [(listen, "") for listen in self.sip.listen]
        if self.sbc.enabled:
            for side in self.sbc.sides:
                out += list(zip(side.listen, side.socket_names(), strict=True))
        c = self.cluster
        if c.enabled:
            # the floating address on every SIP port; the DMQ socket on this node's address
            if c.floating_address:
                ports = dict.fromkeys((listen.proto, listen.port) for listen in self.sip.listen
                                      if listen.proto in ("udp", "tcp"))
                out += [(Listen(proto, bracket(c.floating_address), port), "") for proto, port in ports]
            if c.address:
                out.append((Listen("udp", bracket(c.address), c.dmq_port), DMQ_SOCKET_NAME))
        if self.websocket.enabled:
            out += list(self.websocket.sockets)
        return tuple(out)

    # the control sockets and pid file ([runtime] dir)
    @property
    def ctl_socket(self) -> str:
        return self.runtime.ctl_socket

    @property
    def rpc_fifo(self) -> str:
        return self.runtime.rpc_fifo

    @property
    def pid_file(self) -> str:
        return self.runtime.pid_file
