"""Build the router Kamailio runs from the settings file (called by kamailio_entry.mod_init)."""
from __future__ import annotations

import importlib
import sys

from kemi.settings import RENDERED_CFG_NAME, Settings, SettingsError, environment_digest, load_settings
from kemi.store.dids import DidMap
from kemi.store.limits import CallLimitTable
from kemi.store.mysql import Database
from kemi.store.subscribers import SubscriberDirectory


def load_router_class(spec: str):
    from kemi.routing import Router

    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SettingsError("python.router", f"cannot load {spec!r} ({exc})",
                            "name an importable 'module:Class' (see python.path)") from None
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise SettingsError("python.router", f"{spec!r} is not a subclass of kemi.routing.Router",
                            "derive your class from kemi.routing.Router")
    return cls


# Core callbacks kamailio.cfg turns off (kemi.*_route_callback="none"): never called.
# (stray replies are dropped by tm's on_sl_reply -> Router.ksr_on_sl_reply instead)
DISABLED_CALLBACKS = ("ksr_onsend_route", "ksr_reply_route")


def create_router(ksr, settings: Settings):
    for extra in settings.python.path:
        if extra not in sys.path:
            sys.path.insert(0, extra)
    cls = load_router_class(settings.python.router)
    warn_disabled_callbacks(ksr, cls)
    db = Database(settings.database.all_connect_args(), log=ksr.err)
    subscribers = SubscriberDirectory(db, settings.database.cache_ttl, settings.database.cache_size)
    sbc = settings.sbc
    dids = DidMap(db, sbc.did_cache_ttl, sbc.did_cache_size) if sbc.enabled else None
    lim = settings.limits
    call_limits = CallLimitTable(db, lim.cache_ttl, lim.cache_size) if lim.calls_on and lim.from_database else None
    return cls(ksr, settings, subscribers, dids=dids, call_limits=call_limits)


def warn_disabled_callbacks(ksr, cls) -> list[str]:
    """A routing subclass overriding a core callback kamailio.cfg turns off gets told so."""
    from kemi.routing import Router

    overridden = [name for name in DISABLED_CALLBACKS if getattr(cls, name) is not getattr(Router, name)]
    for name in overridden:
        ksr.warn(f"kemi: {cls.__name__}.{name} is never called: kamailio.cfg sets "
                 f"kemi.{name[4:]}_callback=\"none\"; set it to \"{name}\" to use it\n")
    return overridden


def create_router_from_file(ksr, settings_file: str):
    settings = load_settings(settings_file)
    check_rendered_environment(settings, ksr.kx.get_def("KEMI_ENVIRONMENT"))
    return create_router(ksr, settings)


def check_rendered_environment(settings: Settings, rendered: str | None) -> None:
    """kamailio-settings.cfg was rendered with the KEMI__ variables this process sees, or we stop:
    otherwise kamailio.cfg and the Python routing would run with different settings."""
    if rendered is None:          # a cfg rendered before the define existed
        return
    here = environment_digest(settings.environment)
    if rendered.strip('"') != here:
        names = ", ".join(v for v, _ in settings.environment) or "none"
        raise SettingsError("(environment)", f"Kamailio's KEMI__ variables ({names}) are not those "
                            f"{RENDERED_CFG_NAME} was rendered with",
                            "render it again in the environment Kamailio runs in (make run does both)")
