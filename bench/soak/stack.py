"""The soak's stack, started as `make run` starts it (kemi_tools.stack), inside the proxy
namespace: MariaDB (reused when one runs; Kamailio reaches it over its unix socket, a path,
from any namespace), a database of the soak's own, rtpengine, Kamailio with kamailio.cfg and
the kemi package. Everything started is stopped by PID.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kemi.settings import Settings, load_settings, toml_dump
from kemi_tools.stack import kamailio, mariadb
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.ng import NgClient
from kemi_tools.stack.process import Daemon, StartError, wait_for

from bench.soak import net as soaknet

DB_USER, DB_PASSWORD = "kemi_soak", "kemi_soak_pw"
DB_RO_USER, DB_RO_PASSWORD = "kemi_soak_ro", "kemi_soak_ro_pw"
PASSWORD = "soak-secret"
FIRST_EXTENSION = 200000
SUBSCRIBERS = 4000
# media relay ports inside the proxy namespace (its own port space)
MEDIA_PORTS = (30000, 39999)
# scanners and guessers get banned for this long, then come back: bans keep being made and
# expiring all run long (the production default is 600 s)
BAN_TIME = 30
# the phones all send from one address: pike's flood limit as high as the settings allow
# (make bench does the same); the scanner and the guesser are banned for what they send
FLOOD_REQUESTS = 65_535
SBC_GATEWAY_PORT = 5080
SBC_PROBING_INTERVAL = 10       # s: dispatcher's OPTIONS keepalives to the gateways


def extension(i: int) -> str:
    return str(FIRST_EXTENSION + i)


class SoakDatabase:
    """kemi_soak<slot>: Kamailio's tables (make run's provisioning) and SUBSCRIBERS subscribers."""

    def __init__(self, workdir: Path):
        self.name = f"kemi_soak{soaknet.SLOT or ''}"
        self.url = f"mysql://{DB_USER}:{DB_PASSWORD}@localhost/{self.name}"
        self.ro_url = f"mysql://{DB_RO_USER}:{DB_RO_PASSWORD}@localhost/{self.name}"
        self.workdir = workdir

    def create(self, dids: dict[str, str] | None = None) -> None:
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{self.name}`;")
        file = self.workdir / "db.toml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(toml_dump({"database": {"url": self.url, "ro_url": self.ro_url}}))
        mariadb.provision(load_settings(file))
        self.sql(f"""INSERT INTO subscriber (username, domain, password, ha1, ha1b)
                     SELECT {FIRST_EXTENSION} + seq, 'x', '{PASSWORD}', '', '' FROM seq_0_to_{SUBSCRIBERS - 1};""")
        if dids:
            self.sql("INSERT INTO did_map (did, extension) VALUES "
                     + ", ".join(f"('{d}', '{e}')" for d, e in dids.items()) + ";")

    def sql(self, text: str) -> str:
        return mariadb.root_sql(text, self.name)

    def connections(self) -> int:
        """Connections open to this database now (Kamailio's modules and the Python side)."""
        return int(mariadb.root_sql(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{self.name}';").strip())

    def drop(self) -> None:
        mariadb.root_sql(f"DROP DATABASE IF EXISTS `{self.name}`;")


def settings_tables(n: soaknet.Net, db: SoakDatabase, workdir: Path, python_memory_interval: int,
                    router: str | None, router_path: str | None, extra: dict | None = None) -> dict:
    """The soak's settings: production defaults (security, media anchoring, metrics on) with
    the soak's addresses, database, ban time, and the Python memory reports switched on."""
    if n.mode == "registrar":
        interfaces = [{"name": "default", "address": soaknet.PROXY_LAN}]
        listen = [f"udp:{n.sip_address}:{soaknet.SIP_PORT}"]
    else:
        interfaces = [{"name": "public", "address": soaknet.SBC_PUBLIC},
                      {"name": "private", "address": soaknet.SBC_PRIVATE}]
        listen = [f"udp:127.0.0.1:{soaknet.SIP_PORT}"]
    tables: dict = {
        "sip": {"domain": n.domain, "listen": listen, "children": 4},
        "database": {"url": db.url, "ro_url": db.ro_url},
        "runtime": {"dir": str(workdir / "run"), "log_level": 2},
        "media": {"enabled": True, "rtpengine": {
            "start": False, "listen_ng": f"127.0.0.1:{soaknet.NG_PORT}", "interfaces": interfaces,
            "port_min": MEDIA_PORTS[0], "port_max": MEDIA_PORTS[1], "delete_delay": 0, "log_level": 5}},
        "security": {"flood_requests": FLOOD_REQUESTS, "ban_time": BAN_TIME},
        "metrics": {"enabled": True, "listen": f"127.0.0.1:{soaknet.METRICS_PORT}",
                    "python_memory_interval": python_memory_interval},
    }
    if router:
        tables["python"] = {"router": router, **({"path": [router_path]} if router_path else {})}
    if n.mode == "sbc":
        gw = SBC_GATEWAY_PORT
        tables.update({
            "sbc": {"enabled": True, "probing_interval": SBC_PROBING_INTERVAL},
            "sbc.public": {"listen": [f"udp:{soaknet.SBC_PUBLIC}:{soaknet.SIP_PORT}"],
                           "networks": ["203.0.113.0/24"],
                           "gateways": [f"sip:{a}:{gw}" for a in soaknet.PUBLIC_GATEWAYS]},
            "sbc.private": {"listen": [f"udp:{soaknet.SBC_PRIVATE}:{soaknet.SIP_PORT}"],
                            "networks": ["198.51.100.0/24"],
                            "gateways": [f"sip:{a}:{gw}" for a in soaknet.PRIVATE_GATEWAYS]},
        })
    for table, values in (extra or {}).items():
        tables.setdefault(table, {}).update(values)
    return tables


@dataclass
class SoakStack:
    """MariaDB (maybe), rtpengine and Kamailio of one soak phase."""
    net: soaknet.Net
    workdir: Path
    db: SoakDatabase
    settings_file: Path
    settings: Settings | None = None
    mariadb: Daemon | None = None
    rtpengine: Daemon | None = None
    kamailio: Daemon | None = None
    ng: NgClient | None = None
    started: list = field(default_factory=list)

    @classmethod
    def start(cls, n: soaknet.Net, workdir: Path, tables_for, dids: dict[str, str] | None = None) -> SoakStack:
        """`tables_for(db)`: the settings tables, given the database."""
        workdir.mkdir(parents=True, exist_ok=True)
        db = SoakDatabase(workdir)
        stack = cls(n, workdir, db, workdir / "settings.toml")
        try:
            stack.mariadb = mariadb.start(workdir)
            db.create(dids)
            stack.settings_file.write_text(toml_dump(tables_for(db)))
            stack.settings = settings = load_settings(stack.settings_file)
            d = settings.media.rtpengine
            stack.rtpengine = n.proxy.spawn(rtpengine_stack.argv(d), workdir / "rtpengine.log", name="rtpengine")
            stack.ng = NgClient(d.ng_address, timeout=0.5, socket_factory=lambda family: n.proxy.socket(family))
            wait_for(stack.ng.ping, 20, "rtpengine to answer ping", stack.rtpengine, interval=0.2)
            cfg = kamailio.prepare(settings, workdir / "kamailio")
            kamailio.require_valid_config(cfg)
            stack.kamailio = n.proxy.spawn(kamailio.command(cfg, settings.pid_file), workdir / "kamailio.log",
                                           name="kamailio", cwd=cfg.parent)   # include_file: cwd first
            wait_for(lambda: soaknet.options_ok(n.phones_ns, n.phones_ip, n.sip_address, soaknet.SIP_PORT), 60,
                     "Kamailio to answer OPTIONS", stack.kamailio, interval=0.3)
        except BaseException:
            stack.stop()
            raise
        return stack

    def kamcmd(self, *args: str, timeout: float = 15) -> str:
        assert self.settings is not None
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.settings.ctl_socket}", *args],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise StartError(f"kamcmd {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def stop(self) -> list[str]:
        """Kamailio, rtpengine, our database, a MariaDB we started: each by PID, each tried."""
        problems = []
        for step in (self._stop_kamailio, self._stop_rtpengine, self.db.drop, self._stop_mariadb):
            try:
                step()
            except Exception as exc:          # the rest must still be stopped
                problems.append(f"{type(exc).__name__}: {exc}")
        return problems

    def _stop_kamailio(self) -> None:
        if self.kamailio:
            self.kamailio.stop()

    def _stop_rtpengine(self) -> None:
        if self.rtpengine:
            self.rtpengine.stop()

    def _stop_mariadb(self) -> None:
        if self.mariadb:
            self.mariadb.stop()
