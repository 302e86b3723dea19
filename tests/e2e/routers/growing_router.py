"""CONTROL for the soak's slope check: a router that keeps 4 KiB per request it routes (a
list that only grows, as a cache without a bound would). make soak must judge it a leak."""
from kemi.routing import Router

KEPT_BYTES = 4096


class GrowingRouter(Router):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept: list[bytes] = []

    def route_request(self, msg):
        self.kept.append(bytes(KEPT_BYTES))
        return super().route_request(msg)
