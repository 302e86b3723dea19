"""Fixtures that start the real parts. Every daemon is stopped by PID at teardown."""
from __future__ import annotations

import pytest

from harness import stack
from harness.sipp import Sipp, auth_row
from harness.stack import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def db(tmp_path_factory):
    assert stack.have_tools(), "end-to-end tests need root and the Debian packages: run scripts/install.sh"
    database = stack.TestDatabase(tmp_path_factory.mktemp("mariadb"))
    database.start()
    yield database
    database.stop()


@pytest.fixture(scope="module", autouse=True)
def no_registrations_of_earlier_files(request):
    """Each test file starts with an empty location table (each owns its extensions): an earlier
    file's contacts may name TCP sockets or NAT routers of namespaces gone by now, which a new
    Kamailio would preload ("bad socket" ERRORs) and send its NAT keepalives to."""
    if any(item.module is request.module and "db" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("db").query("DELETE FROM location;")


@pytest.fixture
def kamailio_factory(db, tmp_path):
    """start(overrides) -> a running KamailioInstance; all are stopped after the test."""
    started = []

    def start(overrides: dict | None = None, name: str = "kamailio", host: str = "127.0.0.1",
              cfg=stack.kamailio.KAMAILIO_CFG):
        inst = stack.KamailioInstance(tmp_path / name, stack.kamailio_port(), overrides, host=host, cfg=cfg).start()
        started.append(inst)
        return inst

    yield start
    for inst in started:
        inst.stop()


@pytest.fixture
def proxy(kamailio_factory):
    return kamailio_factory()


class Phones:
    """SIPp phones against one proxy: register, take calls, make calls."""

    def __init__(self, proxy, db, workdir, domain: str = stack.DOMAIN, local_ip: str = "127.0.0.1"):
        self.proxy, self.db, self.workdir = proxy, db, workdir
        self.domain, self.local_ip = domain, local_ip      # SIP domain of the AORs, phones' address
        self.running: list[Sipp] = []

    def register(self, user: str, contact_port: int, password: str = stack.PASSWORD,
                 expires: int = 3600, auth_user: str | None = None, domain: str | None = None):
        return Sipp("register.xml", self.workdir, target=self.proxy.target, local_ip=self.local_ip,
                    rows=[auth_row(user, password, domain or self.domain, auth_user=auth_user)],
                    keys={"contact_port": contact_port, "expires": expires}).run()

    def callee(self, port: int, scenario: str = "uas_callee.xml", calls: int = 1, **kw) -> Sipp:
        uas = Sipp(scenario, self.workdir, local_port=port, calls=calls, local_ip=self.local_ip, **kw).start()
        self.running.append(uas)
        return uas

    def call(self, caller: str, callee: str, password: str = stack.PASSWORD, hold_ms: int = 300,
             auth_user: str | None = None, **kw):
        return Sipp("uac_call.xml", self.workdir, target=self.proxy.target, local_ip=self.local_ip,
                    rows=[auth_row(caller, password, self.domain, callee, auth_user=auth_user)],
                    sets={"hold_ms": hold_ms}, **kw).run()

    def stop(self):
        for s in self.running:
            s.stop()


@pytest.fixture
def phones(proxy, db, tmp_path):
    p = Phones(proxy, db, tmp_path / "sipp")
    yield p
    p.stop()
