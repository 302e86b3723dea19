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


class FakeCallLimits:
    """Stands in for the call_limits table: {(kind, name): max_calls} (None = DB down: no row)."""

    def __init__(self, rows=None):
        self.rows = None if rows is None else dict(rows)
        self.asked: list[tuple[str, str]] = []

    def limit(self, kind: str, name: str):
        self.asked.append((kind, name))
        return None if self.rows is None else self.rows.get((kind, name))


# unit tests sign Record-Routes with this secret, so signed_route() can make a valid Route
TEST_ROUTE_SECRET = "kemi-unit-test-route-secret-0123456789"
DEFAULT_CALL_ID = "call-1@192.0.2.10"     # SipMessage's default Call-ID


def signed_route(call_id: str = DEFAULT_CALL_ID, host: str = "127.0.0.1", extra: str = "") -> str:
    """The Route header value an endpoint echoes for a dialog this proxy record-routed.

    In-dialog requests are only loose-routed when their Route carries the proxy's signature
    (kemi/security/dialog.py); use this for in-dialog messages in unit tests.
    """
    from kemi.security.dialog import rr_param

    return f"<sip:{host};lr{extra}{rr_param(TEST_ROUTE_SECRET, call_id)}>"


def make_router(ksr, settings: Settings | dict | None = None, subscribers=None, router_class=None,
                dids=None, call_limits=None):
    """A Router (or your subclass) wired to `ksr`, default settings, FakeSubscribers/FakeDids
    (and `call_limits`, e.g. a FakeCallLimits, for limits.from_database).

    Unless the settings say otherwise, Record-Routes are signed with TEST_ROUTE_SECRET.
    """
    from kemi.routing import Router

    if not isinstance(settings, Settings):
        raw = {table: dict(values) for table, values in (settings or {}).items()}
        raw.setdefault("security", {}).setdefault("route_secret", TEST_ROUTE_SECRET)
        settings = parse_settings(raw)
    cls = router_class or Router
    return cls(ksr, settings, subscribers if subscribers is not None else FakeSubscribers(),
               dids=dids if dids is not None else FakeDids(), call_limits=call_limits)
