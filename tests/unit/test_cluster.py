"""[cluster]: settings, rendering, the sync decisions and the cluster part (fake KSR)."""
import json
import time

import pytest

from kemi.cluster.sync import (SETTLE, SyncView, active_peers, count_answer, is_peer, location_complete,
                          parse_count, peer_set, should_ask)
from kemi.names import CLUSTER_CHANNEL, CLUSTER_TABLE, DMQ_SOCKET_NAME
from kemi.cluster.part import COMPLETE, PEER_COUNT, Cluster, NoCluster
from kemi.security import dialog
from kemi.settings import SettingsError, render_kamailio_defines
from kemi.settings import parse_settings
from kemi.testing import FakeKSR, SipMessage, make_router

SECRET = "0123456789abcdef-cluster"
NODES = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]


def cluster_raw(**cluster) -> dict:
    return {"sip": {"listen": ["udp:192.0.2.12:5060"], "domain": "192.0.2.10"},
            "security": {"route_secret": ""},
            "cluster": {"enabled": True, "nodes": NODES, "node": 2, "secret": SECRET, **cluster}}


# --- settings -----------------------------------------------------------------------------

def test_off_by_default_and_nothing_rendered():
    s = parse_settings({})
    assert not s.cluster.enabled
    text = render_kamailio_defines(s)
    assert "WITH_CLUSTER" not in text and "dmqreplicate" not in text and "server_id" not in text


def test_rendered_for_a_dmq_node():
    s = parse_settings(cluster_raw(floating_address="192.0.2.10"))
    text = render_kamailio_defines(s)
    assert "#!define WITH_CLUSTER" in text and "#!define WITH_DMQ_USRLOC" in text
    assert "#!define SERVER_ID 2" in text
    assert '#!define DMQ_SERVER_ADDRESS "sip:192.0.2.12:5090"' in text
    assert 'notification_address", "sip:192.0.2.11:5090"' in text
    assert 'notification_address", "sip:192.0.2.13:5090"' in text
    assert 'notification_address", "sip:192.0.2.12:5090"' not in text     # never itself
    assert "#!define USRLOC_DB_MODE 0" in text                              # memory, replicated
    assert "USRLOC_DB_ONLY" not in text                                     # no contact in the DB
    assert "ipban=>size=10;autoexpire=600;dmqreplicate=1;" in text
    assert "#!define WITH_SHARED_BANS" in text
    assert 'listen=udp:192.0.2.10:5060' in text                             # the floating address
    assert 'listen=udp:192.0.2.12:5090 name "dmq"' in text


def test_rendered_for_a_database_node_without_shared_bans():
    text = render_kamailio_defines(parse_settings(cluster_raw(registrations="database", share_bans=False)))
    assert "#!define USRLOC_DB_MODE 3" in text and "WITH_DMQ_USRLOC" not in text
    # a contact's INSERT re-run after a Galera server loss is an upsert (db_insert_update, issue 22)
    assert "#!define USRLOC_DB_ONLY" in text
    assert "dmqreplicate" not in text and "WITH_SHARED_BANS" not in text


@pytest.mark.parametrize("change, key", [
    ({"nodes": ["192.0.2.11"]}, "cluster.nodes"),
    ({"nodes": ["192.0.2.11", "node-b"]}, "cluster.nodes"),
    ({"nodes": ["192.0.2.11", "192.0.2.11"], "node": 1}, "cluster.nodes"),
    ({"node": 4}, "cluster.node"),
    ({"secret": "short"}, "cluster.secret"),
    ({"registrations": "redis"}, "cluster.registrations"),
    ({"floating_address": "192.0.2.11"}, "cluster.floating_address"),
    ({"dmq_port": 5060}, "cluster.dmq_port"),
    ({"sync_contacts_per_message": 151}, "cluster.sync_contacts_per_message"),
])
def test_bad_cluster_settings_name_the_key(change, key):
    with pytest.raises(SettingsError) as err:
        parse_settings(cluster_raw(**change))
    assert key in [p.key for p in err.value.problems]


def test_one_secret_for_the_cluster():
    raw = cluster_raw()
    raw["security"]["route_secret"] = "another-secret-of-16+"
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert err.value.key == "security.route_secret"


