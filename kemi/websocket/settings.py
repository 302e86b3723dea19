"""[websocket]: SIP over WebSocket for browsers (the websocket module on ws / wss sockets). docs/media.md."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import Listen, SettingsError, record, report, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

WEBSOCKET_SCHEMES = {"ws": "tcp", "wss": "tls"}        # WebSocket listen scheme -> Kamailio's socket proto
WEBSOCKET_LISTEN_RE = re.compile(r"^(ws|wss):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")


@dataclass(frozen=True)
class WebsocketSettings:
    # true: SIP over WebSocket (RFC 7118) for browsers: the websocket module, on the sockets below
    enabled: bool = False
    # "ws:ADDRESS:PORT" (plain, over TCP) and "wss:ADDRESS:PORT" (over TLS: needs [tls] with a
    # certificate). Browsers refuse ws: from an https page: use wss in production
    listen: tuple[str, ...] = ("ws:127.0.0.1:8080",)
    # Origin headers a handshake may carry (e.g. "https://phone.example.com"); [] = any origin
    origins: tuple[str, ...] = ()

    @property
    def sockets(self) -> tuple[tuple[Listen, str], ...]:
        """(Listen, socket name) per listen entry: "ws", "wss", then "ws-2", ..."""
        out: list[tuple[Listen, str]] = []
        count: dict[str, int] = {}
        for entry in self.listen:
            m = WEBSOCKET_LISTEN_RE.match(entry)
            if not m:
                continue
            scheme = m.group(1)
            count[scheme] = count.get(scheme, 0) + 1
            name = scheme if count[scheme] == 1 else f"{scheme}-{count[scheme]}"
            out.append((Listen(WEBSOCKET_SCHEMES[scheme], m.group(2), int(m.group(3))), name))
        return tuple(out)


def parse(name: str, raw, factory, source: str) -> WebsocketSettings:
    return record(name, raw, WebsocketSettings, source)


def validate(s: Settings, source: str) -> None:
    ws = s.websocket
    if not ws.enabled:
        return
    require(bool(ws.listen), "websocket.listen", "is empty", 'list e.g. ["wss:127.0.0.1:8443"]', source)
    taken = {listen.socket: "sip.listen" for listen in s.sip.listen}
    if s.sbc.enabled:
        taken.update({listen.socket: f"sbc.{role}.listen" for role, side in (("public", s.sbc.public),
                                                                            ("private", s.sbc.private))
                      for listen in side.listen})
    if s.metrics.enabled:
        taken[s.metrics.socket] = "metrics.listen"
    for entry in ws.listen:
        m = WEBSOCKET_LISTEN_RE.match(entry)
        if m is None:
            report(SettingsError("websocket.listen", f"{entry!r} is not a WebSocket socket",
                                 'write "ws:ADDRESS:PORT" or "wss:ADDRESS:PORT", e.g. "wss:127.0.0.1:8443"', source))
            continue
        require(1 <= int(m.group(3)) <= 65535, "websocket.listen", f"port {m.group(3)} in {entry!r} is out of range",
                "use a port from 1 to 65535", source)
        if m.group(1) == "wss":
            require(s.tls.enabled, "websocket.listen", f"{entry!r} needs TLS but tls.enabled is false",
                    "set tls.enabled = true with tls.certificate and tls.private_key (docs/media.md, WebRTC)",
                    source)
    for listen, _name in ws.sockets:
        # a WebSocket port is a TCP/TLS socket; a second listen= on it would make Kamailio refuse to start
        require(listen.socket not in taken, "websocket.listen",
                f"{listen.socket} is also in {taken.get(listen.socket)}", "give WebSocket its own port", source)
        taken[listen.socket] = "websocket.listen"
    for origin in ws.origins:
        require(origin.startswith(("http://", "https://")) and origin.isprintable() and " " not in origin,
                "websocket.origins", f"{origin!r} is not an origin",
                'write scheme://host[:port] as browsers send it, e.g. "https://phone.example.com"', source)


def cfg_lines(s: Settings) -> list[str]:
    return ["#!define WITH_WEBSOCKET"] if s.websocket.enabled else []
