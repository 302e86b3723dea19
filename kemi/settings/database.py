"""[database]: the MySQL database Kamailio's modules and the Python side share, its failover
servers (db_cluster), usrloc's mode and the Python side's subscriber cache."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from kemi.schema import is_host, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

USRLOC_DB_MODES = {1: "write-through", 2: "write-back", 3: "DB only"}
DB_CLUSTER_NAME = "kemi"
DB_CLUSTER_URL = f"cluster://{DB_CLUSTER_NAME}"


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


def validate(s: Settings, source: str) -> None:
    db = s.database
    for key, value in (("database.url", db.url), ("database.ro_url", db.ro_url)):
        url = urlsplit(value)
        require(url.scheme == "mysql" and bool(url.hostname) and len(url.path) > 1 and bool(url.username),
                key, f"{value!r} is not a MySQL URL", 'write "mysql://USER:PASSWORD@HOST[:PORT]/DATABASE"', source)
    require(urlsplit(db.ro_url).path == urlsplit(db.url).path, "database.ro_url",
            "names another database than database.url", "use the same database name in both URLs", source)
    for server in db.failover:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "1")
        require(is_host(host or server) and port.isdigit() and 1 <= int(port) <= 65535 and '"' not in server,
                "database.failover", f"{server!r} is not HOST or HOST:PORT",
                'list the other database servers, e.g. ["192.0.2.22:3306", "192.0.2.23:3306"]', source)
    require(urlsplit(db.url).hostname not in ("localhost", None) or not db.failover, "database.failover",
            "is set, but database.url names localhost (a unix socket, one server)",
            "write the first server's address in database.url, e.g. mysql://kamailio:PW@192.0.2.21:3306/kamailio",
            source)
    require(db.usrloc_db_mode in USRLOC_DB_MODES, "database.usrloc_db_mode",
            f"{db.usrloc_db_mode} is not supported",
            "use " + ", ".join(f"{k} ({v})" for k, v in USRLOC_DB_MODES.items()), source)
    require(0 <= db.cache_ttl <= 3600, "database.cache_ttl", f"{db.cache_ttl} is out of range",
            "use 0 to 3600 seconds", source)
    require(1 <= db.cache_size <= 10_000_000, "database.cache_size", f"{db.cache_size} is out of range",
            "use 1 to 10000000 entries", source)


def validate_quoting(s: Settings, source: str) -> None:
    require('"' not in s.database.url and "\n" not in s.database.url, "database.url",
            "contains a double quote or newline", "remove it (the value is written into kamailio.cfg defines)",
            source)


def url_lines(s: Settings) -> list[str]:
    # with failover servers every module talks to db_cluster, which tries them in order
    return [f'#!define DBURL "{DB_CLUSTER_URL if s.database.failover else s.database.url}"']


def usrloc_db_mode(s: Settings) -> int:
    """usrloc db_mode: database.usrloc_db_mode, unless the cluster decides where contacts live
    (dmq: each node's memory, 0; database: the shared database only, 3)."""
    c = s.cluster
    if not c.enabled:
        return s.database.usrloc_db_mode
    return 0 if c.registrations == "dmq" else 3


def usrloc_lines(s: Settings) -> list[str]:
    mode = usrloc_db_mode(s)
    return [f"#!define USRLOC_DB_MODE {mode}",
            # db_mode 3 (DB only): a contact's INSERT re-run after its answer was lost is an
            # upsert (usrloc db_insert_update in kamailio-common.cfg, docs/cluster.md)
            *(["#!define USRLOC_DB_ONLY"] if mode == 3 else [])]


def cache_lines(s: Settings) -> list[str]:
    return [f"#!define SUBSCRIBER_CACHE_TTL {s.database.cache_ttl}"]


def failover_lines(s: Settings) -> list[str]:
    """db_cluster over database.url then each failover server: serial, in that order (read
    and write), so a server that fails is skipped and the next one answers the same query."""
    db = s.database
    if not db.failover:
        return []
    urls = (db.url, *db.failover_urls())
    names = [f"db{i + 1}" for i in range(len(urls))]
    connections = [f'modparam("db_cluster", "connection", "{n}=>{u}")' for n, u in zip(names, urls, strict=True)]
    spec = ";".join(f"{n}={9 - i}s{9 - i}s" for i, n in enumerate(names))
    return [
        "#!define WITH_DB_CLUSTER",
        "#!define DB_CLUSTER_CONNECTIONS " + " \\\n".join(connections),
        f'#!define DB_CLUSTER_SPEC "{DB_CLUSTER_NAME}=>{spec}"',
    ]
