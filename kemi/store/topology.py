"""Can topos store a new hidden call right now? One query on this process's own connection.

topos writes a hidden call's Via, Record-Route and Contact to its tables as the INVITE leaves;
when that write fails it sends the message UNCHANGED (topos 5.6 and 6.0, tps_request_sent),
with every address it should have stripped. So a new hidden call is relayed only after this
check answered: the database is reachable and topos's table is there (docs/sbc.md).
"""
from __future__ import annotations

from kemi.store.mysql import Database, DatabaseUnavailable

# topos's dialog table (its schema: /usr/share/kamailio/mysql/topos-create.sql)
CHECK_SQL = "SELECT 1 FROM topos_d LIMIT 1"


class TopologyStorage:
    def __init__(self, db: Database):
        self._db = db

    def problem(self) -> str | None:
        """None when topos's storage answers; else why not (for the log line)."""
        try:
            self._db.query_one(CHECK_SQL, ())
        except DatabaseUnavailable as exc:
            return str(exc)
        return None

    def close(self) -> None:
        self._db.close()
