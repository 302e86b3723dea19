"""The routing Kamailio runs: router.py is the request path, top to bottom; the files below
are the parts it calls, in the order a request meets them (docs/routing.md).

router.py     the Router: one method per cfg route, the tm callbacks, the override points
message.py    one message: each PV read once, the state the steps share
guard.py      every callback guarded: one log line and an answer, never a traceback
observe.py    metrics, the decision log, /metrics
sides.py      the registrar's single side (OneSide)
sbc.py        the SBC's two sides: ingress, gateway sets, failover, direction= (SbcSides)
screen.py     bans, floods, scanners, URI checks, failed-auth bans, stray replies
nat.py        NAT detection and keepalive flags
dialogs.py    the signed Record-Route
registrar.py  digest auth, save, lookup (404 / 480)
media.py      rtpengine offer / answer / delete
"""
from kemi.names import DONE, NEXT
from kemi.routing.router import Router

__all__ = ["DONE", "NEXT", "Router"]
