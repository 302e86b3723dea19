"""Faults, nothing lost: MariaDB restarted under a registration run, with a private
mariadbd (own datadir, socket and port; the machine's shared MariaDB is never touched).

Kamailio restarted (registrations come back from MySQL) is
test_registrar_calls.py::test_locations_survive_kamailio_restart; an exception in a
handler is test_registrar_calls.py::test_handler_exception_is_answered_500.
"""
from __future__ import annotations

import threading
import time

import pytest

from harness import stack
from harness.own_mariadb import OwnMariaDB
from harness.sipclient import SipClient, status
from harness.stack import free_port

DB_PORT = stack.PORT_BASE + 50              # inside this slot's range, clear of Kamailio and SIPp
DB_NAME = "kemi_fault"
DB_URL = f"mysql://kemi_fault:kemi_fault_pw@127.0.0.1:{DB_PORT}/{DB_NAME}"
DB_RO_URL = f"mysql://kemi_fault_ro:kemi_fault_ro@127.0.0.1:{DB_PORT}/{DB_NAME}"
PASSWORD = "fault-pw-1"
RUN_USERS = [str(3710 + n) for n in range(20)]


@pytest.fixture
def own_db(tmp_path):
    from kemi.settings import parse_settings
    from kemi_tools.stack import mariadb

    server = OwnMariaDB(DB_PORT).install().start()
    try:
        settings = parse_settings({"database": {"url": DB_URL, "ro_url": DB_RO_URL}})
        mariadb.provision(settings, socket=server.socket)
        yield server
    finally:
        server.remove()


def add_subscribers(server, users):
    values = ", ".join(f"('{u}', '127.0.0.1', '{PASSWORD}')" for u in users)
    server.sql(f"INSERT INTO subscriber (username, domain, password) VALUES {values};", DB_NAME)


def registered_in_mysql(server, users) -> set[str]:
    rows = server.sql("SELECT DISTINCT username FROM location;", DB_NAME).split()
    return set(rows) & set(users)


class RegistrationRun(threading.Thread):
    """REGISTERs one after another (users in turn) until stopped; bounded by max_seconds."""

    def __init__(self, proxy, max_seconds: float = 120):
        super().__init__(daemon=True)
        self.proxy, self.max_seconds = proxy, max_seconds
        self.results: list[tuple[float, str, int | None]] = []     # (when, user, final status)
        self.stop_event = threading.Event()

    def run(self):
        started, n = time.monotonic(), 0
        while not self.stop_event.is_set() and time.monotonic() - started < self.max_seconds:
            user = RUN_USERS[n % len(RUN_USERS)]
            n += 1
            aor = f"sip:{user}@127.0.0.1"
            with SipClient(self.proxy.address, timeout=3) as c:
                reply = c.request("REGISTER", "sip:127.0.0.1", from_uri=aor, to_uri=aor, user=user,
                                  password=PASSWORD, headers={"Expires": "600"})
            self.results.append((time.monotonic(), user, status(reply) if reply else None))
            time.sleep(0.05)

    def between(self, start: float, end: float):
        return [r for r in self.results if start <= r[0] <= end]


def test_mariadb_restart_during_registrations(own_db, kamailio_factory, tmp_path):
    from conftest import Phones

    proxy = kamailio_factory({"database": {"url": DB_URL, "ro_url": DB_RO_URL}}, name="faulty-db")
    add_subscribers(own_db, ["3701", "3702", *RUN_USERS])
    phones = Phones(proxy, None, tmp_path / "sipp")
    try:
        callee_port = free_port()
        assert phones.register("3701", callee_port, password=PASSWORD).finals == [200]
        assert _call(phones, "3702", "3701", callee_port) == 200          # before the fault

        run = RegistrationRun(proxy)
        run.start()
        time.sleep(3)
        down_at = time.monotonic()
        own_db.stop()                                                      # the fault
        time.sleep(4)
        during = _register_once(proxy, RUN_USERS[0])
        own_db.start()
        back_at = time.monotonic()
        time.sleep(6)
        run.stop_event.set()
        run.join(30)

        before = run.between(0, down_at)
        after = run.between(back_at + 2, time.monotonic())
        assert before and all(code == 200 for _, _, code in before), before[-5:]
        assert during != 200, "the DB was down, yet a REGISTER succeeded: the fault did not happen"
        assert after and all(code == 200 for _, _, code in after[1:]), after[:5]
        assert proxy.alive(), "Kamailio died with its database"
        # registrations made after the DB came back are in MySQL (usrloc write-through)
        users_after = {u for _, u, code in after if code == 200}
        assert users_after and registered_in_mysql(own_db, users_after) == users_after
        # calls to the user registered before the fault still work
        assert _call(phones, "3702", "3701", callee_port) == 200
        # the Python DB layer reconnected by itself: a non-subscriber is 404 again
        # (while it cannot ask MySQL it answers 480)
        assert _call(phones, "3702", "3799", None) == 404
        log = proxy.log()
        assert "Traceback" not in log and " raised " not in log
        down = [r for r in run.results if down_at <= r[0] <= back_at]
        print(f"\nDB restart: {len(run.results)} REGISTERs in the run; before the fault {len(before)} "
              f"all 200; while down {len(down)} ({_summary(down)}); after it came back {len(after)} "
              f"({_summary(after)}); calls after the fault: 2 of 2 completed as expected")
    finally:
        phones.stop()


def _summary(results) -> dict:
    out: dict = {}
    for _, _, code in results:
        out[code] = out.get(code, 0) + 1
    return out


def _register_once(proxy, user) -> int | None:
    aor = f"sip:{user}@127.0.0.1"
    with SipClient(proxy.address, timeout=3) as c:
        reply = c.request("REGISTER", "sip:127.0.0.1", from_uri=aor, to_uri=aor, user=user, password=PASSWORD)
    return status(reply) if reply else None


def _call(phones, caller, callee, callee_port) -> int:
    uas = phones.callee(callee_port) if callee_port else None
    call = phones.call(caller, callee, password=PASSWORD)
    if uas:
        assert uas.wait().rc == 0
    return call.finals[0] if call.finals else 0
