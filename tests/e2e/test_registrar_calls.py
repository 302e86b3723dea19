"""The registrar story end to end: kamctl add, REGISTER with digest auth, 2002 calls 2001.

Real Kamailio (our kamailio.cfg + kemi package), real MariaDB, SIPp phones. Each test uses
its own extensions so tests do not see each other's registrations.
"""
import time

from harness import rawsip, stack
from harness.stack import free_port


def test_kamailio_cfg_passes_config_check(proxy):
    checked = proxy.check_config()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_register_and_call_2002_to_2001(db, proxy, phones):
    db.add_subscriber("2001")
    db.add_subscriber("2002")
    callee_port, caller_port = free_port(), free_port()
    for user, port in (("2001", callee_port), ("2002", caller_port)):
        reg = phones.register(user, port)
        assert reg.rc == 0 and reg.finals == [200], reg.stdout[-2000:]
    assert db.locations("2001") == [f"sip:2001@127.0.0.1:{callee_port};transport=UDP"]
    assert db.locations("2002") == [f"sip:2002@127.0.0.1:{caller_port};transport=UDP"]

    uas = phones.callee(callee_port)
    call = phones.call("2002", "2001", local_port=caller_port)
    callee = uas.wait()
    assert call.rc == 0, call.stdout[-3000:]
    assert call.finals == [200] and call.values("bye") == ["200"]
    assert callee.rc == 0, callee.stdout[-3000:]
    # the callee saw the INVITE, the ACK and the BYE, each relayed by the proxy (its Via on top)
    for method in ("INVITE", "ACK", "BYE"):
        requests = callee.received_requests(method)
        assert requests, f"callee got no {method}"
        top_via = next(l for l in requests[0].splitlines() if l.startswith("Via:"))
        assert f"127.0.0.1:{proxy.port}" in top_via, top_via
    # credentials were consumed before relaying
    assert "Proxy-Authorization" not in callee.messages


def test_wrong_password_is_refused(db, proxy, phones):
    db.add_subscriber("2011")
    reg = phones.register("2011", free_port(), password="wrong-password")
    assert reg.finals == [401]
    assert db.locations("2011") == []


def test_unregister_with_expires_zero_removes_location(db, proxy, phones):
    db.add_subscriber("2021")
    port = free_port()
    assert phones.register("2021", port).finals == [200]
    assert len(db.locations("2021")) == 1
    assert phones.register("2021", port, expires=0).finals == [200]
    assert db.locations("2021") == []


def test_subscriber_without_contact_gets_480(db, proxy, phones):
    db.add_subscriber("2031")
    db.add_subscriber("2032")
    port = free_port()
    assert phones.register("2031", port).finals == [200]
    assert phones.register("2031", port, expires=0).finals == [200]
    call = phones.call("2032", "2031")
    assert call.finals == [480], call.stdout[-2000:]


def test_non_subscriber_gets_404(db, proxy, phones):
    db.add_subscriber("2041")
    call = phones.call("2041", "2999")
    assert call.finals == [404], call.stdout[-2000:]


def test_from_user_other_than_credentials_gets_403(db, proxy, phones):
    db.add_subscriber("2051")
    db.add_subscriber("2052")
    call = phones.call("2052", "2051", auth_user="2051")   # From 2052, credentials of 2051
    assert call.finals == [403]


def test_parallel_forking_to_every_contact(db, proxy, phones):
    db.add_subscriber("2061")
    db.add_subscriber("2062")
    answering, ringing = free_port(), free_port()
    assert phones.register("2061", answering).finals == [200]
    assert phones.register("2061", ringing).finals == [200]
    assert len(db.locations("2061")) == 2
    uas = phones.callee(answering)
    other = phones.callee(ringing, scenario="uas_ring_cancelled.xml")
    call = phones.call("2062", "2061")
    assert call.finals == [200] and call.rc == 0, call.stdout[-2000:]
    assert uas.wait().rc == 0
    cancelled = other.wait()
    assert cancelled.rc == 0, cancelled.stdout[-2000:]
    assert cancelled.values("cancelled")      # the second phone rang, then was cancelled


def test_locations_survive_kamailio_restart(db, proxy, phones):
    db.add_subscriber("2071")
    db.add_subscriber("2072")
    port = free_port()
    assert phones.register("2071", port).finals == [200]
    proxy.restart()                            # usrloc preloads the location table
    assert "2071" in proxy.kamcmd("ul.dump")
    uas = phones.callee(port)
    call = phones.call("2072", "2071")
    assert call.finals == [200] and call.rc == 0, call.stdout[-2000:]
    assert uas.wait().rc == 0


def test_options_to_the_server_is_answered(proxy):
    replies = rawsip.exchange(proxy.address, "OPTIONS", f"sip:{proxy.target}")
    assert replies and rawsip.status(replies[-1]) == 200


def test_max_forwards_zero_gets_483(proxy):
    replies = rawsip.exchange(proxy.address, "OPTIONS", f"sip:2001@{proxy.target}",
                              headers={"Max-Forwards": "0"})
    assert replies and rawsip.status(replies[-1]) == 483


def test_unauthenticated_invite_is_challenged_not_relayed(db, proxy, phones):
    db.add_subscriber("2081")
    port = free_port()
    assert phones.register("2081", port).finals == [200]
    uas = phones.callee(port, timeout=3)
    replies = rawsip.exchange(proxy.address, "INVITE", f"sip:2081@{proxy.target}",
                              from_uri="sip:mallory@203.0.113.66")
    assert replies and rawsip.status(replies[-1]) == 407
    assert "qop=\"auth\"" in replies[-1] or "qop=auth" in replies[-1]
    assert "INVITE sip:" not in uas.wait().messages


def test_handler_exception_is_answered_500(db, kamailio_factory, phones, tmp_path):
    """A routing subclass that raises: the caller gets 500 at once, the log one line."""
    proxy = kamailio_factory({"python": {"router": "raising_router:RaisingRouter",
                                         "path": [str(stack.project_file("tests", "e2e", "routers"))]}},
                             name="raising")
    phones.proxy = proxy
    db.add_subscriber("2091")
    started = time.monotonic()
    call = phones.call("2091", "2999")
    assert call.finals == [500], call.stdout[-2000:]
    assert time.monotonic() - started < 5          # answered, not timed out
    call_id = call.log[0].split("call-id=")[1]
    lines = [l for l in proxy.log().splitlines() if "request_route raised" in l]
    assert len(lines) == 1 and call_id in lines[0] and "RuntimeError" in lines[0]
    assert "Traceback" not in proxy.log()


def test_usrloc_db_only_mode_registers_and_routes(db, kamailio_factory, phones):
    proxy = kamailio_factory({"database": {"usrloc_db_mode": 3}}, name="dbonly")
    phones.proxy = proxy
    db.add_subscriber("2101")
    db.add_subscriber("2102")
    port = free_port()
    assert phones.register("2101", port).finals == [200]
    assert len(db.locations("2101")) == 1
    uas = phones.callee(port)
    assert phones.call("2102", "2101").finals == [200]
    assert uas.wait().rc == 0
