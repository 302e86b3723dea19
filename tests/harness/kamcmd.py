"""Reading `kamcmd` output that changed layout between Kamailio versions."""
from __future__ import annotations

import re

_FIELD = re.compile(r"^\s*(\w+):\s*(.*?)\s*$")


def list_sockets(text: str) -> list[dict[str, str]]:
    """`kamcmd corex.list_sockets` as one dict per socket, keys lower-case.

    5.6 prints PROTO/NAME/ADDRLIST {ADDR}/PORT/.../SOCKNAME in capitals; 6.0 prints the same
    fields in lower case, with af, sockstr and agname added. A socket's first address is
    its "addr".
    """
    sockets, current, depth = [], None, 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "{" and depth == 0:
            current, depth = {}, 1
            continue
        if current is None:
            continue
        if stripped.endswith("{"):
            depth += 1
            continue
        if stripped == "}":
            depth -= 1
            if depth == 0:
                sockets.append(current)
                current = None
            continue
        m = _FIELD.match(line)
        if m:
            current.setdefault(m.group(1).lower(), m.group(2))
    return sockets