# --- decisions ----------------------------------------------------------------------------

def view(**kw) -> SyncView:
    base = dict(now=100.0, started=100.0 - SETTLE - 1, sync_wait=30, local_contacts=0,
                active_peers=frozenset({"192.0.2.11"}), peer_counts={})
    return SyncView(**{**base, **kw})


def test_location_complete():
    assert not location_complete(view())                                       # asked, no answer yet
    assert not location_complete(view(peer_counts={"192.0.2.11": 5}, local_contacts=4))
    assert location_complete(view(peer_counts={"192.0.2.11": 5}, local_contacts=5))
    assert location_complete(view(peer_counts={"192.0.2.11": 0}))               # an empty cluster
    assert location_complete(view(active_peers=frozenset()))                    # alone
    assert not location_complete(view(active_peers=frozenset(), started=99.5))  # too early to tell
    assert location_complete(view(started=60.0))                                # sync_wait is over
    assert location_complete(view(sync_wait=0))                                 # no waiting at all
    # an answer from a peer dmq no longer lists as active does not count
    assert not location_complete(view(peer_counts={"192.0.2.13": 0}))


def test_count_messages_and_peers():
    assert parse_count(count_answer(10036)) == 10036
    assert parse_count("count=-1") is None and parse_count("hello") is None and parse_count("") is None
    peers = peer_set(["192.0.2.11", "2001:db8::1"])
    assert is_peer("192.0.2.11", peers) and is_peer("2001:db8:0::1", peers)
    assert not is_peer("192.0.2.99", peers) and not is_peer("junk:", peers)
    assert should_ask(10.0, None) and not should_ask(10.5, 10.0) and should_ask(11.0, 10.0)


def test_active_peers_from_dmq_list_nodes():
    result = {"result": [
        {"host": "192.0.2.11", "resolved_ip": "192.0.2.11", "status": "active", "local": 0},
        {"host": "192.0.2.13", "resolved_ip": "192.0.2.13", "status": "disabled", "local": 0},
        {"host": "192.0.2.12", "resolved_ip": "192.0.2.12", "status": "active", "local": 1},
    ]}
    assert active_peers(result, peer_set(["192.0.2.11", "192.0.2.13"])) == {"192.0.2.11"}
    assert active_peers({"error": {}}, peer_set(["192.0.2.11"])) == frozenset()


# --- the part, on the fake KSR ------------------------------------------------------------

def kdmq(user: str, source: str = "192.0.2.11", body: str = "", socket_name: str = DMQ_SOCKET_NAME) -> FakeKSR:
    return FakeKSR(SipMessage(method="KDMQ", ruri=f"sip:{user}@192.0.2.12:5090", body=body,
                              source=(source, 5090), received_on="udp:192.0.2.12:5090",
                              socket_name=socket_name), local_addresses=("192.0.2.12",))


def route(ksr: FakeKSR, **cluster):
    router = make_router(ksr, cluster_raw(**cluster))
    router.ksr_request_route(None)
    return router


def test_kdmq_from_a_peer_goes_to_dmq():
    ksr = kdmq("usrloc")
    ksr.htable[(CLUSTER_TABLE, COMPLETE)] = 1
    route(ksr)
    assert ksr.called("dmq.handle_message")
    assert not ksr.called("auth_db.auth_check") and not ksr.called("pike.pike_check_req")


def test_a_stranger_on_the_dmq_socket_is_dropped_silently():
    ksr = kdmq("usrloc", source="203.0.113.9")
    route(ksr)
    assert not ksr.called("dmq.handle_message") and ksr.replies == []


def test_peers_exchange_contact_counts():
    ksr = kdmq(CLUSTER_CHANNEL, body="count?")
    ksr.pvs["$stat(location_contacts)"] = 42
    route(ksr)
    assert ksr.replies == [(200, "OK")]
    assert ksr.calls_to("dmq.send_message") == [(CLUSTER_CHANNEL, "sip:192.0.2.11:5090", "count=42", "text/plain")]
    answer = kdmq(CLUSTER_CHANNEL, body="count=42")
    route(answer)
    assert answer.htable[(CLUSTER_TABLE, PEER_COUNT + "192.0.2.11")] == 42


