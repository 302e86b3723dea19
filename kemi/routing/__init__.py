"""The routing Kamailio runs: `Router` (router.py) composes the routes in call-flow order.

request.py      request_route: initial checks, in-dialog, relay
registrar.py    auth, registrar (REGISTER), location (EXTEN to contacts)
transaction.py  branch / onreply / failure routes armed by relay
media.py        rtpengine offer / answer / delete (media anchoring)
sbc.py          dual-NIC SBC: direction, gateway sets, failover (off unless sbc.enabled)
sbc_media.py    the SBC's media: direction= per side, per-side profile, gateways without NAT
message.py      per-message PV reads, once each
"""
from kemi.routing.request import DONE, NEXT
from kemi.routing.router import Router

__all__ = ["DONE", "NEXT", "Router"]
