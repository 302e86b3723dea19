"""The routing Kamailio runs: the request path and what every route shares (docs/routing.md).

router.py     the Router: one method per cfg route, top to bottom, the tm callbacks, the override
              points; it builds each feature's part once from the settings and calls it
guard.py      every callback guarded: one log line and an answer, never a traceback
registrar.py  digest auth, save, lookup (404 / 480)
sides.py      the registrar's one network (OneSide); the SBC's two NICs are kemi/sbc/

Each feature is a folder of kemi/ beside this one: its plain decisions, its KSR part
(part.py) and its settings table (settings.py): kemi/sbc, kemi/media, kemi/security,
kemi/nat, kemi/observe, kemi/cluster, kemi/websocket. The message every part reads is
kemi/message.py.
"""
from kemi.names import DONE, NEXT
from kemi.routing.router import Router

__all__ = ["DONE", "NEXT", "Router"]
