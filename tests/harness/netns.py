"""Network namespaces as test hosts (kemi_tools/stack/netns.py), named per test run:
`kemi<slot>-<pid>-<role>`, so parallel runs (KEMI_TEST_SLOT) never share a namespace.
Everything of kemi_tools.stack.netns is here too (tests used to import it from this module)."""
from __future__ import annotations

import os

from kemi_tools.stack.netns import *  # noqa: F401,F403
from kemi_tools.stack.netns import _ip  # noqa: F401
from kemi_tools.stack.netns import Topology as _Topology

SLOT = int(os.environ.get("KEMI_TEST_SLOT", "0"))


class Topology(_Topology):
    def __init__(self, prefix: str | None = None):
        super().__init__(prefix or f"kemi{SLOT}-{os.getpid()}")
