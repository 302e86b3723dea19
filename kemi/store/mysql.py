"""One lazily opened MySQL connection per Kamailio process, reconnecting by itself.

Kamailio forks its workers after importing the routing script, so a connection opened at
import would be shared by every child: we open it on first use, in the child. A lost
connection (DB restarted, network blip) is dropped and the query retried once on a fresh
one. While the DB is down, reconnect attempts are spaced by RETRY_AFTER seconds so a SIP
worker is never stuck waiting on connect timeouts message after message.

With several servers (database.url, then database.failover: a Galera cluster) a lost or
refused connection moves on to the next server at once; the DB is "down" only when none
answers.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

RETRY_AFTER = 2.0          # seconds between reconnect attempts while the DB is down
CONNECT_TIMEOUT = 2        # seconds; a SIP worker blocks at most this long per attempt
IO_TIMEOUT = 2


class DatabaseUnavailable(RuntimeError):
    """The query could not run: the DB is down or refused it."""


class Database:
    def __init__(self, connect_args: dict | tuple[dict, ...] | list[dict], log=None, clock=time.monotonic):
        servers = [connect_args] if isinstance(connect_args, dict) else list(connect_args)
        self._servers = [dict(a, connect_timeout=CONNECT_TIMEOUT, read_timeout=IO_TIMEOUT,
                              write_timeout=IO_TIMEOUT) for a in servers]
        self._current = 0           # the server in use (or tried next)
        self._conn: Any = None       # a MySQLdb connection (imported lazily, in the child)
        self._down_since: float | None = None
        self._log = log or (lambda text: None)
        self._clock = clock
        self.connects = 0           # how many connections this process opened (for tests)

    def query_one(self, sql: str, params: tuple):
        """First row of a parameterised SELECT, or None."""
        import MySQLdb  # imported here: the package must load where mysqlclient is absent (unit tests)

        last_error = None
        for _attempt in range(2):
            conn = self._connection(MySQLdb)
            try:
                cursor = conn.cursor()
                try:
                    cursor.execute(sql, params)
                    return cursor.fetchone()
                finally:
                    cursor.close()
            except MySQLdb.OperationalError as exc:   # lost connection, server gone: retry once
                last_error = exc
                self._drop()
                self._next_server(exc)
            except MySQLdb.Error as exc:              # bad query or data: no point retrying
                raise DatabaseUnavailable(f"query failed: {exc}") from exc
        self._mark_down(last_error)
        raise DatabaseUnavailable(f"lost the connection to MySQL: {last_error}")

    def execute_many(self, sql: str, rows: list[tuple]) -> int:
        """A parameterised INSERT for every row, in one statement (mysqlclient's executemany):
        all or none. Returns the rows affected. (The records' spool replay.)"""
        import MySQLdb

        last_error = None
        for _attempt in range(2):
            conn = self._connection(MySQLdb)
            try:
                cursor = conn.cursor()
                try:
                    return cursor.executemany(sql, rows) or 0
                finally:
                    cursor.close()
            except MySQLdb.OperationalError as exc:
                last_error = exc
                self._drop()
                self._next_server(exc)
            except MySQLdb.Error as exc:
                raise DatabaseUnavailable(f"insert failed: {exc}") from exc
        self._mark_down(last_error)
        raise DatabaseUnavailable(f"lost the connection to MySQL: {last_error}")

    def _connection(self, MySQLdb):
        if self._conn is not None:
            return self._conn
        now = self._clock()
        if self._down_since is not None and now - self._down_since < RETRY_AFTER:
            raise DatabaseUnavailable("MySQL is unreachable; next reconnect attempt in "
                                      f"{RETRY_AFTER - (now - self._down_since):.1f}s")
        error = None
        for _ in range(len(self._servers)):
            try:
                self._conn = MySQLdb.connect(**self._servers[self._current])
                break
            except MySQLdb.Error as exc:
                error = exc
                self._next_server(exc)
        else:
            self._mark_down(error)
            raise DatabaseUnavailable(f"cannot connect to MySQL: {error}") from error
        self._conn.autocommit(True)
        if self._down_since is not None:
            self._log("kemi: MySQL connection restored\n")
        self._down_since = None
        self.connects += 1
        return self._conn

    def _next_server(self, exc) -> None:
        if len(self._servers) > 1:
            failed = self._servers[self._current]["host"]
            self._current = (self._current + 1) % len(self._servers)
            self._log(f"kemi: MySQL server {failed} failed ({exc}); moving on to "
                      f"{self._servers[self._current]['host']}\n")

    @property
    def server(self) -> str:
        """The host in use (or tried next)."""
        return self._servers[self._current]["host"]

    def close(self) -> None:
        """Close the connection now (a reconnect happens on the next query, as after a loss)."""
        self._drop()

    def _mark_down(self, exc) -> None:
        if self._down_since is None:
            self._log(f"kemi: MySQL unavailable ({exc}); retrying every {RETRY_AFTER:.0f}s\n")
        self._down_since = self._clock()

    def _drop(self) -> None:
        if self._conn is not None:
            # closing a dead connection may itself fail; it is gone either way
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
