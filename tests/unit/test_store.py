"""The MySQL side: parameterised, lazily connected, reconnecting, cached."""
import sys
import types

import pytest

from kemi.store import mysql
from kemi.store.mysql import Database, DatabaseUnavailable
from kemi.store.subscribers import EXISTS_SQL, SubscriberDirectory


class FakeMySQLdb(types.ModuleType):
    """Just enough of mysqlclient: connections that can be made to fail."""

    class Error(Exception):
        pass

    class OperationalError(Error):
        pass

    def __init__(self):
        super().__init__("MySQLdb")
        self.up = True
        self.rows = {}
        self.executed = []
        self.connections = 0
        self.break_next_query = False
        self.down_hosts = set()        # servers that refuse connections (a Galera node killed)
        self.hosts_connected = []

    def connect(self, **kw):
        if not self.up or kw.get("host") in self.down_hosts:
            raise self.OperationalError(2002, "Can't connect")
        self.hosts_connected.append(kw.get("host"))
        self.connections += 1
        lib = self

        class Cursor:
            def execute(self, sql, params):
                if lib.break_next_query:
                    lib.break_next_query = False
                    raise lib.OperationalError(2006, "MySQL server has gone away")
                lib.executed.append((sql, params))
                self.row = lib.rows.get(params)

            def fetchone(self):
                return self.row

            def close(self):
                pass

        class Conn:
            def cursor(self):
                return Cursor()

            def autocommit(self, on):
                pass

            def close(self):
                pass

        return Conn()


@pytest.fixture
def fake_mysql(monkeypatch):
    lib = FakeMySQLdb()
    monkeypatch.setitem(sys.modules, "MySQLdb", lib)
    return lib


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_connects_lazily_once_and_passes_parameters(fake_mysql):
    db = Database({"host": "localhost"})
    assert fake_mysql.connections == 0
    fake_mysql.rows[("2001",)] = (1,)
    assert db.query_one(EXISTS_SQL, ("2001",)) == (1,)
    assert db.query_one(EXISTS_SQL, ("2002",)) is None
    assert fake_mysql.connections == 1
    assert fake_mysql.executed[0] == (EXISTS_SQL, ("2001",))


def test_lost_connection_is_replaced_and_the_query_retried(fake_mysql):
    db = Database({})
    db.query_one(EXISTS_SQL, ("a",))
    fake_mysql.break_next_query = True
    db.query_one(EXISTS_SQL, ("b",))
    assert fake_mysql.connections == 2 and fake_mysql.executed[-1] == (EXISTS_SQL, ("b",))


def test_db_down_fails_fast_then_recovers(fake_mysql):
    clock, logs = Clock(), []
    db = Database({}, log=logs.append, clock=clock)
    fake_mysql.up = False
    with pytest.raises(DatabaseUnavailable):
        db.query_one(EXISTS_SQL, ("a",))
    fake_mysql.up = True
    with pytest.raises(DatabaseUnavailable, match="next reconnect attempt"):
        db.query_one(EXISTS_SQL, ("a",))            # within RETRY_AFTER: no connect attempt
    assert fake_mysql.connections == 0
    clock.now += mysql.RETRY_AFTER
    assert db.query_one(EXISTS_SQL, ("a",)) is None
    assert "unavailable" in logs[0] and "restored" in logs[-1]


def test_a_failed_server_is_left_for_the_next_one_at_once(fake_mysql):
    """Galera: database.url's server dies; the next query goes to the next server, no wait."""
    logs = []
    db = Database(({"host": "g1"}, {"host": "g2"}, {"host": "g3"}), log=logs.append)
    db.query_one(EXISTS_SQL, ("a",))
    fake_mysql.down_hosts.add("g1")
    fake_mysql.break_next_query = True          # the open connection to g1 dies mid-query
    fake_mysql.rows[("b",)] = (1,)
    assert db.query_one(EXISTS_SQL, ("b",)) == (1,)
    assert fake_mysql.hosts_connected == ["g1", "g2"] and db.server == "g2"
    assert any("g1 failed" in line and "moving on to g2" in line for line in logs)
    fake_mysql.down_hosts.add("g2")
    db.close()
    assert db.query_one(EXISTS_SQL, ("b",)) == (1,)             # g2 refuses too: g3
    assert fake_mysql.hosts_connected[-1] == "g3"


def test_every_server_down_is_down(fake_mysql):
    db = Database(({"host": "g1"}, {"host": "g2"}))
    fake_mysql.down_hosts |= {"g1", "g2"}
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        db.query_one(EXISTS_SQL, ("a",))


def test_injection_text_is_only_ever_a_parameter(fake_mysql):
    directory = SubscriberDirectory(Database({}), ttl=30, size=10)
    hostile = "2001' OR '1'='1"
    assert directory.exists(hostile) is False
    assert fake_mysql.executed == [(EXISTS_SQL, (hostile,))]
    assert "%s" in EXISTS_SQL and "'" not in EXISTS_SQL


def test_answers_are_cached(fake_mysql):
    fake_mysql.rows[("2001",)] = (1,)
    directory = SubscriberDirectory(Database({}), ttl=30, size=10)
    assert directory.exists("2001") is True and directory.exists("2001") is True
    assert directory.exists("2999") is False and directory.exists("2999") is False
    assert len(fake_mysql.executed) == 2


def test_names_that_cannot_exist_are_not_queried(fake_mysql):
    directory = SubscriberDirectory(Database({}), ttl=30, size=10)
    assert directory.exists("") is False and directory.exists("9" * 65) is False
    assert fake_mysql.executed == []


def test_db_down_is_unknown_not_absent(fake_mysql):
    fake_mysql.up = False
    directory = SubscriberDirectory(Database({}), ttl=30, size=10)
    assert directory.exists("2001") is None
