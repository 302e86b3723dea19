"""CONTROL for the enumeration tests: a registrar that tells unknown users apart (404 before
the challenge), as many real ones do. sipvicious_svwar must find extensions here."""
from kemi import sip
from kemi.routing import DONE, Router


class LeakyRouter(Router):
    def route_auth(self, msg):
        if self.subscribers.exists(msg.to_user) is False:
            self.reply(sip.NOT_FOUND)
            return DONE
        return super().route_auth(msg)
