"""[metrics] and [logging]: the Prometheus endpoint (xhttp_prom) and the decision log; renders the
counters' declarations and the decision log's cfg variable. docs/observability.md."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import DECISION_LOG_GROUP, DECISION_LOG_VAR, ENTRY_STATS, METRICS_SOCKET_NAME, OTHER_ENTRY_STAT
from kemi.observe.decisions import DECISION_LEVELS
from kemi.observe.metrics import COUNTERS, LIMIT_METRICS
from kemi.schema import checked_address_port, require, require_own_socket

if TYPE_CHECKING:
    from kemi.settings.model import Settings


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
    # debug hook for soak runs (make soak, kemi/observe/memory.py): every N seconds each process
    # running Python appends what its Python holds (objects, tracemalloc's top allocation
    # sites) to <runtime.dir>/python-memory/<pid>.jsonl. 0 = off: nothing is wrapped, no cost.
    # On, tracemalloc slows allocations and grows the workers' memory: not for production
    python_memory_interval: int = 0

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def socket(self) -> str:
        return f"tcp:{self.listen}"


@dataclass(frozen=True)
class LoggingSettings:
    # the structured decision log (docs/observability.md) at start; switch it at runtime with
    # `kamcmd cfg.seti kemi_log decisions 1` (0 = off), no restart
    decisions: bool = False
    # the Kamailio log level of those lines: "info" or "notice"
    decision_level: str = "info"


CORE_STATS_RE = re.compile(r"^(all|[A-Za-z0-9_]+:?)?$")


def validate_metrics(s: Settings, source: str) -> None:
    m = s.metrics
    require(CORE_STATS_RE.match(m.core_stats) is not None, "metrics.core_stats",
            f"{m.core_stats!r} is not a statistics selection",
            'use "all", "" (none), a group like "tm:" or one statistic name', source)
    low, high = PYTHON_MEMORY_INTERVAL_RANGE
    require(low <= m.python_memory_interval <= high, "metrics.python_memory_interval",
            f"{m.python_memory_interval} is out of range", f"use {low} (off) to {high} seconds", source)
    parsed = checked_address_port("metrics.listen", m.listen, '"127.0.0.1:9090" or "[::1]:9090"', source)
    if parsed is None:
        return
    addr, port = parsed
    require(not addr.is_unspecified, "metrics.listen", f"{m.listen!r} listens on every address",
            "name one address: the endpoint has no authentication (loopback, or a management "
            "network's address)", source)
    if not m.enabled:
        return
    require_own_socket("metrics.listen", m.listen, addr, port, s.listens, METRICS_SOCKET_NAME, "metrics socket",
                       "give the metrics endpoint a port of its own (SIP never reaches it)", source)


# seconds between two Python memory reports (0 = off)
PYTHON_MEMORY_INTERVAL_RANGE = (0, 3600)


def validate_logging(s: Settings, source: str) -> None:
    level = s.logging.decision_level
    require(level in DECISION_LEVELS, "logging.decision_level", f"{level!r} is not supported",
            "use " + " or ".join(f'"{x}"' for x in DECISION_LEVELS), source)


def cfg_lines(s: Settings) -> list[str]:
    """The decision log's cfg variable and, with metrics on, the xhttp_prom defines.

    Written before any listen= line: Kamailio would read a line following a listen= as
    one more listen address.
    """
    lines = [
        # runtime switch: kamcmd cfg.seti kemi_log decisions 1|0 (docs/observability.md)
        f"{DECISION_LOG_GROUP}.{DECISION_LOG_VAR} = {int(s.logging.decisions)} "
        f'desc "kemi decision log: 1 on, 0 off"',
    ]
    if s.metrics.count_python_entries:
        stats = [*ENTRY_STATS.values(), OTHER_ENTRY_STAT]
        lines += [
            # kemi/kamailio_entry.py counts each entry when this is defined
            "#!define KEMI_COUNT_ENTRIES 1",
            "#!define ENTRY_STAT_DECLARATIONS " + " \\\n".join(
                f'modparam("statistics", "variable", "{name}")' for name in stats),
        ]
    if not s.metrics.enabled:
        return lines
    # the call limits' counter and gauge only where a limit is configured (kemi/limits/)
    limits = LIMIT_METRICS if s.limits.calls_on or s.limits.rate_on else ()
    declarations = [f'modparam("xhttp_prom", "{c.kind}", "{c.declaration}")' for c in (*COUNTERS, *limits)]
    lines += [
        "#!define WITH_METRICS",
        f'#!define METRICS_SOCKET_NAME "{METRICS_SOCKET_NAME}"',
        f'#!define METRICS_CORE_STATS "{s.metrics.core_stats}"',
        # one prom_counter modparam per counter of kemi/observe/metrics.py (a multi-line define)
        "#!define METRICS_DECLARATIONS " + " \\\n".join(declarations),
    ]
    return lines


def listen_lines(s: Settings) -> list[str]:
    """The metrics endpoint's socket: the only one named METRICS_SOCKET_NAME (SIP never routed there)."""
    return [f'listen={s.metrics.socket} name "{METRICS_SOCKET_NAME}"'] if s.metrics.enabled else []
