"""The dialog part: the signed Record-Route (kemi/security/dialog.py says why).

sign     after record_route() on a dialog-forming request we accepted: the Record-Route
         carries an HMAC of the Call-ID
signed   after loose_route() > 0: did the Route that names us carry this dialog's token?
         A loose-routed in-dialog request without it is refused (403; an ACK is dropped):
         otherwise a To tag and a Route header would make the proxy an open relay.
"""
from __future__ import annotations

from typing import Callable

from kemi import sip
from kemi.routing.message import Message
from kemi.security import dialog

# the Record-Route secret when settings have none: made at import, which app_python3 does
# once before Kamailio forks, so every worker process signs and checks with the same one.
# A live reload imports this module again (a new RUN_SECRET): kemi/reload.py hands the
# running secret to the new router (Router.take_over), so calls set up before it keep passing.
RUN_SECRET = dialog.new_secret()


class RecordRouteSigner:
    def __init__(self, ksr, configured_secret: str, reply: Callable[[sip.Reply], None]):
        self.ksr, self.reply = ksr, reply
        self.configured_secret = configured_secret      # security.route_secret ("" = none)
        self.run_secret = RUN_SECRET

    @property
    def secret(self) -> str:
        return self.configured_secret or self.run_secret

    def sign(self, msg: Message) -> None:
        self.ksr.rr.add_rr_param(dialog.rr_param(self.secret, msg.call_id))

    def signed(self, msg: Message) -> bool:
        if msg.route_param(dialog.ROUTE_PARAM) == dialog.route_token(self.secret, msg.call_id):
            return True
        self.ksr.notice(f"kemi: in-dialog request with a Route we did not sign refused: {msg.describe()}\n")
        if msg.method != "ACK":
            self.reply(sip.FORBIDDEN)
        return False
