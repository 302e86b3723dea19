"""The one SIPp runner (kemi_tools/sipp.py) and the shared scenarios against a real Kamailio.

The benchmark runs the same scenario files as the tests and the kit, with -set fail_refused 1:
a refused registration or call must then count as a failed call in SIPp's own counters (the
bench reads only those), while the tests and the kit see it as a logged final answer.
Extensions 6700-6709 belong to this file.
"""
from harness import stack
from harness.sipp import Sipp, auth_row
from harness.stack import free_port

from bench.load import client

REGISTERING, CALLER, CONTACT, NOBODY = "6701", "6702", "6703", "6709"


def bench_load(proxy, tmp_path, scenario: str, row: str, **kw):
    """One call of the bench's load (bench/load.py client) against the test's Kamailio."""
    inf = tmp_path / f"{scenario}.csv"
    inf.write_text(f"SEQUENTIAL\n{row}\n")
    return client(scenario, proxy.target, inf, tmp_path / "bench", free_port(), 1, 5, "0-1", "127.0.0.1",
                  **kw).start().wait()


def counts(result) -> tuple:
    return result.rc, result.sipp_count("SuccessfulCall"), result.sipp_count("FailedCall")


def test_a_refused_registration_fails_only_with_fail_refused(db, proxy, tmp_path):
    db.add_subscriber(REGISTERING)
    keys = {"contact_port": free_port(), "expires": 60}
    wrong = auth_row(REGISTERING, "wrong-password", stack.DOMAIN)
    refused = bench_load(proxy, tmp_path, "register.xml", wrong, keys=keys)
    assert counts(refused) == (1, 0, 1), refused.stdout[-2000:]
    assert refused.rtts_ms and refused.cpu_s > 0          # response time kept, rusage read (wait4)
    # control: the same refusal without fail_refused (the tests, the kit) is a logged answer
    logged = Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=[wrong], keys=keys).run()
    assert logged.finals == [401] and counts(logged) == (0, 1, 0), logged.stdout[-2000:]
    # and the bench's load with the right password succeeds
    ok = bench_load(proxy, tmp_path, "register.xml", auth_row(REGISTERING, stack.PASSWORD, stack.DOMAIN), keys=keys)
    assert counts(ok) == (0, 1, 0), ok.stdout[-2000:]


def test_a_refused_call_fails_only_with_fail_refused(db, proxy, tmp_path):
    db.add_subscriber(CALLER)
    row = auth_row(CALLER, stack.PASSWORD, stack.DOMAIN, NOBODY)            # not a subscriber: 404
    refused = bench_load(proxy, tmp_path, "uac_call.xml", row, sets={"hold_ms": 0})
    assert counts(refused) == (1, 0, 1), refused.stdout[-2000:]
    logged = Sipp("uac_call.xml", tmp_path / "sipp", target=proxy.target, rows=[row], sets={"hold_ms": 0}).run()
    assert logged.finals == [404] and counts(logged) == (0, 1, 0), logged.stdout[-2000:]


def test_the_contact_host_is_the_sipps_address_unless_given(db, proxy, tmp_path):
    db.add_subscriber(CONTACT)
    port = free_port()
    row = [auth_row(CONTACT, stack.PASSWORD, stack.DOMAIN)]
    Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
         keys={"contact_port": port, "expires": 60}).run()
    assert db.locations(CONTACT) == [f"sip:{CONTACT}@127.0.0.1:{port};transport=UDP"]
    Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
         keys={"contact_port": port, "expires": 0}).run()
    elsewhere = Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
                     keys={"contact_port": port, "expires": 60, "contact_host": "192.0.2.7"}).run()
    assert elsewhere.finals == [200]
    assert db.locations(CONTACT) == [f"sip:{CONTACT}@192.0.2.7:{port};transport=UDP"]
