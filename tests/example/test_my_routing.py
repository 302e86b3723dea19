# tests/example/test_my_routing.py: its unit tests, with kemi's fake KSR (no Kamailio)
from kemi.testing import FakeKSR, SipMessage, make_router
from my_routing import MyRouter, is_blocked

CREDENTIALS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}


def call(number: str, authenticated: bool = True) -> FakeKSR:
    """2002 calls `number` (with the right password, or none); 2001 is registered."""
    headers = CREDENTIALS if authenticated else {}
    ksr = FakeKSR(SipMessage(method="INVITE", ruri=f"sip:{number}@127.0.0.1", headers=headers))
    if authenticated:
        ksr.results["auth_db.auth_check"] = 1      # what Kamailio's auth_db says
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    make_router(ksr, router_class=MyRouter).ksr_request_route(None)
    return ksr


def test_a_blocked_number_gets_403_and_is_not_relayed():
    ksr = call("9001234")
    assert ksr.replies == [(403, "Number blocked")]
    assert not ksr.relayed


def test_other_calls_still_ring():
    ksr = call("2001")
    assert ksr.replies == []
    assert ksr.relayed[0]["ruri"] == "sip:2001@192.0.2.20:5060"


def test_a_stranger_is_challenged_first():
    ksr = call("9001234", authenticated=False)
    assert ksr.replies == [(407, "Proxy Authentication Required")]


def test_the_decision():
    assert is_blocked("9001234") and is_blocked("09001234")
    assert not is_blocked("2001") and not is_blocked("19001234")
