# tests/example/my_routing.py: a site's routing edit, calls to premium numbers get 403
from kemi import sip
from kemi.routing import Router

BLOCKED_PREFIXES = ("900", "0900")
BLOCKED = sip.Reply(403, "Number blocked")


def is_blocked(number: str) -> bool:
    """The decision, as a plain function of a plain value: testable without SIP."""
    return number.startswith(BLOCKED_PREFIXES)


class MyRouter(Router):
    def route_location(self, msg):
        # runs after authentication, so strangers only ever see the 407 challenge
        if is_blocked(msg.ruri_user):
            self.ksr.info(f"my_routing: {msg.ruri_user} is blocked, answered 403\n")
            self.reply(BLOCKED)
            return
        super().route_location(msg)
