"""A fake KSR object for unit-testing routing code without Kamailio.

It exposes exactly the KEMI functions the targeted Kamailio version exports for the modules
kamailio.cfg loads (snapshots ksr_api_5_6.json, ksr_api_5_8.json, ksr_api_6_0.json;
scripts/ksr-api/snapshot.sh makes them), checks argument count and types like the real one
(5.6 raises SystemError on a wrong type; 5.7+ returns False silently, the fake raises on every
version so the bug shows),
records every call, and answers from a model of one SIP message. Any answer can be overridden
per test:

    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1",
                             headers={"Proxy-Authorization": "Digest ..."}))
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]     # what registrar.lookup finds
    ksr.results["auth_db.auth_check"] = -2                  # or a callable(ksr, *args)
    router.ksr_request_route(None)
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert ksr.called("tm.t_relay")

The version targeted is FakeKSR(kamailio="6.0"), else $KEMI_KAMAILIO_VERSION, else the
installed Kamailio's (`kamailio -v`), else the oldest supported (5.6). Its API is the newest
snapshot not above it (5.6, 5.8 or 6.0: a 5.9 is checked against 5.8's API, a 6.1 against
6.0's, which they only extend), so a function that version lacks is refused: AttributeError,
as `hasattr(KSR.tm, ...)` is False on the real one.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

API_DIR = Path(__file__).parent
_API_FILE_RE = re.compile(r"^ksr_api_(\d+)_(\d+)\.json$")
_VERSION_RE = re.compile(r"(\d+)\.(\d+)")
VERSION_VARIABLE = "KEMI_KAMAILIO_VERSION"


def api_versions() -> list[tuple[int, int]]:
    """The Kamailio versions with an API snapshot here, oldest first."""
    return sorted((int(m.group(1)), int(m.group(2))) for p in API_DIR.iterdir() if (m := _API_FILE_RE.match(p.name)))


@functools.cache
def load_api(version: tuple[int, int]) -> dict:
    return json.loads((API_DIR / f"ksr_api_{version[0]}_{version[1]}.json").read_text())


def _integer(value: object) -> int:
    """An htable value as a number, as sht_inc reads it (a missing key: 0)."""
    return int(value) if isinstance(value, (int, str)) and str(value).lstrip("-").isdigit() else 0


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of "6.0", "5.8.4" or `kamailio -v`'s "version: kamailio 5.6.3 (...)"."""
    m = re.search(r"kamailio (\d+)\.(\d+)", text) or _VERSION_RE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.cache
def installed_kamailio() -> tuple[int, int] | None:
    """The installed Kamailio's version, or None when there is none."""
    binary = shutil.which("kamailio") or next((p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio")
                                               if os.access(p, os.X_OK)), None)
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_version(out.stdout + out.stderr)


def target_version(explicit: str | tuple[int, int] | None = None) -> tuple[int, int]:
    """The Kamailio version the user targets (see the module docstring)."""
    chosen = explicit if explicit is not None else os.environ.get(VERSION_VARIABLE) or None
    if isinstance(chosen, str):
        parsed = parse_version(chosen)
        if parsed is None:
            raise ValueError(f"not a Kamailio version: {chosen!r} (write it like 6.0)")
        return parsed
    if chosen is not None:
        return (chosen[0], chosen[1])
    return installed_kamailio() or api_versions()[0]


def snapshot_for(version: tuple[int, int]) -> tuple[int, int]:
    """The newest API snapshot not above `version`."""
    known = [v for v in api_versions() if v <= version]
    if not known:
        oldest = api_versions()[0]
        raise ValueError(f"Kamailio {version[0]}.{version[1]} is older than the oldest supported, "
                         f"{oldest[0]}.{oldest[1]}")
    return known[-1]


# kept for code that read the 5.6 snapshot directly
API_FILE = API_DIR / "ksr_api_5_6.json"

_METHOD_LETTERS = {"I": "INVITE", "A": "ACK", "B": "BYE", "C": "CANCEL", "R": "REGISTER",
                   "P": "PUBLISH", "S": "SUBSCRIBE", "N": "NOTIFY", "O": "OPTIONS", "E": "PRACK",
                   "U": "UPDATE", "K": "KDMQ", "M": "MESSAGE", "G": "GET", "F": "INFO"}
