"""Rendering the settings for Kamailio: kamailio-settings.cfg (#!define, listen=, alias=)
and, for the SBC, the dispatcher list.
"""
from __future__ import annotations

import os
from dataclasses import fields, is_dataclass
from pathlib import Path

from kemi.settings.schema import (DISPATCHER_LIST_NAME, Listen, META_FIELDS, PROJECT_ROOT, RENDERED_CFG_NAME,
    Settings, TM_FR_TIMER_DEFAULT)
from kemi.settings.environment import environment_digest
from kemi.settings.validate import gateway_socket_name
from kemi.names import (AUTH_FAILURE_TABLE, BAN_TABLE, CLUSTER_TABLE, DECISION_LOG_GROUP, DECISION_LOG_VAR, FLAGS,  # noqa: F401
                        ENTRY_STATS, METRICS_SOCKET_NAME, ON_SL_REPLY_CALLBACK, OTHER_ENTRY_STAT, RELOAD_GENERATION_GROUP, RELOAD_GENERATION_VAR,
                        RTPENGINE_INSTANCE_PV, XHTTP_CALLBACK)
from kemi.observe.metrics import COUNTERS


# --- rendering for kamailio.cfg ------------------------------------------------------


def render_kamailio_defines(s: Settings, outdir: str | os.PathLike | None = None,
                            kemi_root: Path = PROJECT_ROOT) -> str:
    """The cfg fragment kamailio.cfg includes: every site value it needs, from `s`.

    `outdir` is where write_kamailio_defines() puts it (and the rendered dispatcher list);
    `kemi_root` the folder holding the kemi package Kamailio loads (tests run a copy).
    """
    entry = Path(kemi_root) / "kemi" / "kamailio_entry.py"
    sbc = s.sbc
    lines = [
        f"# Generated from {s.source or 'defaults'} by `python3 -m kemi.settings render`.",
        "# Do not edit: change the settings file and render again (make run does).",
        f"# Environment overrides: {', '.join(v for v, _ in s.environment) or 'none'}",
        f'#!define KEMI_SETTINGS "{s.source}"',
        # the Python side refuses to start when its KEMI__ variables differ from these
        f'#!define KEMI_ENVIRONMENT "{environment_digest(s.environment)}"',
        f'#!define KEMI_ROOT "{kemi_root}"',
        f'#!define KEMI_ENTRY "{entry}"',
        # "auto": kamailio.cfg picks app_python3s on Kamailio 6+ (KAMAILIO_5 is Kamailio's own define)
        *([f"#!define KEMI_ENGINE_{s.python.engine.upper()}"] if s.python.engine != "auto" else []),
        # with failover servers every module talks to db_cluster, which tries them in order
        f'#!define DBURL "{DB_CLUSTER_URL if s.database.failover else s.database.url}"',
        f'#!define SIP_DOMAIN "{s.sip.domain}"',
        f"#!define USRLOC_DB_MODE {usrloc_db_mode(s)}",
        # db_mode 3 (DB only): a contact's INSERT re-run after its answer was lost is an upsert
        # (kamailio-common.cfg, docs/cluster.md)
        *(["#!define USRLOC_DB_ONLY"] if usrloc_db_mode(s) == 3 else []),
        f"#!define REG_MAX_EXPIRES {s.registrar.max_expires}",
        f"#!define REG_MIN_EXPIRES {s.registrar.min_expires}",
        f"#!define REG_DEFAULT_EXPIRES {s.registrar.default_expires}",
        f"#!define REG_MAX_CONTACTS {s.registrar.max_contacts}",
        f"#!define SIP_CHILDREN {s.sip.children}",
        f"#!define SUBSCRIBER_CACHE_TTL {s.database.cache_ttl}",
        f"#!define LOG_LEVEL {s.runtime.log_level}",
        f'#!define CTL_SOCKET "unix:{s.ctl_socket}"',
        f'#!define RPC_FIFO "{s.rpc_fifo}"',
        # a hop that does not answer at all within this is down (SBC: failover and probes)
        f"#!define TM_FR_TIMER {sbc.failover_timeout if sbc.enabled else TM_FR_TIMER_DEFAULT}",
        *(f"#!define {name} {value}" for name, value in FLAGS.items()),
        # the Router methods kamailio.cfg names in module parameters (kemi/names.py)
        f'#!define KEMI_ON_SL_REPLY "{ON_SL_REPLY_CALLBACK}"',
        f'#!define KEMI_XHTTP_EVENT "{XHTTP_CALLBACK}"',
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
    # the metrics endpoint is a TCP socket too
    if s.metrics.enabled or any(l.proto in ("tcp", "tls") for l, _ in listens):
        lines.append("#!define WITH_TCP")
    lines += database_cluster_defines(s)
    if s.runtime.shm_mb:
        lines.append(f"shm_mem_size={s.runtime.shm_mb}")
    if s.metrics.enabled or s.websocket.enabled:
        lines.append("#!define WITH_XHTTP")          # xhttp: /metrics and the WebSocket handshake
    if s.websocket.enabled:
        lines.append("#!define WITH_WEBSOCKET")
    lines += media_defines(s)
    lines += security_defines(s)
    lines += cluster_defines(s)
    lines += observe_lines(s)
    lines += [f'listen={l.socket} name "{name}"' if name else f"listen={l.socket}" for l, name in listens]
    if s.metrics.enabled:
        lines.append(f'listen={s.metrics.socket} name "{METRICS_SOCKET_NAME}"')
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
def observe_lines(s: Settings) -> list[str]:
    """The cfg variables (reload generation, decision log) and, with metrics on, the xhttp_prom defines.

    Written before any listen= line: Kamailio would read a line following a listen= as
    one more listen address.
    """
    lines = [
        # make reload bumps it: each worker loads the edited code before its next message
        # (kemi/kamailio_entry.py, docs/reload.md)
        f"{RELOAD_GENERATION_GROUP}.{RELOAD_GENERATION_VAR} = 0 "
        f'desc "kemi live reload: make reload increments it"',
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
    declarations = [f'modparam("xhttp_prom", "prom_counter", "{c.declaration}")' for c in COUNTERS]
    lines += [
        "#!define WITH_METRICS",
        f'#!define METRICS_SOCKET_NAME "{METRICS_SOCKET_NAME}"',
        f'#!define METRICS_CORE_STATS "{s.metrics.core_stats}"',
        # one prom_counter modparam per counter of kemi/observe/metrics.py (a multi-line define)
        "#!define METRICS_DECLARATIONS " + " \\\n".join(declarations),
    ]
    return lines


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


# htable expiry timer (seconds): a ban or a failure count lives at most this much longer
HTABLE_TIMER_INTERVAL = 5


def security_defines(s: Settings) -> list[str]:
    """#!define lines for pike, htable and tls modparams (kamailio.cfg uses them by name)."""
    sec, tls = s.security, s.tls
    # cluster: bans and failure counts replicated over DMQ, and sent whole to a node that joins
    shared = ";dmqreplicate=1" if s.cluster.enabled and s.cluster.share_bans else ""
    lines = [
        f"#!define PIKE_SAMPLING_TIME {sec.flood_interval}",
        f"#!define PIKE_REQS_DENSITY {sec.flood_requests}",
        # pike forgets a source (its hit counts) after this many seconds without requests
        f"#!define PIKE_REMOVE_LATENCY {max(sec.flood_interval * 2, 4)}",
        f'#!define HTABLE_BAN "{BAN_TABLE}=>size=10;autoexpire={sec.ban_time}{shared};"',
        # initval=0: sht_inc() creates a missing counter (without it, it fails on a new key)
        f'#!define HTABLE_AUTHFAIL "{AUTH_FAILURE_TABLE}=>size=10;autoexpire={sec.auth_failure_window};initval=0{shared};"',
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


DB_CLUSTER_NAME = "kemi"
DB_CLUSTER_URL = f"cluster://{DB_CLUSTER_NAME}"


def database_cluster_defines(s: Settings) -> list[str]:
    """db_cluster over database.url then each failover server: serial, in that order (read
    and write), so a server that fails is skipped and the next one answers the same query."""
    db = s.database
    if not db.failover:
        return []
    urls = (db.url, *db.failover_urls())
    names = [f"db{i + 1}" for i in range(len(urls))]
    connections = [f'modparam("db_cluster", "connection", "{n}=>{u}")' for n, u in zip(names, urls)]
    spec = ";".join(f"{n}={9 - i}s{9 - i}s" for i, n in enumerate(names))
    return [
        "#!define WITH_DB_CLUSTER",
        "#!define DB_CLUSTER_CONNECTIONS " + " \\\n".join(connections),
        f'#!define DB_CLUSTER_SPEC "{DB_CLUSTER_NAME}=>{spec}"',
    ]


def usrloc_db_mode(s: Settings) -> int:
    """usrloc db_mode: database.usrloc_db_mode, unless the cluster decides where contacts live
    (dmq: each node's memory, 0; database: the shared database only, 3)."""
    c = s.cluster
    if not c.enabled:
        return s.database.usrloc_db_mode
    return 0 if c.registrations == "dmq" else 3


def cluster_defines(s: Settings) -> list[str]:
    """#!define lines for dmq, dmq_usrloc and the node's server_id (kamailio-common.cfg WITH_CLUSTER)."""
    c = s.cluster
    if not c.enabled:
        return []
    address = f"[{c.address}]" if ":" in c.address else c.address
    notify = [f'modparam("dmq", "notification_address", "{c.dmq_uri(peer)}")' for peer in c.peers]
    lines = [
        "#!define WITH_CLUSTER",
        # Kamailio's server_id: part of every rtpengine ng cookie (server_id_pid_seq), so two
        # nodes whose workers have the same PIDs (containers) never get each other's answers
        f"#!define SERVER_ID {c.node}",
        f'#!define DMQ_SERVER_ADDRESS "{c.dmq_uri(c.address)}"',
        f'#!define DMQ_SERVER_SOCKET "udp:{address}:{c.dmq_port}"',
        # one notification_address per peer (a multi-line define, as METRICS_DECLARATIONS)
        "#!define DMQ_NOTIFICATION_ADDRESSES " + " \\\n".join(notify),
        f'#!define HTABLE_CLUSTER "{CLUSTER_TABLE}=>size=4;"',
    ]
    if c.registrations == "dmq":
        lines += [
            "#!define WITH_DMQ_USRLOC",
            f"#!define DMQ_USRLOC_SYNC {int(c.sync)}",
            f"#!define DMQ_USRLOC_BATCH_MSG_CONTACTS {c.sync_contacts_per_message}",
            f"#!define DMQ_USRLOC_BATCH_SIZE {c.sync_batch}",
            f"#!define DMQ_USRLOC_BATCH_USLEEP {c.sync_pause_ms * 1000}",
        ]
    if c.share_bans:
        lines.append("#!define WITH_SHARED_BANS")
    return lines


def write_kamailio_defines(s: Settings, outdir: str | os.PathLike, kemi_root: Path = PROJECT_ROOT) -> Path:
    out = Path(outdir) / RENDERED_CFG_NAME
    out.write_text(render_kamailio_defines(s, outdir, kemi_root), encoding="utf-8")
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
        if f.name in META_FIELDS:
            continue
        if is_dataclass(value) and not isinstance(value, Listen):
            out += describe(value, f"{prefix}{f.name}.")
        elif f.name == "listen" and isinstance(value, tuple) and all(isinstance(l, Listen) for l in value):
            out.append(f"{prefix}{f.name} = {[l.socket for l in value]}")
        elif "secret" in f.name and value:
            out.append(f"{prefix}{f.name} = '(set, not shown)'")
        else:
            out.append(f"{prefix}{f.name} = {value!r}")
    return out


def toml_dump(tables: dict) -> str:
    """A settings file's text from {table: {key: value}} (tests and make bench write them)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):                  # an inline table (nested settings, e.g. [media])
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for table, items in tables.items():
        out.append(f"[{table}]")
        out += [f"{k} = {value(v)}" for k, v in items.items()]
        out.append("")
    return "\n".join(out)
