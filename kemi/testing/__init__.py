"""Unit-test your routing without Kamailio: a fake KSR with the KEMI API of the Kamailio you
target (5.6 or 6.0; by default the installed one: kemi/testing/fake_ksr.py).

    from kemi.testing import FakeKSR, SipMessage, make_router
    ksr = FakeKSR(SipMessage(method="OPTIONS", ruri="sip:127.0.0.1"))
    make_router(ksr).ksr_request_route(None)
    assert ksr.reply == (200, "OK")
"""
from kemi.testing.fake_ksr import FakeKSR, KSRTypeError, SipMessage, parse_uri
from kemi.testing.helpers import FakeCallLimits, FakeSubscribers, make_router, signed_route

__all__ = ["FakeCallLimits", "FakeKSR", "FakeSubscribers", "KSRTypeError", "SipMessage", "make_router", "parse_uri",
           "signed_route"]
