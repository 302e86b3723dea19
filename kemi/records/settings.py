"""[records] and [capture]: call records in MySQL (acc) and the HEP capture of every SIP message
(siptrace); renders their module parameters. docs/records.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import FLT_ACC, FLT_ACC_FAILED, RECORDS_REPLAY_CALLBACK
from kemi.records.schema import TABLE, TIME_ATTR, db_extra
from kemi.schema import literal_address_port, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

# acc writes through this db_cluster cluster: the MySQL servers (database.url, then
# database.failover), and, when none takes a row, the spool (db_flatstore)
RECORDS_CLUSTER = "kemirecords"
RECORDS_DB_URL = f"cluster://{RECORDS_CLUSTER}"
SPOOL_CONNECTION = "recspool"
REPLAY_TIMER = "kemirecords"
ACC_TIME_MODE_EXACT = 2        # acc time_mode: time_attr holds seconds.microseconds (a DOUBLE column)
HEP_VERSION = 3
DEFAULT_AGENT_ID = 1


@dataclass(frozen=True)
class RecordsSettings:
    # true: one call detail record per call in MySQL (acc; table kemi_acc, view kemi_cdr):
    # answered, refused, cancelled and unanswered calls, with media figures when anchored
    enabled: bool = False
    # where records wait while no database server takes them (db_flatstore files); Kamailio
    # replays them into the table once it is back. Must survive a reboot (not under /run)
    spool_dir: str = "/var/spool/kemi/records"
    # seconds between two looks at the spool: a record spooled while the database was down
    # reaches the table within two of them after it is back
    replay_interval: int = 10


@dataclass(frozen=True)
class CaptureSettings:
    # true: every SIP message Kamailio receives and sends (both SBC sides) goes as HEPv3 to
    # the capture node below (siptrace; Homer's capture server, or Kamailio's sipcapture)
    enabled: bool = False
    # the capture node's HEP address, "ADDRESS:PORT" (UDP)
    address: str = "127.0.0.1:9060"
    # HEP capture agent ID (Homer shows it as the node): 0 = cluster.node in a cluster, else 1
    agent_id: int = 0

    def host_port(self) -> tuple[str, int] | None:
        """(host as written, IPv6 in brackets; port), None if the address is not ADDRESS:PORT."""
        parsed = literal_address_port(self.address)
        return None if parsed is None else (self.address.rpartition(":")[0], parsed[1])


def validate_records(s: Settings, source: str) -> None:
    r = s.records
    require(r.spool_dir.startswith("/") and not any(c in r.spool_dir for c in '"\n;'), "records.spool_dir",
            f"{r.spool_dir!r} is not an absolute path", 'write e.g. "/var/spool/kemi/records"', source)
    require(not r.spool_dir.startswith("/run/") and r.spool_dir != "/run", "records.spool_dir",
            f"{r.spool_dir} is under /run, which a reboot empties",
            "put it on a disk, e.g. /var/spool/kemi/records", source)
    require(1 <= r.replay_interval <= 3600, "records.replay_interval", f"{r.replay_interval} is out of range",
            "use 1 to 3600 seconds", source)


def validate_capture(s: Settings, source: str) -> None:
    c = s.capture
    hp = c.host_port()
    if require(hp is not None, "capture.address", f"{c.address!r} is not ADDRESS:PORT",
               'write the capture node\'s literal IP and HEP port, e.g. "192.0.2.50:9060" or "[2001:db8::50]:9060"',
               source) and hp is not None:
        require(1 <= hp[1] <= 65535, "capture.address", f"port {hp[1]} is out of range", "use 1 to 65535", source)
    require(0 <= c.agent_id <= 4294967295, "capture.agent_id", f"{c.agent_id} is out of range",
            "use 1 to 4294967295, or 0 (cluster.node, else 1)", source)


def agent_id(s: Settings) -> int:
    if s.capture.agent_id:
        return s.capture.agent_id
    return s.cluster.node if s.cluster.enabled else DEFAULT_AGENT_ID


def records_cluster_lines(s: Settings) -> list[str]:
    """db_cluster for acc: each MySQL server (serial, database.url first), then the spool."""
    db, r = s.database, s.records
    urls = (db.url, *db.failover_urls())
    names = [f"rec{i + 1}" for i in range(len(urls))]
    connections = [f'modparam("db_cluster", "connection", "{n}=>{u}")' for n, u in zip(names, urls, strict=True)]
    connections.append(f'modparam("db_cluster", "connection", "{SPOOL_CONNECTION}=>flatstore:{r.spool_dir}")')
    # read priority 0: nobody reads through it; write: 9, 8, ... then the spool last (1)
    spec = ";".join([*(f"{n}={9 - i}s{9 - i}s" for i, n in enumerate(names)), f"{SPOOL_CONNECTION}=0s1s"])
    return [
        "#!define RECORDS_DB_CONNECTIONS " + " \\\n".join(connections),
        f'#!define RECORDS_DB_CLUSTER "{RECORDS_CLUSTER}=>{spec}"',
    ]


def cfg_lines(s: Settings) -> list[str]:
    lines = []
    if s.records.enabled:
        lines += [
            "#!define WITH_RECORDS",
            f'#!define RECORDS_DB_URL "{RECORDS_DB_URL}"',
            f'#!define RECORDS_TABLE "{TABLE}"',
            f'#!define RECORDS_TIME_ATTR "{TIME_ATTR}"',
            f"#!define RECORDS_TIME_MODE {ACC_TIME_MODE_EXACT}",
            f"#!define FLT_ACC {FLT_ACC}",
            f"#!define FLT_ACC_FAILED {FLT_ACC_FAILED}",
            # the cluster node that wrote a row ($def in db_extra), 0 without a cluster
            f"#!define RECORDS_NODE {s.cluster.node if s.cluster.enabled else 0}",
            f'#!define RECORDS_DB_EXTRA "{db_extra()}"',
            *records_cluster_lines(s),
            # the replay of the spool: Router.ksr_records_replay in rtimer's own process
            f'#!define RECORDS_REPLAY_TIMER "name={REPLAY_TIMER};interval={s.records.replay_interval};mode=1;"',
            f'#!define RECORDS_REPLAY_EXEC "timer={REPLAY_TIMER};route={RECORDS_REPLAY_CALLBACK}"',
        ]
    hp = s.capture.host_port()
    if s.capture.enabled and hp is not None:          # (validate_capture refused any other address)
        host, port = hp
        lines += [
            "#!define WITH_CAPTURE",
            f'#!define CAPTURE_URI "sip:{host}:{port}"',
            f"#!define CAPTURE_HEP_VERSION {HEP_VERSION}",
            f"#!define CAPTURE_AGENT_ID {agent_id(s)}",
        ]
    return lines
