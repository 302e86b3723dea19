"""A site routing subclass for a control: the NAT handling as it was before issue 24, which let
a request to a NATed party open a new TCP/TLS connection toward its router (Kamailio's
set_forward_no_connect is never called). tests/e2e/test_nat.py shows the connection attempt.
"""
from kemi.routing import Router


class _ConnectingKsr:
    """KSR as the NAT part sees it, with set_forward_no_connect() doing nothing."""

    def __init__(self, ksr):
        self._ksr = ksr

    def __getattr__(self, name):
        return getattr(self._ksr, name)

    def set_forward_no_connect(self):
        return 1


class ConnectingNatRouter(Router):
    def __init__(self, ksr, *args, **kwargs):
        super().__init__(ksr, *args, **kwargs)
        self.nat.ksr = _ConnectingKsr(ksr)
