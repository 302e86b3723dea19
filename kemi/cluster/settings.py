"""[cluster]: several nodes sharing registrations, bans and the Record-Route secret; renders dmq,
dmq_usrloc and the node's server_id. docs/cluster.md."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import CLUSTER_TABLE
from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

CLUSTER_REGISTRATIONS = {"dmq": "in memory on every node, replicated by DMQ (dmq_usrloc)",
                         "database": "usrloc db_mode 3 on the shared (Galera) database"}


@dataclass(frozen=True)
class ClusterSettings:
    # off: one node, exactly as without this table
    enabled: bool = False
    # this node: its position in `nodes`, from 1 (also Kamailio's server_id, so the
    # rtpengine ng cookies of two nodes never collide)
    node: int = 1
    # every node's cluster address (IPv4 or IPv6), in the same order on every node
    nodes: tuple[str, ...] = ()
    # the DMQ socket's UDP port on each node's address (KDMQ requests, peers only)
    dmq_port: int = 5090
    # the shared secret of the cluster: signs the Record-Route, so an in-dialog request a
    # node signed passes any other (security.route_secret stays "")
    secret: str = ""
    # where the location set lives: "dmq" (every node's memory, dmq_usrloc) or "database"
    # (usrloc db_mode 3 on the shared database)
    registrations: str = "dmq"
    # bans and failed-auth counts replicated to every node (htable over DMQ)
    share_bans: bool = True
    # the floating address (keepalived/VRRP) in front of the nodes: every node listens on it
    # too (it needs net.ipv4.ip_nonlocal_bind=1). "" = none
    floating_address: str = ""
    # keepalived (kemi_tools/stack/keepalived.py): the NIC and prefix length the floating
    # address goes on, the VRRP router id (unique on that LAN), the advert interval (ms): a
    # dead holder is replaced after about 3 intervals
    floating_interface: str = "eth0"
    floating_prefix: int = 24
    floating_router_id: int = 51
    floating_advert_ms: int = 500
    # dmq mode: a starting node asks its peers for every contact they hold (dmq_usrloc sync)
    sync: bool = True
    # dmq mode: a starting node asks its peers how many contacts they hold and answers a
    # call for an unregistered user 503 (Retry-After) instead of 480 until it holds as many,
    # for at most this many seconds (0: no wait)
    sync_wait: int = 30
    # dmq_usrloc full sync: contacts per KDMQ message (up to 150), and per batch, between
    # which the sender pauses sync_pause_ms
    sync_contacts_per_message: int = 50
    sync_batch: int = 2000
    sync_pause_ms: int = 20

    @property
    def address(self) -> str:
        """This node's cluster address ("" while `node` names no entry: the check reports it)."""
        return self.nodes[self.node - 1] if 1 <= self.node <= len(self.nodes) else ""

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(a for i, a in enumerate(self.nodes, 1) if i != self.node)

    def dmq_uri(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"sip:{host}:{self.dmq_port}"


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


def validate(s: Settings, source: str) -> None:
    c = s.cluster
    if not c.enabled:
        return
    for name, (low, high, unit) in CLUSTER_RANGES.items():
        value = getattr(c, name)
        require(low <= value <= high, f"cluster.{name}", f"{value} is out of range",
                f"use {low} to {high} {unit}", source)
    addresses = [_ip(a) for a in c.nodes]
    for text, ip in zip(c.nodes, addresses, strict=True):
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


def cfg_lines(s: Settings) -> list[str]:
    """#!define lines for dmq, dmq_usrloc and the node's server_id (kamailio-common.cfg WITH_CLUSTER)."""
    c = s.cluster
    if not c.enabled:
        return []
    address = f"[{c.address}]" if ":" in c.address else c.address
    notify = [f'modparam("dmq", "notification_address", "{c.dmq_uri(peer)}")' for peer in c.peers]
    lines = [
        "#!define WITH_CLUSTER",
        # Kamailio's server_id: part of every rtpengine ng cookie (server_id_pid_seq), so two
        # nodes whose workers have the same PIDs (containers) never get each other's answers
        f"#!define SERVER_ID {c.node}",
        f'#!define DMQ_SERVER_ADDRESS "{c.dmq_uri(c.address)}"',
        f'#!define DMQ_SERVER_SOCKET "udp:{address}:{c.dmq_port}"',
        # one notification_address per peer (a multi-line define, as METRICS_DECLARATIONS)
        "#!define DMQ_NOTIFICATION_ADDRESSES " + " \\\n".join(notify),
        f'#!define HTABLE_CLUSTER "{CLUSTER_TABLE}=>size=4;"',
    ]
    if c.registrations == "dmq":
        lines += [
            "#!define WITH_DMQ_USRLOC",
            f"#!define DMQ_USRLOC_SYNC {int(c.sync)}",
            f"#!define DMQ_USRLOC_BATCH_MSG_CONTACTS {c.sync_contacts_per_message}",
            f"#!define DMQ_USRLOC_BATCH_SIZE {c.sync_batch}",
            f"#!define DMQ_USRLOC_BATCH_USLEEP {c.sync_pause_ms * 1000}",
        ]
    if c.share_bans:
        lines.append("#!define WITH_SHARED_BANS")
    return lines
