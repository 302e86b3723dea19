"""Loading a settings file: parse the TOML, build each table's dataclass, validate every value once.

Every problem is a SettingsError naming the key, what was found and what is accepted.
parse_settings() collects them all (a value that cannot be read counts once, its default
stands in for the rest of the checks) and raises the one problem, or SettingsProblems
listing every one: `kemi check` prints them all, Kamailio's start logs them all.

Each table's module reads and checks it (TABLE_PARSERS, TABLE_CHECKS below list them);
reading a value into a field, and collecting problems, is kemi/schema.py.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import fields, replace
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
from kemi.nat import settings as nat
from kemi.observe import settings as observe
from kemi.overload import settings as overload
from kemi.records import settings as records
from kemi.sbc import settings as sbc
from kemi.schema import META_FIELDS, SettingsError, SettingsProblems, build_table, checked, collecting, reject_unknown
from kemi.security import settings as security
from kemi.settings.environment import apply_overrides, blame_environment, environment_overrides
from kemi.settings.model import Settings
from kemi.topology import settings as topology
from kemi.websocket import settings as websocket

__all__ = ["DEFAULT_SETTINGS_FILE", "PROJECT_ROOT", "SETTINGS_ENV", "load_settings", "parse_settings",
           "settings_path"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "settings.toml"
SETTINGS_ENV = "KEMI_SETTINGS"

# tables read by a parser of their own (nested tables); the others by schema.build_table
TABLE_PARSERS = {"media": media.parse, "websocket": websocket.parse}
# each table's checks, in this order (the order problems are listed in); each gets the whole
# Settings (checks may span tables)
TABLE_CHECKS = (sip.validate, database.validate, registrar.validate, nat.validate, python.validate, runtime.validate,
                database.validate_quoting, sip.validate_quoting, media.validate, sbc.validate, sbc.validate_media,
                security.validate, tls.validate, observe.validate_metrics, websocket.validate,
                observe.validate_logging, cluster.validate, records.validate_records, records.validate_capture,
                topology.validate, limits.validate, overload.validate)


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