_URI_RE = re.compile(r"^(?:sips?|tel):(?:(?P<user>[^@;>]*)@)?(?P<host>\[[^\]]+\]|[^:;>]+)(?::(?P<port>\d+))?")
_HDR_PV = re.compile(r"^\$hdr\((?P<name>[^)]+)\)$")
# a header's first name-addr URI's parameters: $(hdr(Route){nameaddr.uri}{uri.params})
_HDR_URI_PARAMS_PV = re.compile(r"^\$\(hdr\((?P<name>[^)]+)\)\{nameaddr\.uri\}\{uri\.params\}\)$")
_SHT_PV = re.compile(r"^\$sht\((?P<table>\w+)=>(?P<key>.*)\)$")
_CFG_PV = re.compile(r"^\$sel\(cfg_get\.(?P<var>\w+\.\w+)\)$")


def parse_uri(uri: str) -> tuple[str, str, str]:
    """(user, host, port) of a SIP URI ("" where absent)."""
    m = _URI_RE.match(uri.strip("<>"))
    if not m:
        return "", "", ""
    return m.group("user") or "", m.group("host"), m.group("port") or ""


def uri_params(name_addrs: str | None) -> str | None:
    """The parameters of the first URI in a header value ("<sip:h;lr;kd=x>, <sip:...>" ->
    "lr;kd=x"), as {nameaddr.uri}{uri.params} give them; None without one."""
    if not name_addrs:
        return None
    first = name_addrs.split(",", 1)[0].strip()
    uri = first[first.find("<") + 1:first.find(">")] if "<" in first else first.split(";", 1)[0]
    uri = uri.split("?", 1)[0]
    return uri.split(";", 1)[1] if ";" in uri else None


@dataclass
class SipMessage:
    """The parts of a SIP message the routes look at."""
    method: str = "INVITE"
    ruri: str = "sip:2001@127.0.0.1"
    from_uri: str = "sip:2002@127.0.0.1"
    from_tag: str = "from-tag-1"
    to_uri: str = ""                 # defaults to the R-URI
    to_tag: str = ""                 # set it for an in-dialog request
    call_id: str = "call-1@192.0.2.10"
    cseq: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    source: tuple[str, int] = ("192.0.2.10", 5060)
    proto: str = "udp"
    received_on: str = "udp:127.0.0.1:5060"     # the local socket it arrived on
    socket_name: str = ""                       # the listen socket's name= (if any)
    status: int = 0                             # > 0: this is a reply with that code
    reason: str = ""
    http_url: str = ""                          # an HTTP request (xhttp): its URL ($hu)

    def __post_init__(self):
        self.headers = dict(self.headers)   # routes edit headers: never the caller's dict
        if not self.to_uri:
            self.to_uri = self.ruri

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str | None) -> None:
        for key in [k for k in self.headers if k.lower() == name.lower()]:
            del self.headers[key]
        if value is not None:
            self.headers[name] = value


class KSRTypeError(SystemError):
    """What Kamailio 5.6 raises when a KEMI function gets a wrong argument type."""


class _Module:
    def __init__(self, ksr: FakeKSR, name: str):
        self._ksr, self._name = ksr, name

    def __getattr__(self, func: str):
        if func.startswith("__"):
            raise AttributeError(func)
        spec = self._ksr._api[self._name].get(func)
        if spec is None:
            raise AttributeError(f"KSR.{self._name} has no function {func!r} in Kamailio {self._ksr.api_label}")
        return lambda *args: self._ksr._call(self._name, func, spec, args)

    def __dir__(self):
        return list(self._ksr._api[self._name])


class _HtableStore(dict):
    """The fake's htable contents, which is also the `KSR.htable` module (a dict subclass, so
    tests compare it with a plain dict and the module functions model it)."""

    def __init__(self, ksr: FakeKSR):
        super().__init__()
        self._module = _Module(ksr, "htable")

    def __getattr__(self, func: str):
        if func.startswith("_"):
            raise AttributeError(func)
        return getattr(self._module, func)


