"""CONTROLS for the topology-hiding tests (tests/e2e/test_topology.py)."""
from kemi.routing import Router
from kemi.routing.guard import ROUTE_OK


class ToposEverywhereRouter(Router):
    """topos is never told to leave a message alone: its event callback does nothing, as
    without the callback (a call between non-hiding sides gets stripped all the same)."""

    def ksr_topos_event(self, _msg=None, _event: str = "") -> int:
        return ROUTE_OK


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
