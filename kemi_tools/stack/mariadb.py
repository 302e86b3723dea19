"""MariaDB for Kamailio: start it if needed, create the database from Kamailio's own schema.

The schema comes from the installed Kamailio (/usr/share/kamailio/mysql/<module>-create.sql),
so it always matches the modules' table versions. Provisioning is idempotent: a table that
exists is left alone (with its rows), a missing one is created with its indexes and its
`version` row.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, unquote

from kemi.records import schema as records
from kemi.settings import Settings
from kemi.store import dids
from kemi_tools.stack.process import Daemon, StartError, wait_for

SCHEMA_DIR = Path("/usr/share/kamailio/mysql")
# Kamailio modules whose tables we create (standard = the `version` table)
SCHEMA_MODULES = ("standard", "auth_db", "usrloc", "registrar", "dispatcher", "htable")
SOCKET = "/run/mysqld/mysqld.sock"
DATADIR = Path("/var/lib/mysql")

_TABLE_OF = [
    re.compile(r"^CREATE TABLE `?(\w+)`?", re.I),
    re.compile(r"^CREATE (?:UNIQUE )?INDEX \w+ ON `?(\w+)`?", re.I),
    re.compile(r"^INSERT INTO version .* values \('(\w+)'", re.I),
]


def root_sql(sql: str, database: str | None = None, socket: str = SOCKET) -> str:
    """Run SQL as MariaDB's root over the unix socket (root's unix_socket auth)."""
    argv = ["mariadb", "--protocol=socket", f"--socket={socket}", "-uroot", "-N", "-B"]
    if database:
        argv.append(database)
    done = subprocess.run(argv, input=sql, text=True, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise StartError(f"mariadb failed: {done.stderr.strip()}\nSQL: {sql[:300]}")
    return done.stdout


def is_up() -> bool:
    try:
        return root_sql("SELECT 1;").strip() == "1"
    except (StartError, OSError, subprocess.TimeoutExpired):
        return False


def prepare_dirs() -> None:
    """The socket folder (owned by mysql) and, when empty, a data folder with root on unix_socket."""
    run_dir = Path(SOCKET).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "mysql", "mysql")
    if not (DATADIR / "mysql").is_dir():
        DATADIR.mkdir(parents=True, exist_ok=True)
        shutil.chown(DATADIR, "mysql", "mysql")
        subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={DATADIR}",
                        "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True, timeout=300)


def server_argv(networking: bool = True) -> list[str]:
    """mariadbd in the foreground: on 127.0.0.1 and the socket, or (networking=False, the
    image's compose service) on the unix socket only."""
    return ["mariadbd", "--user=mysql", f"--datadir={DATADIR}", f"--socket={SOCKET}",
            "--pid-file=/run/mysqld/mysqld.pid", "--max-connections=500",
            "--bind-address=127.0.0.1" if networking else "--skip-networking"]


def start(logdir: Path) -> Daemon | None:
    """Start mariadbd unless one already answers; returns the Daemon we started, or None."""
    if is_up():
        return None
    prepare_dirs()
    daemon = Daemon("mariadbd", server_argv(), logdir / "mariadb.log")
    wait_for(is_up, 60, "MariaDB to accept connections", daemon, interval=0.3)
    return daemon


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _account(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or ""), parts.path.lstrip("/")


def provision(settings: Settings, modules=SCHEMA_MODULES, socket: str = SOCKET,
              hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> list[str]:
    """Create database, users and missing tables; returns the tables created. `hosts`: where
    the users may connect from (a cluster's nodes connect over the network: "%")."""
    user, password, dbname = _account(settings.database.url)
    ro_user, ro_password, _ = _account(settings.database.ro_url)
    grants = [f"CREATE DATABASE IF NOT EXISTS `{dbname}` CHARACTER SET utf8mb4;"]
    for host in hosts:
        for name, pw, privs in ((user, password, "ALL PRIVILEGES"), (ro_user, ro_password, "SELECT")):
            grants.append(f"CREATE USER IF NOT EXISTS {_quote(name)}@{_quote(host)} IDENTIFIED BY {_quote(pw)};")
            grants.append(f"ALTER USER {_quote(name)}@{_quote(host)} IDENTIFIED BY {_quote(pw)};")
            grants.append(f"GRANT {privs} ON `{dbname}`.* TO {_quote(name)}@{_quote(host)};")
    root_sql("\n".join(grants) + "\nFLUSH PRIVILEGES;", socket=socket)
    existing = set(root_sql("SHOW TABLES;", dbname, socket=socket).split())
    created: list[str] = []
    for module in modules:
        statements = _statements(SCHEMA_DIR / f"{module}-create.sql")
        new_tables = {t for s, t in statements if s.upper().startswith("CREATE TABLE") and t not in existing}
        todo = [s for s, t in statements if t in new_tables]
        if todo:
            root_sql(";\n".join(todo) + ";", dbname, socket=socket)
            created += sorted(new_tables)
            existing |= new_tables
    for table, sql in EXTRA_TABLES.items():
        if table not in existing:
            root_sql(sql, dbname, socket=socket)
            created.append(table)
    for sql in EXTRA_VIEWS:
        root_sql(sql, dbname, socket=socket)
    return created


# Tables of our own (not from a Kamailio module), created the same idempotent way.
EXTRA_TABLES: dict[str, str] = {
    dids.TABLE: dids.CREATE_TABLE_SQL,        # SBC: DID -> extension (kemi/store/dids.py)
    records.TABLE: records.create_table_sql(),    # call records: acc's rows (kemi/records/schema.py)
}
# Views of our own: made on every provisioning (CREATE OR REPLACE: a newer definition wins)
EXTRA_VIEWS: tuple[str, ...] = (
    records.create_view_sql(),                # one row per call (kemi_cdr)
)


def _statements(path: Path) -> list[tuple[str, str]]:
    """(statement, table it concerns) for each statement of a Kamailio schema file."""
    out = []
    for raw in path.read_text().split(";"):
        stmt = raw.strip()
        if not stmt:
            continue
        table = next((m.group(1) for rx in _TABLE_OF if (m := rx.match(stmt))), None)
        if table is None:
            raise StartError(f"{path}: cannot tell which table this statement is for: {stmt[:80]}")
        out.append((stmt, table))
    return out


def kamctlrc_text(settings: Settings) -> str:
    user, password, dbname = _account(settings.database.url)
    ro_user, ro_password, _ = _account(settings.database.ro_url)
    url = urlsplit(settings.database.url)
    host = url.hostname or "localhost"
    return "\n".join([
        "# Written by kemi (make run) from the settings file; edit that, not this.",
        f'SIP_DOMAIN="{settings.sip.domain}"',
        "DBENGINE=MYSQL",
        f'DBHOST="{host}"',
        *([f"DBPORT={url.port}"] if url.port else []),
        f'DBNAME="{dbname}"',
        f'DBRWUSER="{user}"',
        f'DBRWPW="{password}"',
        f'DBROUSER="{ro_user}"',
        f'DBROPW="{ro_password}"',
        'DBROOTUSER="root"',
        "STORE_PLAINTEXT_PW=1",
        'CTLENGINE="RPCFIFO"',
        f'RPCFIFOPATH="{settings.rpc_fifo}"',
        "",
    ])


def write_kamctlrc(settings: Settings, home: str | os.PathLike | None = None) -> Path:
    """kamctl reads /etc/kamailio/kamctlrc then ~/.kamctlrc: ours goes in ~ and wins."""
    path = Path(home or os.path.expanduser("~")) / ".kamctlrc"
    path.write_text(kamctlrc_text(settings))
    return path
