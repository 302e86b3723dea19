"""Is this user a subscriber? (404 vs 480 when an extension has no contact.)"""
from __future__ import annotations

from cachetools import TTLCache

from kemi.store.mysql import Database, DatabaseUnavailable

# usrloc and auth_db run with use_domain=0 (one SIP domain), so the username alone decides.
EXISTS_SQL = "SELECT 1 FROM subscriber WHERE username = %s LIMIT 1"
MAX_USERNAME = 64          # subscriber.username is VARCHAR(64): longer names cannot exist


class SubscriberDirectory:
    def __init__(self, db: Database, ttl: int, size: int):
        self._db = db
        self._cache: TTLCache = TTLCache(maxsize=size, ttl=ttl)

    def close(self) -> None:
        self._db.close()

    def exists(self, username: str) -> bool | None:
        """True/False, or None when the DB cannot tell right now."""
        if not username or len(username) > MAX_USERNAME:
            return False
        known = self._cache.get(username)
        if known is not None:
            return known
        try:
            found = self._db.query_one(EXISTS_SQL, (username,)) is not None
        except DatabaseUnavailable:
            return None
        self._cache[username] = found
        return found
