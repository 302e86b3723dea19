"""A site routing subclass with a bug: calls to 2999 raise inside the route."""
from kemi.routing import Router


class RaisingRouter(Router):
    def route_location(self, msg):
        if msg.ruri_user == "2999":
            raise RuntimeError("deliberate failure for the exception test")
        return super().route_location(msg)
