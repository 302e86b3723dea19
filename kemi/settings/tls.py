"""[tls]: SIP over TLS (the tls module) for tls: sockets and wss: WebSocket sockets."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

TLS_METHODS = ("TLSv1.2+", "TLSv1.3")


@dataclass(frozen=True)
class TlsSettings:
    # true: load the tls module; sip.listen must then name at least one "tls:" socket
    enabled: bool = False
    # PEM files (absolute paths); the key must not be passphrase-protected
    certificate: str = ""
    private_key: str = ""
    # PEM bundle of CAs to verify client certificates against ("" = clients are not asked)
    ca_list: str = ""
    # oldest protocol accepted: "TLSv1.2+" or "TLSv1.3"
    method: str = "TLSv1.2+"


def validate(s: Settings, source: str) -> None:
    tls, has_tls_socket = s.tls, any(listen.proto == "tls" for listen in s.sip.listen)
    # a wss: WebSocket socket is a TLS socket too ([websocket], docs/media.md)
    has_wss_socket = s.websocket.enabled and any(listen.proto == "tls" for listen, _ in s.websocket.sockets)
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


def cfg_lines(s: Settings) -> list[str]:
    tls = s.tls
    if not tls.enabled:
        return []
    lines = [
        "#!define WITH_TLS",
        f'#!define TLS_METHOD "{tls.method}"',
        f'#!define TLS_CERTIFICATE "{tls.certificate}"',
        f'#!define TLS_PRIVATE_KEY "{tls.private_key}"',
    ]
    if tls.ca_list:
        lines += ["#!define WITH_TLS_CLIENT_CA", f'#!define TLS_CA_LIST "{tls.ca_list}"']
    return lines
