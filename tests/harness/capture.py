"""A real HEP capture node for the capture tests: a second Kamailio with sipcapture, storing every
HEP-encapsulated SIP message it receives into its own MySQL table, as Homer's classic capture
server (Kamailio + sipcapture, homer_data) does.

    CaptureNode(workdir, port).start(spawn)    Kamailio on udp:127.0.0.1:PORT (in a namespace
                                               when `spawn` runs it there), database
                                               kemi_capture<slot>, table sip_capture
    node.messages(call_id)                     the stored rows of one call, in capture order

The table is Homer 5's sip_capture_call (src/modules/sipcapture/sql/schema_data.sql) without
its date partitions; sipcapture fills the columns from the HEP chunks (addresses, ports,
timestamp, capture agent id) and from parsing the SIP message (method, Call-ID, ...).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from harness import stack
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import Daemon, wait_for

DB = f"kemi_capture{stack.SLOT or ''}"
USER, PASSWORD = "kemi_capture", "kemi_capture_pw"
TABLE = "sip_capture"
COLUMNS = ("micro_ts", "method", "reply_reason", "callid", "cseq", "source_ip", "source_port",
           "destination_ip", "destination_port", "proto", "type", "node", "msg")

SCHEMA = f"""CREATE TABLE `{TABLE}` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `micro_ts` bigint(18) NOT NULL DEFAULT '0',
  `method` varchar(50) NOT NULL DEFAULT '',
  `reply_reason` varchar(100) NOT NULL DEFAULT '',
  `ruri` varchar(200) NOT NULL DEFAULT '',
  `ruri_user` varchar(100) NOT NULL DEFAULT '',
  `ruri_domain` varchar(150) NOT NULL DEFAULT '',
  `from_user` varchar(100) NOT NULL DEFAULT '',
  `from_domain` varchar(150) NOT NULL DEFAULT '',
  `from_tag` varchar(64) NOT NULL DEFAULT '',
  `to_user` varchar(100) NOT NULL DEFAULT '',
  `to_domain` varchar(150) NOT NULL DEFAULT '',
  `to_tag` varchar(64) NOT NULL DEFAULT '',
  `pid_user` varchar(100) NOT NULL DEFAULT '',
  `contact_user` varchar(120) NOT NULL DEFAULT '',
  `auth_user` varchar(120) NOT NULL DEFAULT '',
  `callid` varchar(120) NOT NULL DEFAULT '',
  `callid_aleg` varchar(120) NOT NULL DEFAULT '',
  `via_1` varchar(256) NOT NULL DEFAULT '',
  `via_1_branch` varchar(80) NOT NULL DEFAULT '',
  `cseq` varchar(25) NOT NULL DEFAULT '',
  `diversion` varchar(256) NOT NULL DEFAULT '',
  `reason` varchar(200) NOT NULL DEFAULT '',
  `content_type` varchar(256) NOT NULL DEFAULT '',
  `auth` varchar(256) NOT NULL DEFAULT '',
  `user_agent` varchar(256) NOT NULL DEFAULT '',
  `source_ip` varchar(60) NOT NULL DEFAULT '',
  `source_port` int(10) NOT NULL DEFAULT 0,
  `destination_ip` varchar(60) NOT NULL DEFAULT '',
  `destination_port` int(10) NOT NULL DEFAULT 0,
  `contact_ip` varchar(60) NOT NULL DEFAULT '',
  `contact_port` int(10) NOT NULL DEFAULT 0,
  `originator_ip` varchar(60) NOT NULL DEFAULT '',
  `originator_port` int(10) NOT NULL DEFAULT 0,
  `correlation_id` varchar(256) NOT NULL DEFAULT '',
  `custom_field1` varchar(120) NOT NULL DEFAULT '',
  `custom_field2` varchar(120) NOT NULL DEFAULT '',
  `custom_field3` varchar(120) NOT NULL DEFAULT '',
  `proto` int(5) NOT NULL DEFAULT 0,
  `family` int(1) DEFAULT NULL,
  `rtp_stat` varchar(256) NOT NULL DEFAULT '',
  `type` int(2) NOT NULL DEFAULT 0,
  `node` varchar(125) NOT NULL DEFAULT '',
  `msg` varchar(1500) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`),
  KEY `callid` (`callid`),
  KEY `date` (`date`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

CFG = """#!KAMAILIO
# the test's HEP capture node (tests/harness/capture.py): every HEP-encapsulated SIP message
# stored by sipcapture, nothing routed
debug=2
log_stderror=yes
children=2
disable_tcp=yes
listen=udp:{host}:{port}
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_mysql.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "mysql://{user}:{password}@localhost/{db}")
modparam("sipcapture", "capture_on", 1)
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_node", "kemi-test-capture")
request_route {{
    sip_capture("{table}");
    drop;
}}
onreply_route {{
    sip_capture("{table}");
    drop;
}}
"""


@dataclass
class Captured:
    at: float                 # the HEP timestamp: when the proxy received or sent it (Unix seconds)
    first_line: str
    cseq: str
    source: tuple[str, int]
    destination: tuple[str, int]
    node: str
    msg: str


class CaptureNode:
    def __init__(self, workdir: Path, port: int, host: str = "127.0.0.1"):
        self.workdir, self.host, self.port = workdir, host, port
        self.daemon: Daemon | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def create_database(self) -> None:
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{DB}`; CREATE DATABASE `{DB}` CHARACTER SET utf8mb4;"
                         f"CREATE USER IF NOT EXISTS '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';"
                         f"GRANT ALL PRIVILEGES ON `{DB}`.* TO '{USER}'@'localhost'; FLUSH PRIVILEGES;")
        mariadb.root_sql(SCHEMA + ";", DB)

    def start(self, spawn=None) -> CaptureNode:
        """Kamailio on the capture port; `spawn(argv, log, name, cwd)` runs it elsewhere (a namespace)."""
        self.create_database()
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "capture.cfg"
        cfg.write_text(CFG.format(host=self.host, port=self.port, user=USER, password=PASSWORD, db=DB, table=TABLE))
        argv = ["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(self.workdir), "-a", "no"]
        log = self.workdir / "capture.log"
        if spawn:
            self.daemon = spawn(argv, log, "kamailio-capture", self.workdir)
        else:
            self.daemon = Daemon("kamailio-capture", argv, log, cwd=self.workdir)
        wait_for(lambda: "sipcapture" in log.read_text(errors="replace") and self.daemon.alive()
                 and _listening(log), 20, "the capture node to start", self.daemon, interval=0.2)
        return self

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def messages(self, call_id: str | None = None) -> list[Captured]:
        where = f" WHERE callid = '{call_id}'" if call_id else ""
        # the message as hex: the client's text output would mangle its CR LFs
        columns = ", ".join("HEX(msg)" if c == "msg" else c for c in COLUMNS)
        out = mariadb.root_sql(f"SELECT {columns} FROM {TABLE}{where} ORDER BY micro_ts, id;", DB)
        rows = []
        for line in out.splitlines():
            values = dict(zip(COLUMNS, line.split("\t"), strict=True))
            msg = bytes.fromhex(values["msg"]).decode("utf-8", "replace")
            rows.append(Captured(int(values["micro_ts"]) / 1e6, msg.split("\r\n", 1)[0], values["cseq"],
                                 (values["source_ip"], int(values["source_port"])),
                                 (values["destination_ip"], int(values["destination_port"])), values["node"], msg))
        return rows

    def wait_messages(self, call_id: str, count: int, timeout: float = 5.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(call_id)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def _listening(log: Path) -> bool:
    text = log.read_text(errors="replace")
    return "Listening on" in text or "listening on" in text


@dataclass
class Traced:
    """One SIP message a SIPp phone sent or received (its -trace_msg file)."""
    at: float
    sent: bool
    first_line: str
    cseq: str
    call_id: str


_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)


def sipp_trace(text: str) -> list[Traced]:
    """Every message of a SIPp message trace, with its time (SIPp's clock: Unix seconds)."""
    out = []
    parts = _SEPARATOR.split(text)
    for stamp, block in zip(parts[1::2], parts[2::2], strict=True):
        head, _, message = block.strip().partition("\n")
        message = message.strip().replace("\r\n", "\n")
        if not message:
            continue
        headers = {}
        for line in message.split("\n\n", 1)[0].split("\n")[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(at, "sent" in head, message.split("\n", 1)[0].strip(), headers.get("cseq", ""),
                          headers.get("call-id", "")))
    return out
