"""Who gets the WebSocket handshake: plain functions, no KSR (the part: kemi/websocket/part.py)."""
from __future__ import annotations

from kemi.names import WEBSOCKET_SOCKET_NAMES

HTTP_FORBIDDEN = (403, "Forbidden", "text/plain", "Forbidden\n")
HTTP_UPGRADE_REQUIRED = (426, "Upgrade Required", "text/plain", "Upgrade Required\n")


def is_websocket_socket(name: str) -> bool:
    """A socket [websocket] named: "ws", "wss", "ws-2", ..."""
    return name.split("-", 1)[0] in WEBSOCKET_SOCKET_NAMES


def handshake_refusal(method: str, upgrade: str, connection: str, origin: str,
                      origins: tuple[str, ...]) -> tuple | None:
    """None when the request may get the WebSocket handshake, else the HTTP reply it gets."""
    if method != "GET" or "websocket" not in upgrade.lower() or "upgrade" not in connection.lower():
        return HTTP_UPGRADE_REQUIRED
    if origins and origin not in origins:
        return HTTP_FORBIDDEN
    return None
