"""Cluster decisions as plain functions (no KSR): which KDMQ requests a node takes, the
contact-count exchange a starting node uses, and when its location set is complete.

A node in "dmq" mode gets its location set from its peers (dmq_usrloc's sync at start),
but dmq_usrloc says nothing when a sync is over, and a peer with no contacts sends nothing
at all. So the routing asks: it broadcasts "count?" on its own DMQ channel (names.CLUSTER_CHANNEL),
each peer answers "count=N" (its usrloc contacts), and the node calls its location set
complete once it holds at least as many as the fullest peer that answered, or when dmq
lists no active peer SETTLE seconds after the start (it is alone), or after
cluster.sync_wait seconds in any case. Until then a call for a subscriber without contact
gets 503 with Retry-After, not 480: another node (or the same one a moment later) can place it.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

COUNT_QUESTION = "count?"
_COUNT_ANSWER = re.compile(r"^count=(\d{1,9})\s*$")
SETTLE = 2.0                 # seconds after the start for dmq to learn which peers are up
ASK_EVERY = 1.0              # seconds between two questions while not complete
RETRY_AFTER = 1              # Retry-After (seconds) of the 503 while the set is incomplete


def normalized(address: str) -> str:
    """An address as Kamailio prints $si (IPv6 compressed, no brackets)."""
    return str(ipaddress.ip_address(address.strip("[]")))


def peer_set(addresses: Iterable[str]) -> frozenset[str]:
    return frozenset(normalized(a) for a in addresses)


def is_peer(source_ip: str, peers: frozenset[str]) -> bool:
    if source_ip in peers:
        return True
    if ":" not in source_ip:
        return False
    try:
        return normalized(source_ip) in peers
    except ValueError:
        return False


def count_answer(contacts: int) -> str:
    return f"count={max(int(contacts), 0)}"


def parse_count(body: str) -> int | None:
    """A peer's "count=N" answer, or None for anything else."""
    m = _COUNT_ANSWER.match(body or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class SyncView:
    """What a node knows about its location set at one moment (plain numbers)."""
    now: float                       # seconds (any clock the other times share)
    started: float                   # when Kamailio started
    sync_wait: int                   # cluster.sync_wait
    local_contacts: int
    active_peers: frozenset[str]     # the peers dmq lists as active (this node excluded)
    peer_counts: Mapping[str, int]   # peer address -> the latest count it answered


def location_complete(v: SyncView) -> bool:
    age = v.now - v.started
    if v.sync_wait <= 0 or age >= v.sync_wait:
        return True
    if age < SETTLE:
        return False
    if not v.active_peers:
        return True                  # alone: there is nobody to get contacts from
    answered = [c for p, c in v.peer_counts.items() if p in v.active_peers]
    return bool(answered) and v.local_contacts >= max(answered)


def active_peers(list_nodes_result, peers: frozenset[str]) -> frozenset[str]:
    """The peers (of `peers`) that dmq's dmq.list_nodes result (parsed JSON) lists as active."""
    nodes = list_nodes_result.get("result", []) if isinstance(list_nodes_result, dict) else []
    out = set()
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or node.get("status") != "active" or node.get("local"):
            continue
        for key in ("resolved_ip", "host"):
            try:
                address = normalized(str(node.get(key, "")))
            except ValueError:
                continue
            if address in peers:
                out.add(address)
                break
    return frozenset(out)


def should_ask(now: float, last_asked: float | None) -> bool:
    return last_asked is None or now - last_asked >= ASK_EVERY
