"""Settings from environment variables, applied on top of the settings file before validation.

    KEMI__SECTION__KEY=value            e.g. KEMI__SIP__DOMAIN=pbx.example.com
    KEMI__MEDIA__RTPENGINE__LISTEN_NG=127.0.0.1:2223   (nesting: one more __NAME per level)

Names are case-insensitive (the schema's keys are lower case). A value is read as a TOML value
when it is one (`true`, `5`, `["udp:0.0.0.0:5060"]`, `[{ name = "x", address = "192.0.2.1" }]`),
else taken as a plain string, so `pbx.example.com` needs no quotes. A variable naming a key the
schema does not have is an error naming the variable and the keys that exist there. Variables
not starting with KEMI__ are ignored (KEMI_SETTINGS and KEMI_TEST_SLOT are something else).

Docker and compose files configure the containers this way (docs/settings.md).
"""
from __future__ import annotations

import copy
import hashlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import cast

from kemi.media.settings import MediaProfile
from kemi.schema import META_FIELDS, SettingsError
from kemi.settings.model import Settings

__all__ = ["ENV_PREFIX", "EnvOverride", "EnvSettingsError", "apply_overrides", "blame_environment",
           "environment_digest", "environment_overrides", "parse_env_value"]

ENV_PREFIX = "KEMI__"
ENV_SEPARATOR = "__"
# TOML tables whose sub-tables have free names (the TOML form is [media.profiles.NAME]):
# path of the table -> the dataclass each named entry becomes
NAMED_TABLES = {("media", "profiles"): MediaProfile}
# fields a named entry takes from its name, not from a key
NAME_FIELDS = ("name",)


@dataclass(frozen=True)
class EnvOverride:
    """One KEMI__ variable: the settings key it sets and its parsed value."""
    variable: str
    path: tuple[str, ...]
    value: object
    text: str          # the value as written in the environment

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_env_value(text: str):
    """`text` as a TOML value when it is exactly one (5, true, ["a"]), else the string itself."""
    try:
        doc = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    # "5\nother = 1" parses too, but is not one value: keep such text as it is
    return doc["value"] if list(doc) == ["value"] else text


def environment_overrides(environ: Mapping[str, str] | None = None) -> list[EnvOverride]:
    """Every KEMI__ variable of `environ` (default os.environ), checked against the schema.

    Sorted by variable name, so the result does not depend on the environment's order.
    """
    environ = os.environ if environ is None else environ
    out: list[EnvOverride] = []
    seen: dict[tuple[str, ...], str] = {}
    for variable in sorted(v for v in environ if v.upper().startswith(ENV_PREFIX)):
        path = tuple(part.lower() for part in variable[len(ENV_PREFIX):].split(ENV_SEPARATOR))
        _check_path(variable, path)
        if path in seen:         # names are case-insensitive: which one would win is a guess
            _fail(variable, path, f"is also set by ${seen[path]}", "set each key once")
        seen[path] = variable
        out.append(EnvOverride(variable, path, parse_env_value(environ[variable]), environ[variable]))
    return out


def apply_overrides(raw: dict, overrides: list[EnvOverride], source: str = "") -> dict:
    """A copy of the parsed settings file `raw` with each override's value set at its key."""
    merged = copy.deepcopy(raw)
    for ov in overrides:
        table = merged
        for depth, part in enumerate(ov.path[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                key = ".".join(ov.path[:depth + 1])
                raise SettingsError(key, f"is a value in {source or 'the settings file'}, "
                                    f"but ${ov.variable} sets a key inside it",
                                    f"make {key} a table there, or unset ${ov.variable}", source)
        table[ov.path[-1]] = ov.value
    return merged


def environment_digest(environment: tuple[tuple[str, str], ...]) -> str:
    """A short fingerprint of the applied variables and values: the rendered cfg records it, the
    Python side compares (kamailio.cfg and the routing must not see different settings)."""
    text = "\n".join(f"{variable}={value}" for variable, value in environment)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def blame_environment(exc: SettingsError, overrides: list[EnvOverride]) -> SettingsError:
    """`exc` saying which KEMI__ variables set the key it is about (unchanged when none did).

    An error listing several problems (`problems`, one SettingsError each) is rebuilt with each
    problem blamed on its own variables.
    """
    if len(exc.problems) > 1:
        # the error's own class (SettingsProblems, or a subclass), which takes the list
        several = cast(Callable[[list[SettingsError]], SettingsError], type(exc))
        return several([blame_environment(p, overrides) for p in exc.problems])
    culprits = [ov.variable for ov in overrides if _related(exc.key, ov.key)]
    if not culprits:
        return exc
    return EnvSettingsError(exc, culprits)


class EnvSettingsError(SettingsError):
    """A SettingsError about a key an environment variable set: the message names the variable."""

    def __init__(self, exc: SettingsError, variables: list[str]):
        named = f"setting '{exc.key}'"
        text = str(exc).replace(named, f"{named} (from ${', $'.join(variables)})", 1)
        ValueError.__init__(self, text)
        self.key = exc.key
        self.variables = variables
        self.problems = (self,)


def _related(error_key: str, override_key: str) -> bool:
    """Whether an error about `error_key` can be caused by a value set at `override_key`."""
    return any(a == b or a.startswith(b + ".") or a.startswith(b + "[")
               for a, b in ((error_key, override_key), (override_key, error_key)))


def _check_path(variable: str, path: tuple[str, ...]) -> None:
    """Raise a SettingsError naming `variable` unless `path` is a key of the schema."""
    # node: a table's dataclass, _Named, or None (a value)
    node: type | _Named | None = Settings
    where: tuple[str, ...] = ()
    for part in path:
        if node is None:
            _fail(variable, path, f"{'.'.join(where)} is a value, not a table",
                  f"set it as a whole: {_variable(where)}=VALUE")
        if isinstance(node, _Named):          # a free name: [media.profiles.NAME]
            node, where = node.entry, where + (part,)
            continue
        known = _keys(node)
        if part not in known:
            _fail(variable, path, f"'{part}' is not a key of {'.'.join(where) or 'the settings'}",
                  f"valid keys there: {', '.join(sorted(known))} (as {_variable(where + ('KEY',))})")
        where = where + (part,)
        node = _Named(NAMED_TABLES[where]) if where in NAMED_TABLES else known[part]
    if isinstance(node, _Named):
        _fail(variable, path, f"{'.'.join(where)} is a set of named tables",
              f"set a key of one: {_variable(where + ('NAME', next(iter(_keys(node.entry)))))}=VALUE")
    if node is not None:
        _fail(variable, path, f"{'.'.join(where)} is a table",
              f"set its keys one by one, e.g. {_variable(where + (next(iter(_keys(node))),))}=VALUE")


@dataclass(frozen=True)
class _Named:
    entry: type


def _keys(cls) -> dict:
    """A table's keys -> the dataclass of each sub-table (None for a value or a list)."""
    out = {}
    for f in fields(cls):
        if f.name in META_FIELDS or (cls in NAMED_TABLES.values() and f.name in NAME_FIELDS):
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        out[f.name] = type(default) if is_dataclass(default) else None
    return out


def _variable(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_SEPARATOR.join(p.upper() for p in path)


def _fail(variable: str, path: tuple[str, ...], problem: str, fix: str) -> None:
    raise SettingsError(".".join(path), problem, fix, f"environment variable ${variable}")
