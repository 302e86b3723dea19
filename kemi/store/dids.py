"""The DID map: which extension a number dialled from the public side rings (table did_map).

    INSERT INTO did_map (did, extension) VALUES ('15550100', '3001');

Lookups are parameterised and cached (cachetools TTL cache, misses included), so a change in
the table takes effect within `sbc.did_cache_ttl` seconds in every Kamailio process,
without a restart. While the DB is down a DID counts as unmapped (the call goes to the
private gateways, as an unmapped one does) and nothing is cached.
"""
from __future__ import annotations

import time

from cachetools import TTLCache

from kemi.store.mysql import Database, DatabaseUnavailable

TABLE = "did_map"
LOOKUP_SQL = f"SELECT extension FROM {TABLE} WHERE did = %s LIMIT 1"
MAX_DID = 64               # did_map.did is VARCHAR(64): a longer R-URI user cannot be mapped
CREATE_TABLE_SQL = f"""CREATE TABLE {TABLE} (
    did VARCHAR(64) NOT NULL PRIMARY KEY COMMENT 'R-URI user as the public gateways send it',
    extension VARCHAR(64) NOT NULL COMMENT 'subscriber username it rings (location lookup)',
    description VARCHAR(255) NOT NULL DEFAULT ''
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

_UNMAPPED = ""             # cached "no row" (None means "not in the cache")


class DidMap:
    def __init__(self, db: Database, ttl: int, size: int, clock=time.monotonic):
        self._db = db
        self._cache: TTLCache = TTLCache(maxsize=size, ttl=ttl, timer=clock)

    def close(self) -> None:
        self._db.close()

    def extension(self, did: str) -> str | None:
        """The extension `did` maps to, or None (unmapped, or the DB cannot tell now)."""
        if not did or len(did) > MAX_DID:
            return None
        known = self._cache.get(did)
        if known is not None:
            return known or None
        try:
            row = self._db.query_one(LOOKUP_SQL, (did,))
        except DatabaseUnavailable:
            return None
        self._cache[did] = row[0] if row and row[0] else _UNMAPPED
        return self._cache[did] or None
