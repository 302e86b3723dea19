"""What every settings table is made of: its problems, and TOML values read into its fields.

Each settings table is one module beside the code it configures (kemi/sbc/settings.py is
[sbc]: its dataclass, its checks, the cfg lines it renders); kemi/settings/ puts them together
(the top-level Settings, the loader, the rendering). They all build on this module, a leaf:

    SettingsError     a key, what is wrong, the fix (SettingsProblems: several at once)
    report / require  record a problem; parse_settings() collects every problem of a file,
                      outside it the first one raises
    checked           run a step, report what it raises (its fallback stands in, so the
                      later checks still run)
    build_table       a TOML table into its dataclass (coerce: one value; parse_listen: sockets)
    record            a nested table (a list entry, a named profile) into its dataclass
"""
from __future__ import annotations

import ipaddress
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, fields, is_dataclass

from kemi.names import PIPELIMIT_INTERVAL_S

# Settings fields that are not TOML tables: where the values came from
META_FIELDS = ("source", "environment")
LISTEN_RE = re.compile(r"^(udp|tcp|tls):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class SettingsError(ValueError):
    """A setting is missing, unknown or has a value we cannot run with."""

    def __init__(self, key: str, problem: str, fix: str, source: str = ""):
        where = f" in {source}" if source else ""
        super().__init__(f"setting '{key}'{where}: {problem}; {fix}")
        self.key = key
        self.problems: tuple[SettingsError, ...] = (self,)


class SettingsProblems(SettingsError):
    """Several problems in one settings file, reported together: one line each, in file order.

    `key` is the first problem's key; `problems` holds every one (kemi check prints them all).
    """

    def __init__(self, problems: list[SettingsError]):
        ValueError.__init__(self, "\n".join(str(p) for p in problems))
        self.key = problems[0].key
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Listen:
    """One SIP socket, "proto:address:port" (sip.listen, an SBC side's listen)."""
    proto: str
    address: str
    port: int

    @property
    def socket(self) -> str:
        return f"{self.proto}:{self.address}:{self.port}"

    @property
    def host(self) -> str:
        return self.address.strip("[]")


def bracket(address: str) -> str:
    """An IPv6 address in brackets, as sockets and URIs write it."""
    return f"[{address}]" if ":" in address else address


# the problems parse_settings() has found so far (None outside it: the first one raises)
_found: ContextVar[list | None] = ContextVar("kemi_settings_problems", default=None)


@contextmanager
def collecting():
    """Within: report() appends to the list this yields instead of raising."""
    found: list[SettingsError] = []
    token = _found.set(found)
    try:
        yield found
    finally:
        _found.reset(token)


def report(err: SettingsError) -> None:
    found = _found.get()
    if found is None:
        raise err
    if all(str(err) != str(e) for e in found):
        found.append(err)


def checked(step, *args, fallback=None):
    """step(*args); when it raises a SettingsError that is reported and fallback() returned."""
    try:
        return step(*args)
    except SettingsError as err:
        report(err)
        return fallback() if callable(fallback) else fallback


def reject_unknown(raw: dict, cls, prefix: str, source: str) -> None:
    known = {f.name for f in fields(cls) if f.name not in META_FIELDS}
    for key in raw:
        if key not in known:
            report(SettingsError(prefix + key, "unknown key",
                                 f"accepted keys here: {', '.join(sorted(known))}", source))


def build_table(name: str, raw, factory, source: str):
    """One TOML table (`name` is its dotted key) into the dataclass `factory()` returns."""
    if not isinstance(raw, dict):
        raise SettingsError(name, f"expected a table [{name}], found {raw!r}",
                            f"write it as a [{name}] section", source)
    default = factory()
    cls = type(default)
    reject_unknown(raw, cls, name + ".", source)
    values = {}
    for f in fields(cls):
        key = f"{name}.{f.name}"
        current = getattr(default, f.name)
        if f.name not in raw:
            values[f.name] = current
        elif f.name == "listen" and isinstance(current, tuple):     # SIP sockets (metrics.listen is a str)
            values[f.name] = checked(parse_listen, key, raw[f.name], source, fallback=current)
        elif is_dataclass(current):
            values[f.name] = checked(build_table, key, raw[f.name], lambda current=current: current, source,
                                     fallback=current)
        else:
            values[f.name] = checked(coerce, key, raw[f.name], current, source, fallback=current)
    return cls(**values)


def coerce(key: str, value, default, source: str):
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected true or false, found {value!r}", "write true or false", source)
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected a whole number, found {value!r}", "write a number without quotes", source)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise SettingsError(key, f"expected a string, found {value!r}", "put the value in double quotes", source)
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise SettingsError(key, f"expected a list of strings, found {value!r}", 'write ["a", "b"]', source)
    raise SettingsError(key, "unsupported value", "see settings.toml", source)


def parse_listen(key: str, value, source: str) -> tuple[Listen, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SettingsError(key, f"expected a non-empty list of sockets, found {value!r}",
                            'write e.g. ["udp:127.0.0.1:5060"]', source)
    sockets = []
    for item in value:
        m = LISTEN_RE.match(item) if isinstance(item, str) else None
        if not m:
            raise SettingsError(key, f"{item!r} is not a socket",
                                'write "proto:address:port" with proto udp, tcp or tls, '
                                'e.g. "udp:127.0.0.1:5060" or "udp:[::1]:5060"', source)
        proto, addr, port = m.group(1), m.group(2), int(m.group(3))
        try:
            ipaddress.ip_address(addr.strip("[]"))
        except ValueError:
            raise SettingsError(key, f"{addr!r} in {item!r} is not an IP address",
                                "listen on a literal IPv4 or [IPv6] address", source) from None
        if ":" in addr and not addr.startswith("["):
            raise SettingsError(key, f"IPv6 address in {item!r} needs brackets", 'write "udp:[::1]:5060"', source)
        if not 1 <= port <= 65535:
            raise SettingsError(key, f"port {port} in {item!r} is out of range", "use a port from 1 to 65535", source)
        sockets.append(Listen(proto, addr, port))
    return tuple(sockets)


def require(ok: bool, key: str, problem: str, fix: str, source: str) -> bool:
    """Report the problem unless `ok`; returns `ok` (checks that build on it skip when False)."""
    if not ok:
        report(SettingsError(key, problem, fix, source))
    return ok


def record(key: str, raw, cls, source: str, **given):
    """A frozen dataclass from one TOML table; `given` fields are not read from `raw`."""
    if not isinstance(raw, dict):
        raise SettingsError(key, f"expected a table, found {raw!r}",
                            "write it as a TOML table (see docs/media.md)", source)
    known = {f.name for f in fields(cls)} - set(given)
    for name in raw:
        if name not in known:
            report(SettingsError(f"{key}.{name}", "unknown key",
                                 f"accepted keys here: {', '.join(sorted(known))}", source))
    values = dict(given)
    for f in fields(cls):
        if f.name in given:
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        elif f.name not in raw:
            raise SettingsError(f"{key}.{f.name}", "is missing", f"add {f.name} = ... (see docs/media.md)", source)
        else:
            default = ""              # the required fields are all strings
        values[f.name] = (checked(coerce, f"{key}.{f.name}", raw[f.name], default, source, fallback=default)
                          if f.name in raw else default)
    return cls(**values)


def table_list(key: str, raw, source: str) -> list:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise SettingsError(key, f"expected a list of tables, found {raw!r}",
                            f"write [[{key}]] sections (or a list of {{ ... }} inline tables)", source)
    return raw


def literal_address_port(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """"ADDRESS:PORT" with a literal IP, IPv4 bare and IPv6 in brackets: (address, port), else
    None. The port is only known to be digits: the caller checks its range and says which key."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    opened, closed = host.startswith("["), host.endswith("]")
    if opened != closed or (addr.version == 6) != opened:
        return None
    return addr, int(port)


def checked_address_port(key: str, text: str, example: str, source: str):
    """literal_address_port() of a setting, or None with the problem reported under `key`
    (not ADDRESS:PORT; port out of range)."""
    parsed = literal_address_port(text)
    if parsed is None:
        report(SettingsError(key, f"{text!r} is not ADDRESS:PORT",
                             f'write "ADDRESS:PORT" with a literal IP, e.g. {example}', source))
        return None
    if not require(1 <= parsed[1] <= 65535, key, f"port {parsed[1]} is out of range", "use a port from 1 to 65535",
                   source):
        return None
    return parsed


def require_own_socket(key: str, text: str, addr, port: int, listens, socket_name: str, what: str, fix: str,
                       source: str) -> None:
    """A socket of its own (metrics, health) is no SIP socket's address and port, and no SBC
    side's socket takes its name."""
    for listen, name in listens:
        require(not (listen.host == str(addr) and listen.port == port), key,
                f"{text} is also the SIP socket {listen.socket}", fix, source)
        require(name != socket_name, "sbc", f"a side's socket is named {name!r}",
                f"rename the SBC side: {socket_name!r} names the {what}", source)


def is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text))


def pipelimit_lines() -> list[str]:
    """pipelimit loaded, with its one timer: asked for by each feature that uses it (call rate,
    overload); guarded, so two asking load it once (kamailio-common.cfg, WITH_PIPELIMIT)."""
    return ["#!ifndef WITH_PIPELIMIT", "#!define WITH_PIPELIMIT", f"#!define PL_INTERVAL {PIPELIMIT_INTERVAL_S}",
            "#!endif"]
