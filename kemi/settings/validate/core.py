"""[sip], [database], [registrar], [python], [runtime]: the registrar's own tables."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from kemi.settings.schema import LOG_LEVELS, PYTHON_ENGINES, USRLOC_DB_MODES, Settings
from kemi.settings.validate.problems import is_host, require


def validate_core(s: Settings, source: str) -> None:
    sip, db, reg, rt = s.sip, s.database, s.registrar, s.runtime
    require(is_host(sip.domain), "sip.domain", f"{sip.domain!r} is not a hostname or IP address",
            'write the domain your subscribers use, e.g. "pbx.example.com" or "127.0.0.1"', source)
    for alias in sip.aliases:
        require(is_host(alias), "sip.aliases", f"{alias!r} is not a hostname or IP address",
                "list hostnames or IP addresses", source)
    require(1 <= sip.children <= 64, "sip.children", f"{sip.children} is out of range", "use 1 to 64", source)
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
    require(0 <= db.cache_ttl <= 3600, "database.cache_ttl", f"{db.cache_ttl} is out of range", "use 0 to 3600 seconds", source)
    require(1 <= db.cache_size <= 10_000_000, "database.cache_size", f"{db.cache_size} is out of range",
            "use 1 to 10000000 entries", source)
    require(1 <= reg.min_expires <= reg.default_expires <= reg.max_expires <= 86400, "registrar",
            f"expires must satisfy 1 <= min ({reg.min_expires}) <= default ({reg.default_expires}) "
            f"<= max ({reg.max_expires}) <= 86400", "adjust registrar.min_expires/default_expires/max_expires", source)
    require(0 <= reg.max_contacts <= 1000, "registrar.max_contacts", f"{reg.max_contacts} is out of range",
            "use 0 (unlimited) to 1000", source)
    require(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", s.python.router) is not None, "python.router",
            f"{s.python.router!r} is not 'module:Class'", 'write e.g. "kemi.routing:Router"', source)
    require(s.python.engine in PYTHON_ENGINES, "python.engine", f"{s.python.engine!r} is not supported",
            "use " + ", ".join(f'"{e}"' for e in PYTHON_ENGINES) + ' ("app_python3s" needs Kamailio 5.8 or newer)',
            source)
    require(rt.dir.startswith("/") and '"' not in rt.dir, "runtime.dir", f"{rt.dir!r} is not an absolute path",
            'write e.g. "/run/kamailio"', source)
    require(rt.log_level in LOG_LEVELS, "runtime.log_level", f"{rt.log_level} is not a Kamailio debug level",
            "use -3 (alert) to 3 (debug)", source)
    require(rt.shm_mb == 0 or 16 <= rt.shm_mb <= 65536, "runtime.shm_mb", f"{rt.shm_mb} is out of range",
            "use 0 (Kamailio's default, 64 MB) or 16 to 65536 MB", source)
    for key, text in (("database.url", db.url), ("sip.domain", sip.domain)):
        require('"' not in text and "\n" not in text, key, "contains a double quote or newline",
                "remove it (the value is written into kamailio.cfg defines)", source)
