"""[cluster]: several nodes sharing registrations, bans and the Record-Route secret. docs/cluster.md."""
from __future__ import annotations

import ipaddress
import re

from kemi.settings.schema import CLUSTER_REGISTRATIONS, Settings
from kemi.settings.validate.problems import require

CLUSTER_RANGES = {              # key: (lowest, highest, unit) accepted
    "dmq_port": (1, 65535, "(a UDP port)"),
    "sync_wait": (0, 600, "seconds (0 = a starting node answers 480 at once)"),
    # dmq_usrloc refuses more than 150 contacts per message
    "sync_contacts_per_message": (1, 150, "contacts"),
    "sync_batch": (1, 1_000_000, "contacts"),
    "sync_pause_ms": (0, 10_000, "ms"),
    "floating_prefix": (1, 128, "bits"),
    "floating_router_id": (1, 255, "(the VRRP router id, unique on the LAN)"),
    "floating_advert_ms": (100, 10_000, "ms (VRRP v3 counts in 10 ms)"),
}


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def validate_cluster(s: Settings, source: str) -> None:
    c = s.cluster
    if not c.enabled:
        return
    for name, (low, high, unit) in CLUSTER_RANGES.items():
        value = getattr(c, name)
        require(low <= value <= high, f"cluster.{name}", f"{value} is out of range",
                f"use {low} to {high} {unit}", source)
    addresses = [_ip(a) for a in c.nodes]
    for text, ip in zip(c.nodes, addresses):
        require(ip is not None, "cluster.nodes", f"{text!r} is not an IP address",
                "list every node's cluster address as a literal IPv4 or IPv6 address", source)
    require(len(c.nodes) >= 2, "cluster.nodes", f"has {len(c.nodes)} node(s)",
            'list every node\'s address, this one included, e.g. ["192.0.2.11", "192.0.2.12"]', source)
    require(len(set(addresses)) == len(addresses), "cluster.nodes", "lists an address twice",
            "give each node its own address", source)
    require(1 <= c.node <= max(len(c.nodes), 1), "cluster.node", f"{c.node} names no entry of cluster.nodes",
            f"use this node's position in cluster.nodes, 1 to {len(c.nodes)}", source)
    require(len(c.secret) >= 16 and c.secret.isprintable() and '"' not in c.secret, "cluster.secret",
            "is shorter than 16 characters, or has control characters or a double quote",
            "set the same secret on every node, e.g. the output of `openssl rand -hex 32`", source)
    require(s.security.route_secret == "", "security.route_secret",
            "is set, but a cluster signs its Record-Route with cluster.secret",
            'remove it (one secret for the whole cluster: cluster.secret)', source)
    require(c.registrations in CLUSTER_REGISTRATIONS, "cluster.registrations",
            f"{c.registrations!r} is not supported",
            "use " + " or ".join(f'"{k}" ({v})' for k, v in CLUSTER_REGISTRATIONS.items()), source)
    if c.floating_address:
        require(_ip(c.floating_address) is not None, "cluster.floating_address",
                f"{c.floating_address!r} is not an IP address", 'write the VRRP address, e.g. "192.0.2.10"', source)
        require(c.floating_address not in c.nodes, "cluster.floating_address", "is also a node's address",
                "use an address no node has as its own (keepalived moves it)", source)
    require(re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", c.floating_interface) is not None, "cluster.floating_interface",
            f"{c.floating_interface!r} is not an interface name", 'write the NIC\'s name, e.g. "eth0"', source)
    require(c.floating_advert_ms % 10 == 0, "cluster.floating_advert_ms", f"{c.floating_advert_ms} is not a "
            "multiple of 10", "use e.g. 500 (VRRP v3 adverts count in hundredths of a second)", source)
    own = c.address
    for listen in s.sip.listen:
        require(not (listen.host == own and listen.port == c.dmq_port), "cluster.dmq_port",
                f"{c.dmq_port} is also a sip.listen port on {own}", "use another port for DMQ (e.g. 5090)", source)