class FakeKSR:
    def __init__(self, message: SipMessage | None = None, local_addresses=("127.0.0.1",),
                 local_domains=("127.0.0.1",), kamailio: str | tuple[int, int] | None = None):
        """`kamailio`: the version whose KEMI API this fake has ("5.6", "6.0"; see the module doc)."""
        self.kamailio_version = target_version(kamailio)
        self.api_version = snapshot_for(self.kamailio_version)
        self._api = load_api(self.api_version)
        api = ".".join(map(str, self.api_version))
        self.api_label = api if self.api_version == self.kamailio_version else \
            f"{api} (the API snapshot for {'.'.join(map(str, self.kamailio_version))})"
        self.message = message or SipMessage()
        self.local_addresses = set(local_addresses)
        self.local_domains = set(local_domains) | self.local_addresses
        self.results: dict = {}          # "module.func" -> value or callable(ksr, *args)
        self.calls: list[tuple[str, tuple]] = []
        self.replies: list[tuple[int, str]] = []
        self.logs: list[tuple[str, str]] = []
        self.relayed: list[dict] = []
        self.locations: dict[str, list[str]] = {}   # AOR user -> contacts for registrar.lookup
        self.flags: set[int] = set()
        self.bflags: set[int] = set()
        self.pvs: dict[str, object] = {}            # values set with pv.sets/seti
        # (table, key) -> value; also answers as KSR.htable (sht_get, sht_inc, ...)
        self.htable: dict[tuple[str, str], object] = _HtableStore(self)
        self.tm_routes: dict[str, str] = {}         # "failure_route" -> callback name
        self.dropped = False
        self.branches: list[str] = []
        self.canceled = False                       # tm.t_is_canceled()
        # rtpengine: reachable or not, refusing SDP or not; sessions by Call-ID
        self.rtpengine_up = True
        self.rtpengine_refuses = False
        self.rtpengine_instance = "udp:127.0.0.1:2223"
        self.rtpengine_sessions: set[str] = set()
        # dispatcher model: set id -> destination URIs (in list order), each URI's sockname=
        self.gateways: dict[int, list[str]] = {}
        self.gateway_sockets: dict[str, str] = {}
        self.inactive_gateways: set[str] = set()
        self.ds_marks: list[tuple[str, str]] = []     # (gateway, state) from ds_mark_dst_state
        self._ds_next: dict[int, int] = {}            # round-robin position per set
        self._ds_current: str | None = None
        self._ds_rest: list[str] = []
        self.send_socket = ""                         # forced send socket's name ("" = none)
        self.t_reply_code = 0                         # $T_reply_code in a failure route
        # cfg-group variables ($sel(cfg_get.GROUP.VAR); kamcmd cfg.seti in real life)
        self.cfg_vars: dict[str, int] = {"kemi_log.decisions": 0, "kemi_reload.generation": 0}
        # #!define NAME VALUE of the cfg (KSR.kx.get_def), e.g. KEMI_ROOT, KEMI_SETTINGS
        self.defines: dict[str, str] = {}
        # xhttp_prom: (counter name, label values) -> value; xhttp replies sent
        self.metrics: dict[tuple[str, tuple[str, ...]], int] = {}
        self.gauges: dict[tuple[str, tuple[str, ...]], str] = {}
        # dialog: (profile, value) -> dialogs in it (preload it for calls already up); the
        # (profile, value)s of the dialog dlg_manage() made for this message (None: no dialog)
        self.dialog_profiles: dict[tuple[str, str], int] = {}
        self.dialog_links: list[tuple[str, str]] | None = None
        self.dialog_properties: list[str] = []
        # pipelimit: pipe name -> requests counted in the current window; pipe -> its limit
        self.pipes: dict[str, int] = {}
        self.pipe_limits: dict[str, int] = {}
        self.http_replies: list[tuple[int, str, str, str]] = []

    # --- the KSR surface --------------------------------------------------------------

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._api and name != "":
            module = _Module(self, name)
            setattr(self, name, module)
            return module
        spec = self._api[""].get(name)
        if spec is None:
            raise AttributeError(f"KSR has no function or module {name!r} in Kamailio {self.api_label}")
        return lambda *args: self._call("", name, spec, args)

    def _call(self, module: str, func: str, spec: dict, args: tuple):
        key = f"{module}.{func}" if module else func
        if len(args) != len(spec["params"]):
            raise TypeError(f"KSR.{key}() takes {len(spec['params'])} arguments ({len(args)} given)")
        for i, (kind, arg) in enumerate(zip(spec["params"], args, strict=True)):
            if kind == "int" and not isinstance(arg, int):
                raise KSRTypeError(f"KSR.{key}() argument {i + 1} must be int, got {type(arg).__name__}")
            if kind == "str" and not isinstance(arg, str):
                raise KSRTypeError(f"KSR.{key}() argument {i + 1} must be str, got {type(arg).__name__}")
        self.calls.append((key, args))
        if key in self.results:
            result = self.results[key]
            return result(self, *args) if callable(result) else result
        model = getattr(self, "_m_" + key.replace(".", "__"), None)
        if model is not None:
            return model(*args)
        return {"int": 1, "bool": True, "none": None}.get(spec["ret"], "")

    # --- inspection helpers for tests ---------------------------------------------------

    def called(self, key: str) -> bool:
        return any(k == key for k, _ in self.calls)

    def calls_to(self, key: str) -> list[tuple]:
        return [args for k, args in self.calls if k == key]

    @property
    def reply(self) -> tuple[int, str] | None:
        """The last reply sent, or None."""
        return self.replies[-1] if self.replies else None

    def counter(self, name: str, *labels: str) -> int:
        """An xhttp_prom counter's value (0 if never moved),
        e.g. counter("kemi_calls_total", "contact", "none", "none")."""
        return self.metrics.get((name, labels), 0)

    def log_text(self, level: str | None = None) -> str:
        return "".join(text for lvl, text in self.logs if level in (None, lvl))

    # --- model: logging, flags, methods, addresses ----------------------------------------

    def _m_dbg(self, t): self.logs.append(("dbg", t))
    def _m_info(self, t): self.logs.append(("info", t))
    def _m_notice(self, t): self.logs.append(("notice", t))
    def _m_warn(self, t): self.logs.append(("warn", t))
    def _m_err(self, t): self.logs.append(("err", t))
    def _m_crit(self, t): self.logs.append(("crit", t))
    def _m_log(self, level, t): self.logs.append((level, t))

    def _m_set_drop(self):
        self.dropped = True

    def _m_setflag(self, f):
        self.flags.add(f)
        return True
    def _m_resetflag(self, f):
        self.flags.discard(f)
        return True
    def _m_isflagset(self, f): return f in self.flags
    def _m_setbflag(self, f):
        self.bflags.add(f)
        return True
    def _m_resetbflag(self, f):
        self.bflags.discard(f)
        return True
    def _m_isbflagset(self, f): return f in self.bflags

    def _m_is_method(self, m): return self.message.method in m.split("|")
    def _m_is_method_in(self, letters): return any(_METHOD_LETTERS.get(c) == self.message.method for c in letters)

    def _m_is_myself(self, uri_or_ip):
        host = parse_uri(uri_or_ip)[1] if uri_or_ip.startswith(("sip:", "sips:")) else uri_or_ip
        return host.strip("[]") in self.local_domains
    def _m_is_myself_ruri(self): return parse_uri(self.message.ruri)[1] in self.local_domains
    def _m_is_myself_furi(self): return parse_uri(self.message.from_uri)[1] in self.local_domains
    def _m_is_myself_turi(self): return parse_uri(self.message.to_uri)[1] in self.local_domains
    def _m_is_myself_srcip(self): return self.message.source[0] in self.local_addresses

    # --- model: pseudo-variables ------------------------------------------------------------

    def _pv_value(self, name: str):
        if name in self.pvs:
            return self.pvs[name]
        msg = self.message
        ruser, rhost, rport = parse_uri(msg.ruri)
        fuser, fhost, _ = parse_uri(msg.from_uri)
        tuser, thost, _ = parse_uri(msg.to_uri)
        simple = {
            "$rm": msg.method, "$ru": msg.ruri, "$rU": ruser or None, "$rd": rhost, "$rp": int(rport or 5060),
            "$fu": msg.from_uri, "$fU": fuser or None, "$fd": fhost, "$ft": msg.from_tag or None,
            "$tu": msg.to_uri, "$tU": tuser or None, "$td": thost, "$tt": msg.to_tag or None,
            "$ci": msg.call_id, "$cs": msg.cseq, "$ua": msg.header("User-Agent"),
            "$si": msg.source[0], "$sp": msg.source[1], "$pr": msg.proto, "$proto": msg.proto,
            "$Ri": msg.received_on.split(":", 1)[1].rsplit(":", 1)[0].strip("[]"),
            "$Rp": int(msg.received_on.rsplit(":", 1)[1]), "$Rn": msg.socket_name or None,
            "$rs": msg.status or None, "$rr": msg.reason or None, "$rb": msg.body or None,
            "$du": None, "$ds": None, "$T_reply_code": self.t_reply_code or msg.status or None,
            "$T_branch_idx": 0, "$xavp(_dsdst_=>uri)": self._ds_current,
            "$branch(count)": len(self.branches),
        }
        if name in simple:
            return simple[name]
        if m := _HDR_PV.match(name):
            return msg.header(m.group("name"))
        if m := _HDR_URI_PARAMS_PV.match(name):
            return uri_params(msg.header(m.group("name")))
        if name == "$hu":
            return msg.http_url or None
        if m := _CFG_PV.match(name):
            value = self.cfg_vars.get(m.group("var"))
            return None if value is None else str(value)     # $sel gives the number as text
        if m := _SHT_PV.match(name):
            key = m.group("key")
            key = re.sub(r"\$\w+", lambda k: str(self._pv_value(k.group(0)) or ""), key)
            return self.htable.get((m.group("table"), key))
        return None

    def _m_pv__get(self, name): return self._pv_value(name)
    def _m_pv__getw(self, name):
        v = self._pv_value(name)
        return "<null>" if v is None else v
    def _m_pv__gete(self, name):
        v = self._pv_value(name)
        return "" if v is None else v
    def _m_pv__getvn(self, name, default):
        v = self._pv_value(name)
        return default if v is None else v
    def _m_pv__getvs(self, name, default):
        v = self._pv_value(name)
        return default if v is None else v
    def _m_pv__is_null(self, name): return self._pv_value(name) is None

    def _set_pv(self, name, value):
        if name == "$ru":                            # the R-URI itself, as Kamailio rewrites it
            self.message.ruri = value
            return 1
        if m := _SHT_PV.match(name):
            key = re.sub(r"\$\w+", lambda k: str(self._pv_value(k.group(0)) or ""), m.group("key"))
            self.htable[(m.group("table"), key)] = value
        else:
            self.pvs[name] = value
        return 1

    def _m_pv__sets(self, name, value): return self._set_pv(name, value)
    def _m_pv__seti(self, name, value): return self._set_pv(name, value)

    def _m_pv__unset(self, name):
        self.pvs[name] = None

    # --- model: headers and message checks --------------------------------------------------

    def _m_hdr__get(self, name): return self.message.header(name)
    def _m_hdr__gete(self, name): return self.message.header(name) or ""
    def _m_hdr__is_present(self, name): return 1 if self.message.header(name) is not None else -1

    def _m_hdr__remove(self, name):
        present = self.message.header(name) is not None
        self.message.set_header(name, None)
        return 1 if present else -1

    def _m_hdr__append(self, text):
        name, _, value = text.partition(":")
        self.message.set_header(name.strip(), value.strip())
        return 1

    def _m_corex__has_ruri_user(self): return 1 if parse_uri(self.message.ruri)[0] else -1
    def _m_corex__has_user_agent(self): return 1 if self.message.header("User-Agent") else -1
    def _m_siputils__has_totag(self): return 1 if self.message.to_tag else -1
    def _m_siputils__is_request(self): return -1 if self.message.status else 1
    def _m_siputils__is_reply(self): return 1 if self.message.status else -1
    def _m_siputils__is_first_hop(self):
        msg = self.message
        if not msg.status:                       # a request: one Via
            return 1 if msg.header("Via2") is None else -1
        # a reply (mode 0): the top Record-Route is this proxy's address, the source is not
        route = (msg.header("Record-Route") or "").split(",")[0].strip().strip("<>")
        host = parse_uri(route)[1] if route.startswith(("sip:", "sips:")) else ""
        ours = host.strip("[]") in self.local_addresses
        return 1 if ours and msg.source[0] not in self.local_addresses else -1
    def _m_rr__loose_route(self): return 1 if self.message.header("Route") else -1

    def _m_rr__check_route_param(self, regex):
        route = self.message.header("Route") or ""
        params = route.split(";", 1)[1] if ";" in route else ""
        return 1 if re.search(regex, params) else -1
    def _m_nathelper__nat_uac_test(self, tests): return -1
    def _m_tm__t_check_trans(self): return -1
    def _m_tmx__t_precheck_trans(self): return -1
    def _m_tm__t_is_set(self, route): return 1 if route in self.tm_routes else -1

    def _m_maxfwd__process_maxfwd(self, limit):
        value = self.message.header("Max-Forwards")
        if value is None:
            self.message.set_header("Max-Forwards", str(limit))
            return 2
        if not value.strip().isdigit():
            return -2
        if int(value) == 0:
            return -1
        self.message.set_header("Max-Forwards", str(int(value) - 1))
        return 1

    # --- model: replies, auth, registrar, tm ----------------------------------------------

    def _reply(self, code, reason):
        self.replies.append((code, reason))
        return 1

    def _m_sl__sl_send_reply(self, code, reason): return self._reply(code, reason)
    def _m_sl__send_reply(self, code, reason): return self._reply(code, reason)
    def _m_sl__sl_reply_error(self): return self._reply(500, "Server Internal Error")
    # 5.8+: the same reply from the internal error code, statefully when a transaction exists
    def _m_sl__send_reply_error(self): return self._reply(500, "Server Internal Error")
    def _m_tm__t_reply_error(self): return self._reply(500, "Server Internal Error")
    def _m_tm__t_reply(self, code, reason): return self._reply(code, reason)
    def _m_tm__t_send_reply(self, code, reason): return self._reply(code, reason)

    def _m_auth__auth_challenge(self, realm, flags):
        if self.message.method == "REGISTER":
            return self._reply(401, "Unauthorized")
        return self._reply(407, "Proxy Authentication Required")

    def _m_auth_db__auth_check(self, realm, table, flags):
        has_creds = self.message.header("Authorization") or self.message.header("Proxy-Authorization")
        return 1 if has_creds else -5

    def _m_auth__consume_credentials(self):
        self.message.set_header("Authorization", None)
        self.message.set_header("Proxy-Authorization", None)
        return 1

    def _m_registrar__lookup(self, table):
        contacts = self.locations.get(parse_uri(self.message.ruri)[0])
        if not contacts:
            return -1
        self.message.ruri = contacts[0]
        self.branches = list(contacts[1:])
        return 1

    def _m_tm__t_on_failure(self, name): self.tm_routes["failure_route"] = name
    def _m_tm__t_on_reply(self, name): self.tm_routes["onreply_route"] = name
    def _m_tm__t_on_branch(self, name): self.tm_routes["branch_route"] = name

    def _relay(self):
        self.relayed.append({"ruri": self.message.ruri, "branches": list(self.branches),
                             "du": self.pvs.get("$du"), "headers": dict(self.message.headers),
                             "socket": self.send_socket})
        return 1

    def _m_tm__t_relay(self): return self._relay()
    def _m_tm__t_relay_to_proxy(self, proxy): return self._relay()

    def _m_kx__get_def(self, name): return self.defines.get(name)

    def _m_tm__t_is_canceled(self): return 1 if self.canceled else -1

    # --- model: bodies and rtpengine ---------------------------------------------------------

    def _m_textops__has_body(self): return 1 if self.message.body else -1

    def _m_textops__has_body_type(self, content_type):
        declared = (self.message.header("Content-Type") or "").split(";")[0].strip().lower()
        return 1 if self.message.body and declared == content_type.lower() else -1

    def _rtpengine(self, op: str, flags: str = "") -> int:
        """offer creates a session, answer needs one, delete removes it; -1 when unreachable.

        A reachable rtpengine that refuses an offer fills rtp_inst_pvar (as the real module
        does for any answer) and, like rtpengine, may keep a half-made session. The session is
        the message's Call-ID, or the flags' call-id=... (the module's override).
        """
        from kemi.names import RTPENGINE_INSTANCE_PV

        if not self.rtpengine_up:
            return -1
        self.pvs[RTPENGINE_INSTANCE_PV] = self.rtpengine_instance
        override = next((f.split("=", 1)[1] for f in flags.split() if f.startswith("call-id=")), None)
        call_id = override or self.message.call_id
        if op == "offer":
            self.rtpengine_sessions.add(call_id)
            return -1 if self.rtpengine_refuses else 1
        if call_id not in self.rtpengine_sessions:
            return -1
        if op == "delete":
            self.rtpengine_sessions.discard(call_id)
        return 1

    def _m_rtpengine__rtpengine_offer(self, flags): return self._rtpengine("offer", flags)
    def _m_rtpengine__rtpengine_offer0(self): return self._rtpengine("offer")
    def _m_rtpengine__rtpengine_answer(self, flags): return self._rtpengine("answer", flags)
    def _m_rtpengine__rtpengine_answer0(self): return self._rtpengine("answer")
    def _m_rtpengine__rtpengine_delete(self, flags): return self._rtpengine("delete", flags)
    def _m_rtpengine__rtpengine_delete0(self): return self._rtpengine("delete")
    def _m_kx__get_send_sock_name(self): return self.send_socket
    def _m_kx__get_rcv_sock_name(self): return self.message.socket_name
    def _m_corex__set_send_socket_name(self, name):
        self.send_socket = name
        return 1

    # --- model: dispatcher (round-robin over active destinations, failover list) -----------

    def _ds_use(self, uri: str) -> None:
        self._ds_current = uri
        self.pvs["$du"] = uri
        if uri in self.gateway_sockets:
            self.send_socket = self.gateway_sockets[uri]

    def _m_dispatcher__ds_select_dst(self, setid, alg):
        active = [u for u in self.gateways.get(setid, []) if u not in self.inactive_gateways]
        if not active:
            return -1
        start = self._ds_next.get(setid, 0) % len(active)
        self._ds_next[setid] = start + 1
        order = active[start:] + active[:start]
        self._ds_use(order[0])
        self._ds_rest = order[1:]
        return 1

    def _m_dispatcher__ds_next_dst(self):
        if not self._ds_rest:
            return -1
        self._ds_use(self._ds_rest.pop(0))
        return 1

    def _m_dispatcher__ds_mark_dst_state(self, state):
        if self._ds_current is None:
            return -1
        self.ds_marks.append((self._ds_current, state))
        if "i" in state.lower():
            self.inactive_gateways.add(self._ds_current)
        return 1

    def _m_dispatcher__ds_is_from_list_mode(self, setid, mode):
        source = self.message.source[0]
        hosts = {parse_uri(u)[1].strip("[]") for u in self.gateways.get(setid, [])}
        return 1 if source in hosts else -1

    # --- model: htable (shared with the $sht PV model above) -------------------------------

    def _m_htable__sht_get(self, table, key): return self.htable.get((table, key))
    def _m_htable__sht_gete(self, table, key):
        v = self.htable.get((table, key))
        return "" if v is None else v
    def _m_htable__sht_is_null(self, table, key): return 1 if (table, key) not in self.htable else -1
    def _m_htable__sht_seti(self, table, key, value):
        self.htable[(table, key)] = value
        return 1
    def _m_htable__sht_sets(self, table, key, value):
        self.htable[(table, key)] = value
        return 1

    def _m_htable__sht_rm(self, table, key):
        return 1 if self.htable.pop((table, key), None) is not None else -1

    def _m_htable__sht_inc(self, table, key):
        value = _integer(self.htable.get((table, key))) + 1
        self.htable[(table, key)] = value
        return value

    def _m_htable__sht_dec(self, table, key):
        value = _integer(self.htable.get((table, key))) - 1
        self.htable[(table, key)] = value
        return value

    # --- model: xhttp and xhttp_prom (counters; /metrics as xhttp_prom renders it) ----------

    def _counter_inc(self, name, number, *labels):
        if number < 0:
            return -1                                 # xhttp_prom refuses negative increments
        key = (name, labels)
        self.metrics[key] = self.metrics.get(key, 0) + number
        return 1

    def _m_xhttp_prom__counter_inc_l0(self, name, n): return self._counter_inc(name, n)
    def _m_xhttp_prom__counter_inc_l1(self, name, n, a): return self._counter_inc(name, n, a)
    def _m_xhttp_prom__counter_inc_l2(self, name, n, a, b): return self._counter_inc(name, n, a, b)
    def _m_xhttp_prom__counter_inc_l3(self, name, n, a, b, c): return self._counter_inc(name, n, a, b, c)

    def _m_xhttp_prom__check_uri(self):
        return 1 if self.message.http_url.split("?", 1)[0] == "/metrics" else -1

    def _m_xhttp_prom__dispatch(self):
        """The counters in xhttp_prom's text format (label names l0, l1, ... : the fake does not
        know the declarations)."""
        lines = []
        for (name, labels), value in sorted(self.metrics.items()):
            text = ", ".join(f'l{i}="{v}"' for i, v in enumerate(labels))
            lines.append(f"kamailio_{name}{{{text}}} {value} 0" if labels else f"kamailio_{name} {value} 0")
        self.http_replies.append((200, "OK", "text/plain; version=0.0.4", "\n".join(lines) + "\n"))
        return 1

    def _gauge_set(self, name, value, *labels):
        self.gauges[(name, labels)] = value
        return 1

    def _m_xhttp_prom__gauge_set_l0(self, name, v): return self._gauge_set(name, v)
    def _m_xhttp_prom__gauge_set_l1(self, name, v, a): return self._gauge_set(name, v, a)
    def _m_xhttp_prom__gauge_set_l2(self, name, v, a, b): return self._gauge_set(name, v, a, b)
    def _m_xhttp_prom__gauge_set_l3(self, name, v, a, b, c): return self._gauge_set(name, v, a, b, c)

    # --- model: dialog profiles and pipelimit pipes (kemi/limits/) ----------------------------

    def _m_dialog__dlg_manage(self):
        if self.message.to_tag:
            return 1                                   # an in-dialog request: matched, nothing made
        if self.dialog_links is not None:
            return -1                                  # this request has its dialog already
        self.dialog_links = []
        return 1

    def _m_dialog__is_known_dlg(self):
        return 1 if self.dialog_links is not None else -1

    def _m_dialog__set_dlg_profile(self, profile, value):
        if self.dialog_links is None:
            return -1                                  # no dialog for this message
        self.dialog_links.append((profile, value))
        self.dialog_profiles[(profile, value)] = self.dialog_profiles.get((profile, value), 0) + 1
        return 1

    def _m_dialog__unset_dlg_profile(self, profile, value):
        if self.dialog_links is None or (profile, value) not in self.dialog_links:
            return -1
        self.dialog_links.remove((profile, value))
        self.dialog_profiles[(profile, value)] -= 1
        return 1

    def _m_dialog__get_profile_size(self, profile, value, pv):
        self.pvs[pv] = self.dialog_profiles.get((profile, value), 0)
        return 1

    def _m_dialog__get_profile_size_static(self, profile, pv):
        self.pvs[pv] = sum(n for (p, _), n in self.dialog_profiles.items() if p == profile)
        return 1

    def _m_dialog__dlg_set_property(self, prop):
        if self.dialog_links is None:
            return -1
        self.dialog_properties.append(prop)
        return 1

    def release_dialog(self) -> None:
        """This message's dialog ends (BYE, failure, timeout): its counts go."""
        for key in self.dialog_links or ():
            self.dialog_profiles[key] -= 1
        self.dialog_links = None

    def _m_pipelimit__pl_check_limit(self, name, algorithm, limit):
        self.pipe_limits[name] = limit
        self.pipes[name] = self.pipes.get(name, 0) + 1
        return 1 if self.pipes[name] <= limit else -1

    def _m_xhttp__xhttp_reply(self, code, reason, ctype, body):
        self.http_replies.append((code, reason, ctype, body))
        return 1
