"""Build a Router around a FakeKSR in one line."""
from __future__ import annotations

from kemi.settings import Settings, parse_settings


class FakeSubscribers:
    """Stands in for the MySQL subscriber directory: a set of usernames (None = DB down)."""

    def __init__(self, usernames=("2001", "2002")):
        self.usernames = None if usernames is None else set(usernames)
        self.asked: list[str] = []

    def exists(self, username: str):
        self.asked.append(username)
        return None if self.usernames is None else username in self.usernames


class FakeDids:
    """Stands in for the MySQL DID map: a dict DID -> extension."""

    def __init__(self, mapping=None):
        self.mapping = dict(mapping or {})
        self.asked: list[str] = []

    def extension(self, did: str):
        self.asked.append(did)
        return self.mapping.get(did)


def make_router(ksr, settings: Settings | dict | None = None, subscribers=None, router_class=None,
                dids=None):
    """A Router (or your subclass) wired to `ksr`, default settings, FakeSubscribers/FakeDids."""
    from kemi.routing import Router

    if not isinstance(settings, Settings):
        settings = parse_settings(settings or {})
    cls = router_class or Router
    return cls(ksr, settings, subscribers if subscribers is not None else FakeSubscribers(),
               dids=dids if dids is not None else FakeDids())