def lookup_miss(ksr_setup=None) -> FakeKSR:
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@192.0.2.10",
                             headers={"Proxy-Authorization": 'Digest username="2002"'}),
                  local_addresses=("192.0.2.12",), local_domains=("192.0.2.10",))
    ksr.results["auth_db.auth_check"] = 1
    ksr.pvs["$Tb"] = int(time.time()) - 5
    ksr.results["jsonrpcs.response"] = json.dumps({"result": [
        {"host": "192.0.2.11", "resolved_ip": "192.0.2.11", "status": "active", "local": 0}]})
    if ksr_setup:
        ksr_setup(ksr)
    return ksr


def test_an_incomplete_location_set_answers_503_and_asks_the_peers():
    ksr = lookup_miss()
    route(ksr)
    assert ksr.replies == [(503, "Service Unavailable")]
    assert ksr.calls_to("hdr.append_to_reply") == [("Retry-After: 1\r\n",)]
    assert ksr.calls_to("dmq.bcast_message") == [(CLUSTER_CHANNEL, "count?", "text/plain")]


def test_a_complete_location_set_answers_480():
    def peers_answered(ksr):
        ksr.htable[(CLUSTER_TABLE, PEER_COUNT + "192.0.2.11")] = 3
        ksr.pvs["$stat(location_contacts)"] = 3
    ksr = lookup_miss(peers_answered)
    route(ksr)
    assert ksr.replies == [(480, "Temporarily Unavailable")]
    assert ksr.htable[(CLUSTER_TABLE, COMPLETE)] == 1


def test_database_mode_never_waits():
    ksr = lookup_miss()
    route(ksr, registrations="database")
    assert ksr.replies == [(480, "Temporarily Unavailable")]


def test_record_route_signed_with_the_cluster_secret():
    ksr = FakeKSR(SipMessage(method="INVITE", ruri="sip:2001@192.0.2.10", call_id="c-1",
                             headers={"Proxy-Authorization": 'Digest username="2002"'}),
                  local_addresses=("192.0.2.12",), local_domains=("192.0.2.10",))
    ksr.results["auth_db.auth_check"] = 1
    ksr.locations["2001"] = ["sip:2001@192.0.2.31:5060"]
    route(ksr)
    assert ksr.calls_to("rr.add_rr_param") == [(dialog.rr_param(SECRET, "c-1"),)]


def test_a_single_node_has_no_cluster_part():
    router = make_router(FakeKSR())
    assert isinstance(router.cluster, NoCluster) and not isinstance(router.cluster, Cluster)


def test_the_demo_cluster_settings_are_valid_and_render_keepalived(tmp_path):
    from kemi_tools import cluster as demo
    from kemi_tools.stack import keepalived
    for i in range(3):
        raw = demo.node_settings(i, "a" * 32, tmp_path / f"k{i + 1}")
        s = parse_settings({**raw, "security": {"route_secret": ""}})
        assert s.cluster.address == demo.NODES[i] and s.database.failover
        conf = keepalived.render(s)
        assert f"priority {keepalived.priority(i + 1)}" in conf and f"unicast_src_ip {demo.NODES[i]}" in conf
        assert all(f"        {p}\n" in conf for p in s.cluster.peers)
        assert f"{demo.FLOATING}/24 dev eth0" in conf
        assert "WITH_DB_CLUSTER" in render_kamailio_defines(s)


def test_every_keepalived_child_has_its_own_pid_file(tmp_path):
    """Several keepalived run on one host (one per node): a pid file at keepalived's default
    path (/run/...) is shared, and keepalived 2.3 exits at start when another holds it."""
    from kemi_tools.stack import keepalived
    argv = keepalived.argv(tmp_path / "keepalived.conf", tmp_path / "node1")
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--") and "pid=" in a}
    assert given == {"--pid", "--vrrp_pid", "--checkers_pid", "--bfd_pid"}
    assert all(a.split("=", 1)[1].startswith(str(tmp_path / "node1")) for a in argv if "pid=" in a)
