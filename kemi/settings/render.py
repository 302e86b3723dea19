"""kamailio-settings.cfg from the settings: each table renders its own lines (its module's
*_lines functions); this file puts them in the order kamailio.cfg reads them. And, for the
SBC, the dispatcher list beside it; `check`'s description; a TOML writer for tests.
"""
from __future__ import annotations

import os
from dataclasses import fields, is_dataclass
from pathlib import Path

import kemi.settings.database as database
import kemi.settings.python as python
import kemi.settings.registrar as registrar
import kemi.settings.runtime as runtime
import kemi.settings.sip as sip
import kemi.settings.tls as tls
from kemi.cluster import settings as cluster
from kemi.limits import settings as limits
from kemi.media import settings as media
from kemi.names import FLAGS, ON_SL_REPLY_CALLBACK, RELOAD_GENERATION_GROUP, RELOAD_GENERATION_VAR, XHTTP_CALLBACK
from kemi.nat import settings as nat
from kemi.observe import settings as observe
from kemi.overload import settings as overload
from kemi.records import settings as records
from kemi.sbc import settings as sbc
from kemi.sbc.settings import render_dispatcher_list
from kemi.schema import META_FIELDS, Listen
from kemi.security import settings as security
from kemi.settings.environment import environment_digest
from kemi.settings.load import PROJECT_ROOT
from kemi.settings.model import Settings
from kemi.topology import settings as topology
from kemi.websocket import settings as websocket

__all__ = ["RENDERED_CFG_NAME", "describe", "dispatcher_list_path", "render_dispatcher_list",
           "render_kamailio_defines", "toml_dump", "write_kamailio_defines"]

RENDERED_CFG_NAME = "kamailio-settings.cfg"


def render_kamailio_defines(s: Settings, outdir: str | os.PathLike | None = None,
                            kemi_root: Path = PROJECT_ROOT) -> str:
    """The cfg fragment kamailio.cfg includes: every site value it needs, from `s`.

    `outdir` is where write_kamailio_defines() puts it (and the rendered dispatcher list);
    `kemi_root` the folder holding the kemi package Kamailio loads (tests run a copy).
    """
    lines = [
        *header_lines(s, kemi_root),
        *python.engine_lines(s),
        *database.url_lines(s),
        *sip.domain_lines(s),
        *database.usrloc_lines(s),
        *registrar.cfg_lines(s),
        *nat.cfg_lines(s),
        *sip.children_lines(s),
        *database.cache_lines(s),
        *runtime.process_lines(s),
        *sbc.timer_lines(s),
        *shared_name_lines(),
        *sbc.cfg_lines(s, outdir, PROJECT_ROOT),
        *topology.cfg_lines(s),
        *sip.tcp_lines(s),
        *database.failover_lines(s),
        *runtime.memory_lines(s),
        *xhttp_lines(s),
        *websocket.cfg_lines(s),
        *media.cfg_lines(s),
        *security.cfg_lines(s),
        *tls.cfg_lines(s),
        *cluster.cfg_lines(s),
        *limits.cfg_lines(s),          # kemi/limits/: dialog profiles, pipelimit
        *records.cfg_lines(s),
        *overload.cfg_lines(s),
        *reload_lines(),
        *observe.cfg_lines(s),
        # the sockets last: Kamailio reads a line after a listen= as one more address
        *sip.listen_lines(s),
        *observe.listen_lines(s),
        *overload.listen_lines(s),     # the health socket, its own worker
        *sip.alias_lines(s),
    ]
    return "\n".join(lines) + "\n"


def header_lines(s: Settings, kemi_root: Path) -> list[str]:
    entry = Path(kemi_root) / "kemi" / "kamailio_entry.py"
    return [
        f"# Generated from {s.source or 'defaults'} by `python3 -m kemi.settings render`.",
        "# Do not edit: change the settings file and render again (make run does).",
        f"# Environment overrides: {', '.join(v for v, _ in s.environment) or 'none'}",
        f'#!define KEMI_SETTINGS "{s.source}"',
        # the Python side refuses to start when its KEMI__ variables differ from these
        f'#!define KEMI_ENVIRONMENT "{environment_digest(s.environment)}"',
        f'#!define KEMI_ROOT "{kemi_root}"',
        f'#!define KEMI_ENTRY "{entry}"',
    ]


def shared_name_lines() -> list[str]:
    """The names kamailio.cfg and the routing share (kemi/names.py): flags, Router callbacks."""
    return [
        *(f"#!define {name} {value}" for name, value in FLAGS.items()),
        # the Router methods kamailio.cfg names in module parameters (kemi/names.py)
        f'#!define KEMI_ON_SL_REPLY "{ON_SL_REPLY_CALLBACK}"',
        f'#!define KEMI_XHTTP_EVENT "{XHTTP_CALLBACK}"',
    ]


def xhttp_lines(s: Settings) -> list[str]:
    # xhttp serves two features: /metrics and the WebSocket handshake
    return ["#!define WITH_XHTTP"] if s.metrics.enabled or s.websocket.enabled else []


def reload_lines() -> list[str]:
    # make reload bumps it: each worker loads the edited code before its next message
    # (kemi/kamailio_entry.py, docs/reload.md)
    return [f"{RELOAD_GENERATION_GROUP}.{RELOAD_GENERATION_VAR} = 0 "
            f'desc "kemi live reload: make reload increments it"']


def dispatcher_list_path(s: Settings, outdir: str | os.PathLike | None = None) -> Path:
    """The dispatcher list Kamailio reads: the site's own file, or the one rendered beside the cfg."""
    return sbc.dispatcher_list_path(s, outdir, PROJECT_ROOT)


def write_kamailio_defines(s: Settings, outdir: str | os.PathLike, kemi_root: Path = PROJECT_ROOT) -> Path:
    out = Path(outdir) / RENDERED_CFG_NAME
    out.write_text(render_kamailio_defines(s, outdir, kemi_root), encoding="utf-8")
    if s.sbc.enabled and s.sbc.gateways_from == "settings":
        # written next to it, then replaced atomically: a dispatcher.reload never reads half
        target = dispatcher_list_path(s, outdir)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(render_dispatcher_list(s), encoding="utf-8")
        tmp.replace(target)
    return out


def describe(obj, prefix: str = "") -> list[str]:
    """Flat 'key = value' lines of the effective settings (for `check`)."""
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in META_FIELDS:
            continue
        if is_dataclass(value) and not isinstance(value, Listen):
            out += describe(value, f"{prefix}{f.name}.")
        elif f.name == "listen" and isinstance(value, tuple) and all(isinstance(x, Listen) for x in value):
            out.append(f"{prefix}{f.name} = {[x.socket for x in value]}")
        elif "secret" in f.name and value:
            out.append(f"{prefix}{f.name} = '(set, not shown)'")
        else:
            out.append(f"{prefix}{f.name} = {value!r}")
    return out


def toml_dump(tables: dict) -> str:
    """A settings file's text from {table: {key: value}} (tests and make bench write them)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):                  # an inline table (nested settings, e.g. [media])
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for table, items in tables.items():
        out.append(f"[{table}]")
        out += [f"{k} = {value(v)}" for k, v in items.items()]
        out.append("")
    return "\n".join(out)
