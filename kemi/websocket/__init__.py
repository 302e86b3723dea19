"""SIP over WebSocket (RFC 7118) for browsers, with Kamailio's websocket module (docs/media.md).

handshake.py  which sockets are WebSocket sockets, which HTTP requests get the handshake
part.py       the KSR part (WebSocket / NoWebSocket): the handshake in xhttp's event route
settings.py   [websocket]
"""
