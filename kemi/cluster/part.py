"""The cluster part: KDMQ from peers, and whether this node's location set is complete.

takes              first step of request_route: a request on the DMQ socket is a KDMQ from
                   a peer (handed to dmq, or the routing's own contact-count channel) or is
                   dropped silently; anything else goes on
location_complete  route[LOCATION] asks it before answering 480: a node still receiving
                   its location set from its peers answers 503 + Retry-After instead

State shared by the workers lives in the CLUSTER_TABLE htable (this node only, never
replicated). The decisions are plain functions in kemi/cluster/sync.py. NoCluster: a single node.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from kemi import sip
from kemi.cluster import sync
from kemi.message import Message
from kemi.names import CLUSTER_CHANNEL, CLUSTER_TABLE, DMQ_SOCKET_NAME, DONE, NEXT
from kemi.observe.metrics import DROP_NOT_A_PEER
from kemi.observe.part import Observer

if TYPE_CHECKING:
    from kemi.settings import Settings

# htable keys (CLUSTER_TABLE); times in ms since Kamailio started (htable integers are 32-bit)
COMPLETE = "complete"            # 1 once the location set is complete (a latch)
ASKED = "asked"                  # when "count?" last went out
PEER_COUNT = "count:"            # + peer address: the contacts it said it holds
STARTED_PV = "$Tb"               # Kamailio's start time (s since the epoch)
# usrloc's contacts in the location table (stats_name_separator "_", Kamailio's default)
CONTACTS_PV = "$stat(location_contacts)"
LIST_NODES = json.dumps({"jsonrpc": "2.0", "method": "dmq.list_nodes", "id": 1})


class NoCluster:
    """One node: no DMQ socket, the location set is always complete."""
    secret = ""

    def takes(self, msg: Message) -> bool:
        return NEXT

    def location_complete(self) -> bool:
        return True


class Cluster(NoCluster):
    def __init__(self, ksr, settings: Settings, observe: Observer):
        c = settings.cluster
        self.ksr, self.observe = ksr, observe
        self.secret = c.secret
        self.peers = sync.peer_set(c.peers)
        self.peer_uris = {sync.normalized(p): c.dmq_uri(p) for p in c.peers}
        # "database" mode: usrloc reads the shared database, nothing to wait for
        self.sync_wait = c.sync_wait if c.registrations == "dmq" else 0

    # --- request_route, first step --------------------------------------------------------

    def takes(self, msg: Message) -> bool:
        if msg.received_socket_name != DMQ_SOCKET_NAME:
            return NEXT
        if msg.method != "KDMQ" or not sync.is_peer(msg.source_ip, self.peers):
            self.ksr.info(f"kemi: cluster: request on the DMQ socket from a stranger dropped: {msg.describe()}\n")
            self.observe.note_drop(DROP_NOT_A_PEER)
            return DONE
        if msg.ruri_user == CLUSTER_CHANNEL:
            self.own_channel(msg)
        else:
            self.ksr.dmq.handle_message()        # usrloc, htable, notification_peer
            # peers talk to a node that joins: a good moment to ask them for their counts
            self.location_complete()
        return DONE

    def own_channel(self, msg: Message) -> None:
        """A peer asks how many contacts we hold, or answers our question."""
        ksr, body = self.ksr, msg.pv("$rb") or ""
        ksr.sl.send_reply(sip.OK_KEEPALIVE.code, sip.OK_KEEPALIVE.reason)
        if body.strip() == sync.COUNT_QUESTION:
            uri = self.peer_uris.get(sync.normalized(msg.source_ip))
            if uri:
                ksr.dmq.send_message(CLUSTER_CHANNEL, uri, sync.count_answer(self.local_contacts()), "text/plain")
            return
        count = sync.parse_count(body)
        if count is not None:
            ksr.htable.sht_seti(CLUSTER_TABLE, PEER_COUNT + sync.normalized(msg.source_ip), count)

    # --- route[LOCATION]: may this node say "not registered"? -----------------------------

    def location_complete(self) -> bool:
        ksr = self.ksr
        if self.sync_wait <= 0 or ksr.htable.sht_get(CLUSTER_TABLE, COMPLETE) == 1:
            return True
        started = float(ksr.pv.get(STARTED_PV) or 0)
        now = time.time()
        counts = {}
        for peer in self.peers:
            value = ksr.htable.sht_get(CLUSTER_TABLE, PEER_COUNT + peer)
            if isinstance(value, int):
                counts[peer] = value
        view = sync.SyncView(now=now, started=started, sync_wait=self.sync_wait,
                                local_contacts=self.local_contacts(), active_peers=self.active_peers(),
                                peer_counts=counts)
        if sync.location_complete(view):
            ksr.htable.sht_seti(CLUSTER_TABLE, COMPLETE, 1)
            ksr.notice(f"kemi: cluster: location set complete after {now - started:.1f}s: "
                       f"{view.local_contacts} contacts, active peers said {counts or 'nothing'}\n")
            return True
        asked = ksr.htable.sht_get(CLUSTER_TABLE, ASKED)
        if view.active_peers and sync.should_ask(now - started, asked / 1000 if isinstance(asked, int) else None):
            ksr.htable.sht_seti(CLUSTER_TABLE, ASKED, int((now - started) * 1000))
            ksr.dmq.bcast_message(CLUSTER_CHANNEL, sync.COUNT_QUESTION, "text/plain")
        return False

    def active_peers(self) -> frozenset[str]:
        """The peers dmq lists as active (its dmq.list_nodes, through jsonrpcs)."""
        ksr = self.ksr
        if ksr.jsonrpcs.exec(LIST_NODES) < 0:
            return frozenset()
        try:
            return sync.active_peers(json.loads(ksr.jsonrpcs.response() or "{}"), self.peers)
        except ValueError:
            return frozenset()

    def local_contacts(self) -> int:
        value = self.ksr.pv.get(CONTACTS_PV)
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0
