"""`python3 -m kemi cdr`: the call records without SQL (the kemi_cdr view, docs/records.md).

    python3 -m kemi cdr                          the last 50 calls, newest first, a table
    python3 -m kemi cdr --since 1h --user 2001   calls of the last hour that 2001 made or got
    python3 -m kemi cdr --since 2026-12-01 --until 2026-12-02 --csv > december-1.csv
    python3 -m kemi cdr --call-id CALLID         one call, every column
    python3 -m kemi cdr --schema                 the SQL that makes the table and the view

The database is the settings' (database.ro_url, its read-only account; database.failover's
servers in turn); the settings file is FILE (--settings), else $KEMI_SETTINGS, else the
project's settings.toml, as for `kemi check`.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from kemi.records.schema import VIEW, VIEW_COLUMNS, provisioning_sql

# what the table shows (--csv and --call-id show every column)
SHORT_COLUMNS = ("start_time", "caller", "callee_dialed", "dst", "sip_code", "sip_reason", "duration",
                 "billable_seconds", "ended_by", "q850_cause", "call_id")
RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
DEFAULT_LIMIT = 50
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    pass


def parse_when(text: str, now: datetime) -> datetime:
    """"1h" / "30m" / "2d" / "45s" ago, or a date ("2026-12-01", "2026-12-01 10:00[:00]")."""
    m = RELATIVE.match(text.strip())
    if m:
        return now - timedelta(**{UNITS[m.group(2)]: int(m.group(1))})
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    raise UsageError(f"{text!r} is no time: write 1h, 30m, 2d, or 2026-12-01 [10:00]")


def build_query(since: datetime | None = None, until: datetime | None = None, user: str | None = None,
                call_id: str | None = None, limit: int | None = DEFAULT_LIMIT) -> tuple[str, tuple]:
    """The parameterised SELECT on the view, newest first."""
    where, params = [], []
    if since is not None:
        where.append("start_time >= %s")
        params.append(since.strftime("%Y-%m-%d %H:%M:%S"))
    if until is not None:
        where.append("start_time < %s")
        params.append(until.strftime("%Y-%m-%d %H:%M:%S"))
    if user:
        where.append("(caller = %s OR callee_dialed = %s OR dst = %s)")
        params += [user, user, user]
    if call_id:
        where.append("call_id = %s")
        params.append(call_id)
    sql = f"SELECT {', '.join(VIEW_COLUMNS)} FROM `{VIEW}`"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start_time DESC, id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return sql, tuple(params)


def text(value) -> str:
    return "" if value is None else str(value)


def format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    if not rows:
        return "no calls\n"
    widths = {c: max(len(c), *(len(text(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(text(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def format_record(row: dict) -> str:
    """One call, a column per line."""
    width = max(len(c) for c in row)
    return "\n".join(f"{c.ljust(width)}  {text(v)}" for c, v in row.items()) + "\n"


def format_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([text(r[c]) for c in columns])
    return out.getvalue()


def connect_args(url: str, server: str | None = None) -> dict:
    """mysqlclient arguments for a database URL (on `server`, "HOST[:PORT]", when given)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port
    if server:
        host, _, p = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        host, port = host or server, int(p) if p else None
    args = {"host": host, "user": unquote(parts.username or ""), "passwd": unquote(parts.password or ""),
            "db": parts.path.lstrip("/"), "charset": "utf8mb4", "connect_timeout": 3}
    if port:
        args["port"] = port
    return args


def fetch(settings, sql: str, params: tuple) -> list[dict]:
    """The rows, from the first database server that answers."""
    import MySQLdb
    import MySQLdb.cursors

    db = settings.database
    servers = [None, *db.failover]
    error = None
    for server in servers:
        try:
            conn = MySQLdb.connect(**connect_args(db.ro_url, server), cursorclass=MySQLdb.cursors.DictCursor)
        except MySQLdb.Error as exc:
            error = exc
            continue
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            conn.close()
    raise ConnectionError(f"no database server answered: {error}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kemi cdr", description="Call records (the kemi_cdr view, docs/records.md)")
    parser.add_argument("--settings", help="the settings file (default: $KEMI_SETTINGS, else settings.toml)")
    parser.add_argument("--since", help="calls that started at or after this: 1h, 30m, 2d, 2026-12-01 [10:00]")
    parser.add_argument("--until", help="calls that started before this")
    parser.add_argument("--user", help="calls this extension or number made, dialed or got")
    parser.add_argument("--call-id", help="one call, every column")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"at most this many (default "
                        f"{DEFAULT_LIMIT}; 0: all)")
    parser.add_argument("--csv", action="store_true", help="CSV with every column, for a spreadsheet or billing")
    parser.add_argument("--schema", action="store_true", help="print the SQL that makes the table and the view")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.schema:
        print(";\n\n".join(provisioning_sql()) + ";")
        return EXIT_OK
    from kemi.settings import SettingsError, load_settings

    try:
        now = datetime.now()
        since = parse_when(args.since, now) if args.since else None
        until = parse_when(args.until, now) if args.until else None
    except UsageError as exc:
        print(f"kemi cdr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(args.settings)
    except SettingsError as exc:
        print(f"kemi cdr: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    sql, params = build_query(since, until, args.user, args.call_id, args.limit)
    try:
        rows = fetch(settings, sql, params)
    except Exception as exc:
        print(f"kemi cdr: cannot read the records: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if args.csv:
        sys.stdout.write(format_csv(rows, VIEW_COLUMNS))
    elif args.call_id:
        sys.stdout.write("\n".join(format_record(r) for r in rows) if rows else "no such call\n")
    else:
        sys.stdout.write(format_table(rows, SHORT_COLUMNS))
    return EXIT_OK
