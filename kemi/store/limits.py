"""Per-name call limits from the call_limits table, over the settings' ones (limits.from_database).

    INSERT INTO call_limits (kind, name, max_calls) VALUES ('caller', '2001', 2);
    INSERT INTO call_limits (kind, name, max_calls) VALUES ('trunk', 'public', 30);

kind: caller, callee (a subscriber's username), trunk, side (an SBC side's name), gateway (its
address). max_calls: the limit, 0 = none. Lookups are parameterised and cached per Kamailio
process (rows and misses) for `limits.cache_ttl` seconds: a change applies to the calls that
start after the cached value expires, in every process, without a restart.

While MySQL is down the last value read for a name stays in force (however old); a name never
read gets the settings' limit. Either way nothing is cached as fresh, so the table is asked
again (at most every RETRY_AFTER seconds, kemi/store/mysql.py) until it answers.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from kemi.store.mysql import Database, DatabaseUnavailable

TABLE = "call_limits"
LOOKUP_SQL = f"SELECT max_calls FROM {TABLE} WHERE kind = %s AND name = %s LIMIT 1"
MAX_NAME = 64              # call_limits.name is VARCHAR(64): a longer name has no row
CREATE_TABLE_SQL = f"""CREATE TABLE {TABLE} (
    kind VARCHAR(16) NOT NULL COMMENT 'caller, callee, trunk, side or gateway',
    name VARCHAR(64) NOT NULL COMMENT 'subscriber username, SBC side name or gateway address',
    max_calls INT UNSIGNED NOT NULL COMMENT 'concurrent calls allowed; 0 = no limit',
    description VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (kind, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

_NO_ROW = -1               # cached "no row for this name" (the settings' limit applies)


class CallLimitTable:
    def __init__(self, db: Database, ttl: int, size: int, clock=time.monotonic):
        self._db, self._ttl, self._size, self._clock = db, ttl, size, clock
        # (kind, name) -> (max_calls or _NO_ROW, when it was read); least recently used first
        self._cache: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self.queries = 0

    def close(self) -> None:
        self._db.close()

    def limit(self, kind: str, name: str) -> int | None:
        """The table's limit for this name (0: none), or None: no row (the settings decide)."""
        if not name or len(name) > MAX_NAME:
            return None
        key = (kind, name)
        now = self._clock()
        known = self._cache.get(key)
        if known is not None and now - known[1] < self._ttl:
            self._cache.move_to_end(key)
            return None if known[0] == _NO_ROW else known[0]
        try:
            self.queries += 1
            row = self._db.query_one(LOOKUP_SQL, (kind, name))
        except DatabaseUnavailable:
            # the last value read stays in force; never read: the settings' limit
            return None if known is None or known[0] == _NO_ROW else known[0]
        value = int(row[0]) if row and row[0] is not None else _NO_ROW
        self._cache[key] = (value, now)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return None if value == _NO_ROW else value
