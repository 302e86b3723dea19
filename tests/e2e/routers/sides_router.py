"""A routing subclass that logs what `call_sides()` answers where the media part will call it:
the branch route of every relayed INVITE/BYE and the reply route of every INVITE reply."""
from kemi.routing import Router


class SidesRouter(Router):
    def branch_manage(self, msg):
        super().branch_manage(msg)
        self._log("branch", msg.method, msg)

    def onreply_manage(self, msg):
        super().onreply_manage(msg)
        self._log("reply", f"{msg.status}/{msg.pv('$rm')}", msg)

    def _log(self, where, what, msg):
        sides = self.call_sides(msg)
        shown = f"{sides.ingress}->{sides.egress}" if sides else "none"
        self.ksr.info(f"kemi-test: sides {where} {what} {shown} call-id={msg.call_id}\n")
