"""[security] and [tls]: the screen's limits, the Record-Route secret, the TLS listener. docs/security.md."""
from __future__ import annotations

from pathlib import Path

from kemi.settings.schema import Settings
from kemi.settings.validate.problems import require

SECURITY_RANGES = {             # key: (lowest, highest, unit) accepted
    "flood_interval": (1, 60, "seconds"),
    # pike keeps this limit in a 16-bit counter (ip_tree.h max_hits): a larger value wraps
    # silently (100,000 became 34,464, and a branch turns hot at a quarter of it)
    "flood_requests": (2, 65_535, "requests"),
    "auth_failure_limit": (0, 1000, "failed attempts (0 = never ban for them)"),
    "auth_failure_window": (1, 86400, "seconds"),
    "ban_time": (1, 7 * 86400, "seconds"),
}
TLS_METHODS = ("TLSv1.2+", "TLSv1.3")


def validate_security(s: Settings, source: str) -> None:
    sec = s.security
    for name, (low, high, unit) in SECURITY_RANGES.items():
        value = getattr(sec, name)
        require(low <= value <= high, f"security.{name}", f"{value} is out of range",
                f"use {low} to {high} {unit}", source)
    require(sec.route_secret == "" or (len(sec.route_secret) >= 16 and sec.route_secret.isprintable()),
            "security.route_secret", "is shorter than 16 characters or has control characters",
            'use e.g. the output of `openssl rand -hex 32`, or "" for a random one per start', source)
    for agent in sec.scanner_user_agents:
        require(bool(agent.strip()) and agent.isprintable(), "security.scanner_user_agents",
                f"{agent!r} is empty or has control characters", "list plain User-Agent substrings", source)


def validate_tls(s: Settings, source: str) -> None:
    tls, has_tls_socket = s.tls, any(l.proto == "tls" for l in s.sip.listen)
    # a wss: WebSocket socket is a TLS socket too ([websocket], docs/media.md)
    has_wss_socket = s.websocket.enabled and any(l.proto == "tls" for l, _ in s.websocket.sockets)
    if not tls.enabled:
        require(not has_tls_socket, "sip.listen", "has a tls: socket but tls.enabled is false",
                "set tls.enabled = true with a certificate and key, or remove the tls: socket", source)
        return
    require(has_tls_socket or has_wss_socket, "tls.enabled", "is true but sip.listen has no tls: socket",
            'add e.g. "tls:127.0.0.1:5061" to sip.listen (or a "wss:" socket to websocket.listen)', source)
    require(tls.method in TLS_METHODS, "tls.method", f"{tls.method!r} is not supported",
            "use " + " or ".join(TLS_METHODS), source)
    for key in ("certificate", "private_key", "ca_list"):
        path = getattr(tls, key)
        if key == "ca_list" and not path:
            continue
        if require(path.startswith("/") and '"' not in path, f"tls.{key}", f"{path!r} is not an absolute path",
                   "write the absolute path of a PEM file", source):
            require(Path(path).is_file(), f"tls.{key}", f"{path} does not exist",
                    "create it (e.g. with openssl req -x509 ...) or fix the path", source)

