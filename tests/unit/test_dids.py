"""The DID map: parameterised lookups, TTL cache (misses too), DB outages not cached."""
from kemi.store.dids import LOOKUP_SQL, DidMap
from kemi.store.mysql import DatabaseUnavailable


class FakeDb:
    def __init__(self, rows):
        self.rows, self.queries, self.down = dict(rows), [], False

    def query_one(self, sql, params):
        self.queries.append((sql, params))
        if self.down:
            raise DatabaseUnavailable("down")
        value = self.rows.get(params[0])
        return (value,) if value is not None else None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lookup_is_parameterised_and_cached_until_ttl():
    db, clock = FakeDb({"15550100": "3001"}), Clock()
    dids = DidMap(db, ttl=5, size=100, clock=clock)
    assert dids.extension("15550100") == "3001"
    assert db.queries == [(LOOKUP_SQL, ("15550100",))]
    assert "%s" in LOOKUP_SQL and "15550100" not in LOOKUP_SQL
    db.rows["15550100"] = "3002"                       # changed in the table
    clock.now += 4
    assert dids.extension("15550100") == "3001"        # still cached
    clock.now += 2
    assert dids.extension("15550100") == "3002"        # TTL over: the change is seen
    assert len(db.queries) == 2


def test_misses_are_cached_too():
    db, clock = FakeDb({}), Clock()
    dids = DidMap(db, ttl=5, size=100, clock=clock)
    assert dids.extension("15550111") is None
    assert dids.extension("15550111") is None
    assert len(db.queries) == 1
    db.rows["15550111"] = "3003"
    clock.now += 6
    assert dids.extension("15550111") == "3003"


def test_db_down_is_unmapped_and_not_cached():
    db = FakeDb({"15550100": "3001"})
    db.down = True
    dids = DidMap(db, ttl=60, size=100, clock=Clock())
    assert dids.extension("15550100") is None
    db.down = False
    assert dids.extension("15550100") == "3001"


def test_hostile_input_never_reaches_the_db():
    db = FakeDb({})
    dids = DidMap(db, ttl=60, size=100, clock=Clock())
    assert dids.extension("") is None
    assert dids.extension("9" * 65) is None
    assert db.queries == []
    assert dids.extension("1' OR '1'='1") is None       # parameterised: just an unknown DID
    assert db.queries == [(LOOKUP_SQL, ("1' OR '1'='1",))]
