"""One SIP message: its values, each read from Kamailio at most once, and the state the steps share.

Every KSR.pv call crosses from Python into C; a route that needs `$rU` three times should
pay for it once. The Router makes a `Message` per callback (guard.py); a PV is read on first
use only, and then kept in the instance's __dict__, where a later read is a plain attribute
(a descriptor call per read cost ~1,250 instructions: docs/benchmark.md, "What was cut").
A part whose steps share what they learned about a message brings its own subclass with typed
slots (the SBC: kemi/sbc/part.py SbcMessage, its sides), chosen once with the part:
an install without it carries none of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kemi.sbc.direction import Side


class UndecodableValue(ValueError):
    """A PV's bytes are not UTF-8 (app_python3 cannot hand them to Python as str)."""

    def __init__(self, spec: str):
        super().__init__(f"{spec} is not valid UTF-8")
        self.spec = spec


def _read(ksr, spec: str):
    try:
        return ksr.pv.gete(spec)
    except UnicodeDecodeError:
        raise UndecodableValue(spec) from None


def loggable(text: str) -> str:
    """`text` safe for one log line: control characters (NUL, CR, LF, ...) as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _hexa_spec(spec: str) -> str:
    """'$ci' -> '$(ci{s.encode.hexa})': the same PV as hex digits (always ASCII)."""
    return f"$({spec[1:]}{{s.encode.hexa}})"


class _PV:
    """A lazily read pseudo-variable ("" when Kamailio has no value). A non-data descriptor:
    its first read stores the value in the instance's __dict__ under the field's name, which
    later reads find before the descriptor (no Python call)."""

    __slots__ = ("spec", "name")

    def __init__(self, spec: str):
        self.spec = spec
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, msg: Message, owner=None):
        if msg is None:
            return self
        spec, cache = self.spec, msg.cache
        value = cache.get(spec)
        if value is None:          # _read() inlined: most fields are read once, so this runs often
            try:
                value = msg.ksr.pv.gete(spec)
            except UnicodeDecodeError:
                raise UndecodableValue(spec) from None
            cache[spec] = value
        msg.__dict__[self.name] = value
        return value


class Message:
    # __dict__: the fields read so far (_PV), found before the descriptors
    __slots__ = ("ksr", "cache", "__dict__")
    # the SBC side the request came from / the side's name it is relayed through; None without
    # the SBC (class attributes: SbcMessage has slots for them, a registrar's message nothing)
    ingress: Side | None = None
    egress: str | None = None
    # topology hiding (kemi/topology/): the dialog's Call-ID when the message carries the far
    # side's masked one on the wire (rtpengine is told this one); None: the message's own
    dialog_call_id: str | None = None

    method = _PV("$rm")
    ruri = _PV("$ru")
    ruri_user = _PV("$rU")
    ruri_domain = _PV("$rd")
    from_user = _PV("$fU")
    from_domain = _PV("$fd")
    to_user = _PV("$tU")
    to_tag = _PV("$tt")
    call_id = _PV("$ci")
    user_agent = _PV("$ua")
    source_ip = _PV("$si")
    source_port = _PV("$sp")
    received_ip = _PV("$Ri")
    received_port = _PV("$Rp")
    received_socket_name = _PV("$Rn")   # the listen socket's name= ("" if unnamed)
    proto = _PV("$pr")           # transport it came over: udp, tcp, tls, ws, wss
    status = _PV("$rs")          # replies only
    # the parameters of the top Route's URI ("lr;kd=...;nat=yes"): after loose_route(), ours
    route_params = _PV("$(hdr(Route){nameaddr.uri}{uri.params})")

    def __init__(self, ksr):
        self.ksr = ksr
        self.cache: dict[str, object] = {}      # PV spec -> value read

    def pv(self, spec: str):
        """Any other PV, read once."""
        value = self.cache.get(spec)
        if value is None:
            value = self.cache[spec] = _read(self.ksr, spec)
        return value

    def route_param(self, name: str) -> str | None:
        """One parameter of the top Route's URI (None: absent). Read in Python from one PV:
        rr's check_route_param() compiles its regex argument on every call."""
        for param in self.route_params.split(";"):
            key, _, value = param.partition("=")
            if key == name:
                return value
        return None

    def set_ruri(self, uri: str) -> None:
        """Rewrite the R-URI; later reads of $ru/$rU/$rd see the new one."""
        self.ksr.pv.sets("$ru", uri)
        for spec in ("$ru", "$rU", "$rd"):
            self.cache.pop(spec, None)
        for name in ("ruri", "ruri_user", "ruri_domain"):
            self.__dict__.pop(name, None)

    def see(self, name: str, value: str) -> None:
        """The routing reads `value` for field `name` from now on; the message on the wire is
        unchanged. Both places a read is kept: the PV's cache and the field's attribute."""
        self.cache[getattr(type(self), name).spec] = value
        self.__dict__[name] = value

    def printable(self, spec: str) -> str:
        """A PV for a log line, whatever its bytes: invalid UTF-8 shows as \\xNN escapes."""
        try:
            return loggable(str(self.pv(spec)))
        except UndecodableValue:
            pass
        try:
            raw = bytes.fromhex(str(self.ksr.pv.gete(_hexa_spec(spec))))
        except (ValueError, UnicodeDecodeError):
            return "?"
        return loggable(raw.decode("utf-8", "backslashreplace"))

    @property
    def in_dialog(self) -> bool:
        return self.to_tag != ""

    @property
    def is_reply(self) -> bool:
        status = self.status
        return isinstance(status, int) and status > 0

    def describe(self) -> str:
        """Short identification for log lines."""
        return (f"{self.printable('$rm')} from {self.source_ip}:{self.source_port} "
                f"call-id={self.printable('$ci')}")


# The SBC's message (kemi/sbc/part.py uses it). Here, not in kemi/sbc/part.py: make compile
# compiles that part, and a class with __slots__ cannot be made in a compiled module (mypyc:
# "TypeError: mypyc classes can't have __slots__" at import); this module stays plain Python.
class SbcMessage(Message):
    """A message on the SBC: what its steps learn about its sides (None: not known yet)."""
    __slots__ = ("ingress", "egress", "from_gateway", "gateway_side")

    def __init__(self, ksr):
        super().__init__(ksr)
        self.ingress: Side | None = None        # the side the request came from (accept)
        self.egress: str | None = None          # the side's name it is relayed through (leaving)
        self.from_gateway: bool | None = None   # sent by a listed gateway of its side (asked once)
        self.gateway_side: Side | None = None   # the side whose gateway set it is sent to (select_gateway)
