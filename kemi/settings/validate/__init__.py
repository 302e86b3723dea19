"""Loading a settings file: parse the TOML, build the dataclasses, validate every value once.

Every problem is a SettingsError naming the key, what was found and what is accepted.
parse_settings() collects them all (a value that cannot be read counts once, its default
stands in for the rest of the checks) and raises the one problem, or SettingsProblems
listing every one: `kemi check` prints them all, Kamailio's start logs them all.

    problems.py   collecting problems; reading TOML values into dataclass fields
    core.py       [sip] [database] [registrar] [python] [runtime]
    media.py      [media] (its nested tables are parsed there too)
    sbc.py        [sbc]
    security.py   [security] [tls]
    observe.py    [metrics] [logging]
    cluster.py    [cluster]
    websocket.py  [websocket]
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from kemi.settings.environment import apply_overrides, blame_environment, environment_overrides
from kemi.settings.schema import DEFAULT_SETTINGS_FILE, META_FIELDS, SETTINGS_ENV, Settings, SettingsError, SettingsProblems
from kemi.settings.validate.cluster import validate_cluster
from kemi.settings.validate.core import validate_core
from kemi.settings.validate.media import parse_media, validate_media
from kemi.settings.validate.observe import validate_logging, validate_metrics
from kemi.settings.validate.problems import build_table, checked, collecting, reject_unknown
from kemi.settings.validate.sbc import gateway_socket_name, validate_sbc, validate_sbc_media
from kemi.settings.validate.security import validate_security, validate_tls
from kemi.settings.validate.websocket import parse_websocket, validate_websocket

__all__ = ["gateway_socket_name", "load_settings", "parse_settings", "settings_path"]

# tables read by a parser of their own (nested tables); the others by problems.build_table
TABLE_PARSERS = {"media": parse_media, "websocket": parse_websocket}
# each table's checks, in file order; each gets the whole Settings (checks may span tables)
TABLE_CHECKS = (validate_core, validate_media, validate_sbc, validate_sbc_media, validate_security,
                validate_tls, validate_metrics, validate_websocket, validate_logging, validate_cluster)


def settings_path(path: str | os.PathLike | None = None) -> Path:
    """The settings file: explicit argument, else $KEMI_SETTINGS, else ./settings.toml."""
    if path:
        return Path(path).resolve()
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV]).resolve()
    return DEFAULT_SETTINGS_FILE


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    file = settings_path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError("(file)", f"{file} does not exist",
                            f"create it or point ${SETTINGS_ENV} at your settings file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("(file)", f"{file} is not valid TOML ({exc})",
                            "fix the syntax (see settings.toml in the project)") from None
    # KEMI__SECTION__KEY variables win over the file (docker); errors name the variable
    overrides = environment_overrides()
    try:
        settings = parse_settings(apply_overrides(raw, overrides, str(file)), source=str(file))
    except SettingsError as exc:
        raise blame_environment(exc, overrides) from None
    return replace(settings, environment=tuple((ov.variable, ov.text) for ov in overrides))


def parse_settings(raw: dict, source: str = "") -> Settings:
    """Build and validate Settings from a parsed TOML document; raise every problem found."""
    with collecting() as found:
        reject_unknown(raw, Settings, "", source)
        tables = {}
        for f in fields(Settings):
            if f.name in META_FIELDS:
                continue
            build = TABLE_PARSERS.get(f.name, build_table)
            tables[f.name] = checked(build, f.name, raw.get(f.name, {}), f.default_factory, source,
                                     fallback=f.default_factory)
        settings = Settings(**tables, source=source)
        unreadable = {e.key for e in found}
        parsed = len(found)
        for check in TABLE_CHECKS:
            checked(check, settings, source)
    # a key that could not be read was checked with its default: what the checks then say
    # about it (or inside it) is not the site's problem
    found[parsed:] = [e for e in found[parsed:]
                      if not any(e.key == k or e.key.startswith(k + ".") for k in unreadable)]
    if found:
        raise found[0] if len(found) == 1 else SettingsProblems(found)
    return settings
