"""[websocket]: SIP over WebSocket for browsers (the websocket module on ws / wss sockets). docs/media.md."""
from __future__ import annotations

from kemi.settings.schema import WEBSOCKET_LISTEN_RE, Settings, WebsocketSettings
from kemi.settings.validate.problems import record, require


def parse_websocket(name: str, raw, factory, source: str) -> WebsocketSettings:
    return record(name, raw, WebsocketSettings, source)


def validate_websocket(s: Settings, source: str) -> None:
    ws = s.websocket
    if not ws.enabled:
        return
    require(bool(ws.listen), "websocket.listen", "is empty", 'list e.g. ["wss:127.0.0.1:8443"]', source)
    taken = {l.socket: "sip.listen" for l in s.sip.listen}
    if s.sbc.enabled:
        taken.update({l.socket: f"sbc.{role}.listen" for role, side in (("public", s.sbc.public),
                                                                       ("private", s.sbc.private))
                      for l in side.listen})
    if s.metrics.enabled:
        taken[s.metrics.socket] = "metrics.listen"
    for entry in ws.listen:
        m = WEBSOCKET_LISTEN_RE.match(entry)
        if not require(m is not None, "websocket.listen", f"{entry!r} is not a WebSocket socket",
                       'write "ws:ADDRESS:PORT" or "wss:ADDRESS:PORT", e.g. "wss:127.0.0.1:8443"', source):
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
