"""CONTROLS for the topology-hiding tests (tests/e2e/test_sbc_topology.py)."""
from kemi.routing import Router
from kemi.routing.guard import ROUTE_OK


class ToposEverywhereRouter(Router):
    """topos is never told to leave a message alone: its event callback does nothing, as
    without the callback (a call between non-hiding sides gets stripped all the same)."""

    def ksr_topos_event(self, _msg=None, _event: str = "") -> int:
        return ROUTE_OK


class UnrewrittenRedirectRouter(Router):
    """A hidden call's 3xx is relayed as the callee sent it (no SBC contacts)."""

    def failure_manage(self, msg):
        canceled = self.ksr.tm.t_is_canceled() > 0
        if not canceled and self.sides.failover(msg):
            return
        self.media.on_failure(msg, canceled)


class _AlwaysUsable:
    def problem(self):
        return None

    def close(self):
        pass


class UncheckedStorageRouter(Router):
    """A new hidden call is relayed without asking whether topos can store it."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.topology.storage = _AlwaysUsable()
