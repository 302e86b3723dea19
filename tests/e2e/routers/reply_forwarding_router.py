"""CONTROL for the stray-reply test: reply_route does nothing, so Kamailio forwards a reply
that matches no transaction statelessly to its second Via."""
from kemi.routing import Router


class ReplyForwardingRouter(Router):
    def reply_screen(self, msg):
        return None
