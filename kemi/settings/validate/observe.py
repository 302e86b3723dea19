"""[metrics] and [logging]: the Prometheus endpoint and the decision log. docs/observability.md."""
from __future__ import annotations

import ipaddress
import re

from kemi.names import METRICS_SOCKET_NAME
from kemi.observe.decisions import DECISION_LEVELS
from kemi.settings.schema import Settings
from kemi.settings.validate.problems import require

CORE_STATS_RE = re.compile(r"^(all|[A-Za-z0-9_]+:?)?$")


def validate_metrics(s: Settings, source: str) -> None:
    m = s.metrics
    require(CORE_STATS_RE.match(m.core_stats) is not None, "metrics.core_stats",
            f"{m.core_stats!r} is not a statistics selection",
            'use "all", "" (none), a group like "tm:" or one statistic name', source)
    host, sep, port = m.listen.rpartition(":")
    try:
        addr = ipaddress.ip_address(host.strip("[]")) if sep and port.isdigit() else None
    except ValueError:
        addr = None
    fix = 'write "ADDRESS:PORT" with a literal IP, e.g. "127.0.0.1:9090" or "[::1]:9090"'
    # require records a problem and returns False: the later checks need a parsed address
    if not require(addr is not None and (addr.version == 4) == (not host.startswith("[")) and
                    (addr.version == 4 or host.endswith("]")), "metrics.listen",
                   f"{m.listen!r} is not ADDRESS:PORT", fix, source):
        return
    if not require(1 <= int(port) <= 65535, "metrics.listen", f"port {port} is out of range",
                   "use a port from 1 to 65535", source):
        return
    require(not addr.is_unspecified, "metrics.listen", f"{m.listen!r} listens on every address",
            "name one address: the endpoint has no authentication (loopback, or a management "
            "network's address)", source)
    if not m.enabled:
        return
    for listen, name in s.listens:
        require(not (listen.host == str(addr) and listen.port == int(port)), "metrics.listen",
                f"{m.listen} is also the SIP socket {listen.socket}",
                "give the metrics endpoint a port of its own (SIP never reaches it)", source)
        require(name != METRICS_SOCKET_NAME, "sbc", f"a side's socket is named {name!r}",
                f"rename the SBC side: {METRICS_SOCKET_NAME!r} names the metrics socket", source)


def validate_logging(s: Settings, source: str) -> None:
    level = s.logging.decision_level
    require(level in DECISION_LEVELS, "logging.decision_level", f"{level!r} is not supported",
            "use " + " or ".join(f'"{x}"' for x in DECISION_LEVELS), source)
