"""CONTROL for the forged-Route test: in-dialog requests are loose-routed without checking
the Record-Route signature, as Kamailio's default configuration does."""
from kemi.routing import Router


class UnsignedRoutesRouter(Router):
    def route_signed(self, msg):
        return True
