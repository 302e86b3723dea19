"""A site routing subclass for tests: an unanswered INVITE times out after seconds, not minutes.

kamailio.cfg's fr_inv_timer is 120 s; with this router tm gives up on a ringing phone after
RING_TIMEOUT_MS, CANCELs it and answers 408 itself (through the failure route).
"""
from kemi.routing import Router

RING_TIMEOUT_MS = 2500          # fr_inv_timer: ringing, no final answer
NO_REPLY_TIMEOUT_MS = 2000      # fr_timer: not even a provisional reply


class ShortTimerRouter(Router):
    def route_relay(self, msg):
        if msg.method == "INVITE" and not msg.in_dialog:
            self.ksr.tm.t_set_fr(RING_TIMEOUT_MS, NO_REPLY_TIMEOUT_MS)
        return super().route_relay(msg)
