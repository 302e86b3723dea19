"""The WebSocket part: SIP over WebSocket (RFC 7118) for browsers, with Kamailio's websocket module.

serve_http   event_route[xhttp:request] (Router.route_xhttp), first: an HTTP GET upgrading to
             WebSocket on a [websocket] socket gets the handshake (ws_handle_handshake), after
             the Origin check (websocket.origins; 403 for another origin). Anything else on
             those sockets, or on any other socket, goes on to the metrics part (/metrics on
             the metrics socket, 404 otherwise), so the two share xhttp's one event route.

Routing SIP from and to WebSocket clients is Kamailio's own way (its websocket module's
README, "SIP message routing"): nathelper, no outbound/Path. A browser's Via, Contact and
Record-Route name an invalid host (df7jal23ls0d.invalid), so every WebSocket client counts
as behind NAT (nat_uac_test 64, kemi/nat/part.py): a REGISTER's contact is stored with
the connection's address (fix_nated_register, received_avp), a call from the browser gets
a contact alias (set_contact_alias), in-dialog requests back follow it (handle_ruri_alias),
and tm sends to the browser over the connection it holds open. Auth, the security screen
and the metrics see a WebSocket client as any other.
"""
from __future__ import annotations

from kemi.message import Message, loggable
from kemi.websocket.handshake import handshake_refusal, is_websocket_socket


class WebSocket:
    def __init__(self, ksr, origins: tuple[str, ...]):
        self.ksr, self.origins = ksr, tuple(origins)

    def serve_http(self, msg: Message) -> bool:
        """True when this part answered the HTTP request (handshake done or refused)."""
        if not is_websocket_socket(msg.received_socket_name or ""):
            return False
        ksr = self.ksr
        ksr.set_reply_close()          # as Kamailio's example: an HTTP error closes the connection
        ksr.set_reply_no_connect()
        refusal = handshake_refusal(msg.method, msg.pv("$hdr(Upgrade)") or "", msg.pv("$hdr(Connection)") or "",
                                    msg.pv("$hdr(Origin)") or "", self.origins)
        if refusal is None and ksr.websocket.handle_handshake() > 0:
            return True
        if refusal is None:             # the module refused (bad key/version): it has answered
            ksr.notice(f"kemi: websocket: handshake failed from {msg.source_ip}:{msg.source_port}\n")
            return True
        ksr.notice(f"kemi: websocket: HTTP {msg.printable('$rm')} from {msg.source_ip}:{msg.source_port} "
                   f"(origin {loggable(str(msg.pv('$hdr(Origin)') or '-'))}) answered {refusal[0]}\n")
        ksr.xhttp.xhttp_reply(*refusal)
        return True


class NoWebSocket:
    """websocket.enabled = false: no WebSocket socket exists."""

    def serve_http(self, msg: Message) -> bool:
        return False
