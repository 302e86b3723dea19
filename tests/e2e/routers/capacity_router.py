"""The overload tests' router: a fixed cost per new request past the overload check (10 ms
in route_auth), so each SIP worker serves at most 100 of them a second whatever else the
shared machine runs, and "three times what it can serve" is a known rate."""
import time

from kemi.routing import Router

SERVICE_S = 0.010


class CapacityRouter(Router):
    def route_auth(self, msg):
        time.sleep(SERVICE_S)       # the work a database-bound registrar would wait for
        return super().route_auth(msg)
