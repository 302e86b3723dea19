"""CONTROL for the injection test: the seed's mistake, SQL built from $rU by concatenation.
`x'or'1'='1` then "exists", and the call gets 480 instead of 404."""
from kemi.routing import Router
from kemi.store.mysql import DatabaseUnavailable


class _ConcatenatingDirectory:
    def __init__(self, db):
        self.db = db

    def exists(self, username):
        try:
            return self.db.query_one(f"SELECT 1 FROM subscriber WHERE username = '{username}' LIMIT 1", ()) is not None
        except DatabaseUnavailable:
            return None


class InjectableRouter(Router):
    def __init__(self, ksr, settings, subscribers, **kw):
        super().__init__(ksr, settings, _ConcatenatingDirectory(subscribers._db), **kw)
