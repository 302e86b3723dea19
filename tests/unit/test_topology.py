"""Topology hiding (kemi/topology/): its decisions as plain Python, the Call-ID mask, its settings,
and its steps in the routes on the fake KSR (both Kamailio API snapshots: KEMI_KAMAILIO_VERSION)."""
from __future__ import annotations

import re

import pytest

from kemi.names import AVP_GATEWAY_SET, AVP_INGRESS, FLT_HIDDEN
from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi.testing.fake_ksr import FakeKSR, SipMessage
from kemi.testing.helpers import TEST_ROUTE_SECRET, FakeDids, FakeSubscribers, make_router, signed_route
from kemi.topology.callid import MAX_CALL_ID, MAX_MASKED, PREFIX, CallIdMask
from kemi.topology.decisions import call_hidden, redirect_contacts, topos_leaves_alone, uri_on_host
from kemi.topology.part import NoTopology, Topology

# --- which calls are hidden --------------------------------------------------------------------

PUBLIC = frozenset({"public"})


@pytest.mark.parametrize("ingress, egress, hiding, everything, hidden", [
    ("private", "public", PUBLIC, False, True),      # leaves on the hiding side
    ("public", "private", PUBLIC, False, True),      # comes from it
    ("public", "public", PUBLIC, False, True),       # both legs there
    ("private", "private", PUBLIC, False, False),    # never touches it: passes
    ("private", None, PUBLIC, False, True),          # leaves where the kernel routes it: may be public
    ("private", "private", frozenset(), False, False),
    (None, None, frozenset(), True, True),           # the registrar with topology.registrar
    ("private", "private", frozenset(), True, True), # both SBC sides hide
])
def test_which_calls_are_hidden(ingress, egress, hiding, everything, hidden):
    assert call_hidden(ingress, egress, hiding, everything) is hidden


@pytest.mark.parametrize("record_routes, leave_alone", [
    (None, False),                        # no Record-Route: tm's CANCEL/ACK, a MESSAGE: topos decides
    ("", False),
    ("<sip:203.0.113.1:5060;r2=on;lr;kd=0123;kth>, <sip:198.51.100.1:5060;r2=on;lr;kd=0123;kth>", False),
    ("<sip:198.51.100.1:5060;lr;kd=0123>", True),                              # a passing call
    ("<sip:pbx.example.com;lr>, <sip:198.51.100.1;lr;ftag=x;kth>", False),      # ours is not the first
    ("<sip:198.51.100.1;lr;kthx=1>", True),                                     # another parameter
    ("<sip:198.51.100.1;lr;KTH>", False),
])
def test_what_topos_leaves_alone(record_routes, leave_alone):
    assert topos_leaves_alone(record_routes) is leave_alone


@pytest.mark.parametrize("uri, expected", [
    ("sip:2001@198.51.100.10:5060;transport=udp", "sip:2001@203.0.113.1"),
    ("sip:+15551234@198.51.100.10;user=phone", "sip:+15551234@203.0.113.1;user=phone"),
    ("SIPS:alice@pbx.internal", "sips:alice@203.0.113.1"),
    ("sip:198.51.100.10", "sip:203.0.113.1"),
    ("sip:anonymous@anonymous.invalid", "sip:anonymous@anonymous.invalid"),
    ("tel:+15551234", "tel:+15551234"),
])
def test_from_and_to_name_the_sbc(uri, expected):
    assert uri_on_host(uri, "203.0.113.1") == expected


def test_redirect_contacts_keep_the_number_on_the_sbc():
    contacts = redirect_contacts(['"Sales" <sip:4711@198.51.100.40:5060;transport=udp>;q=0.5, '
                                  '<sip:198.51.100.41>', "sip:4712@198.51.100.42;expires=60",
                                  "<sip:4711@198.51.100.43>"], "203.0.113.1")
    assert contacts == ["<sip:4711@203.0.113.1>", "<sip:4712@203.0.113.1>"]
    assert redirect_contacts(["<sip:198.51.100.41>"], "203.0.113.1") == []
    assert redirect_contacts([""], "203.0.113.1") == []


# --- the Call-ID mask --------------------------------------------------------------------------

MASK = CallIdMask(TEST_ROUTE_SECRET)
# RFC 3261 word characters (Call-ID = word ["@" word])
WORD = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+$")


@pytest.mark.parametrize("call_id", ["1-4711@198.51.100.10", "a84b4c76e66710", "x" * MAX_CALL_ID,
                                     "%f0%9f@[2001:db8::1]", "ünïcode@pbx"])
def test_mask_round_trip(call_id):
    masked = MASK.mask(call_id)
    assert masked.startswith(PREFIX) and WORD.match(masked) and len(masked) <= MAX_MASKED
    assert call_id not in masked and "198.51.100" not in masked
    assert MASK.mask(call_id) == masked                   # deterministic: every message of the dialog
    assert MASK.unmask(masked) == call_id
    assert CallIdMask(TEST_ROUTE_SECRET).unmask(masked) == call_id   # another process, node or run


def test_mask_refuses_what_it_cannot_carry():
    assert not MASK.can_mask("") and not MASK.can_mask("x" * (MAX_CALL_ID + 1))
    with pytest.raises(ValueError):
        MASK.mask("x" * (MAX_CALL_ID + 1))


def test_unmask_takes_only_its_own_masks():
    masked = MASK.mask("1-4711@198.51.100.10")
    assert CallIdMask("another-secret-0123456789").unmask(masked) is None
    flipped = masked[:-3] + ("A" if masked[-3] != "A" else "B") + masked[-2:]
    assert MASK.unmask(flipped) is None                   # a changed character fails the tag
    assert MASK.unmask("1-4711@198.51.100.10") is None
    assert MASK.unmask(PREFIX) is None and MASK.unmask(PREFIX + "!!") is None
    assert MASK.unmask(PREFIX + "AAAA") is None           # shorter than a tag


# --- settings ---------------------------------------------------------------------------------

SBC = {
    "sip": {"domain": "sbc.example.test"},
    "security": {"route_secret": TEST_ROUTE_SECRET},
    "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                           {"name": "private", "address": "198.51.100.1"}]}},
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                       "gateways": ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"], "hide_topology": True},
            "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                        "gateways": ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]}},
}


def tables(**changes) -> dict:
    out = {t: dict(v) for t, v in SBC.items()}
    out["sbc"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SBC["sbc"].items()}
    for key, value in changes.items():
        *path, last = key.split("__")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def topology_lines(raw: dict) -> list[str]:
    return [line for line in render_kamailio_defines(parse_settings(raw)).splitlines() if "TOPO" in line]


def test_off_by_default_nothing_rendered_and_no_part():
    raw = tables(sbc__public={**SBC["sbc"]["public"], "hide_topology": False})
    assert topology_lines(raw) == []
    assert topology_lines({}) == []
    router = make_router(FakeKSR(), {})
    assert isinstance(router.topology, NoTopology)


def test_one_hiding_side_renders_topos_with_the_event_callback():
    assert topology_lines(tables()) == ["#!define WITH_TOPOLOGY", "#!define TOPOS_DIALOG_EXPIRE 10800",
                                        "#!define TOPOS_BRANCH_EXPIRE 180",
                                        '#!define TOPOS_EVENT_CALLBACK "ksr_topos_event"']


def test_both_sides_or_the_registrar_hide_everything_without_the_callback():
    both = tables(sbc__private={**SBC["sbc"]["private"], "hide_topology": True})
    assert topology_lines(both)[0] == "#!define WITH_TOPOLOGY" and len(topology_lines(both)) == 3
    registrar = {"security": {"route_secret": TEST_ROUTE_SECRET}, "topology": {"registrar": True}}
    assert len(topology_lines(registrar)) == 3


@pytest.mark.parametrize("raw, key, words", [
    (tables(media={"enabled": False}), "sbc.public.hide_topology", "needs media anchoring"),
    (tables(security={"route_secret": ""}), "security.route_secret", "needs a fixed secret"),
    ({"topology": {"registrar": True}, "media": {"enabled": False},
      "security": {"route_secret": TEST_ROUTE_SECRET}}, "topology.registrar", "needs media anchoring"),
    (tables(topology={"registrar": True}), "topology.registrar", "is for the registrar"),
    (tables(topology={"dialog_expire": 60}), "topology.dialog_expire", "out of range"),
    (tables(topology={"branch_expire": 100}), "topology.branch_expire", "out of range"),
    (tables(records={"enabled": True}), "sbc.public.hide_topology", "cannot be used with records.enabled yet"),
])
def test_settings_errors_name_the_key_and_the_fix(raw, key, words):
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw)
    text = str(caught.value)
    assert f"'{key}'" in text and words in text


def test_records_alone_or_hiding_alone_are_accepted():
    """The control of the records refusal: each without the other passes."""
    parse_settings(tables())
    parse_settings(tables(records={"enabled": True}, sbc__public={**SBC["sbc"]["public"], "hide_topology": False}))


def test_a_cluster_secret_keys_the_mask_too():
    raw = tables(security={"route_secret": ""})
    raw["cluster"] = {"enabled": True, "node": 1, "address": "192.0.2.21", "secret": "c" * 32,
                      "peers": ["192.0.2.22"]}
    try:
        parse_settings(raw)
    except SettingsError as exc:                      # other cluster keys may complain; not ours
        assert "security.route_secret" not in str(exc), exc


# --- the routes on the fake KSR ----------------------------------------------------------------

SETTINGS = parse_settings(tables())
PUB_GW = ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]
PRIV_GW = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
CALLER_CALL_ID = "1-4711@198.51.100.10"


class Storage:
    def __init__(self, problem=None):
        self.asked, self.down = 0, problem

    def problem(self):
        self.asked += 1
        return self.down

    def close(self):
        pass


def ksr_for(message: SipMessage) -> FakeKSR:
    ksr = FakeKSR(message, local_addresses=("203.0.113.1", "198.51.100.1"),
                  local_domains=("203.0.113.1", "198.51.100.1", "sbc.example.test"))
    ksr.gateways = {1: list(PUB_GW), 2: list(PRIV_GW)}
    ksr.gateway_sockets = {**{u: "public" for u in PUB_GW}, **{u: "private" for u in PRIV_GW}}
    return ksr


def router_for(ksr, settings=SETTINGS, storage=None):
    router = make_router(ksr, settings, FakeSubscribers(("3001", "3002")), dids=FakeDids())
    if isinstance(router.topology, Topology):
        router.topology.storage = storage or Storage()
    return router


def private_gateway_invite(call_id: str = CALLER_CALL_ID) -> SipMessage:
    return SipMessage(method="INVITE", ruri="sip:004930123@198.51.100.1", source=("198.51.100.10", 5060),
                      socket_name="private", received_on="udp:198.51.100.1:5060", call_id=call_id,
                      from_uri="sip:15559990001@198.51.100.10", to_uri="sip:004930123@198.51.100.1",
                      body="v=0\r\n", headers={"Content-Type": "application/sdp", "Call-ID": call_id})


def test_a_new_call_to_the_hiding_side_is_hidden():
    ksr = ksr_for(private_gateway_invite())
    storage = Storage()
    router_for(ksr, storage=storage).ksr_request_route(None)
    assert storage.asked == 1
    assert ksr.relayed and ksr.relayed[0]["socket"] == "public"
    assert (";kth",) in ksr.calls_to("rr.add_rr_param")
    assert ksr.calls_to("uac.uac_replace_from_uri") == [("sip:15559990001@203.0.113.1",)]
    assert ksr.calls_to("uac.uac_replace_to_uri") == [("sip:004930123@203.0.113.1",)]
    assert ksr.relayed[0]["headers"]["Call-ID"] == MASK.mask(CALLER_CALL_ID)
    assert FLT_HIDDEN in ksr.flags
    assert ksr.tm_routes == {"failure_route": "ksr_failure_manage", "onreply_route": "ksr_onreply_manage",
                             "branch_route": "ksr_branch_manage"}
    assert CALLER_CALL_ID in ksr.rtpengine_sessions        # rtpengine knows the call by the caller's Call-ID


def test_a_call_between_non_hiding_sides_is_left_alone():
    message = SipMessage(method="INVITE", ruri="sip:3002@sbc.example.test", source=("198.51.100.30", 5060),
                         socket_name="private", received_on="udp:198.51.100.1:5060",
                         from_uri="sip:3001@sbc.example.test", headers={"Proxy-Authorization": "Digest ..."})
    ksr = ksr_for(message)
    ksr.locations["3002"] = ["sip:3002@198.51.100.31:5060"]
    storage = Storage()
    ksr.results["kx.get_send_sock_name"] = "private"
    router_for(ksr, storage=storage).ksr_request_route(None)
    assert ksr.relayed and storage.asked == 0
    assert (";kth",) not in ksr.calls_to("rr.add_rr_param") and not ksr.called("uac.uac_replace_from_uri")
    assert not ksr.called("hdr.append") and FLT_HIDDEN not in ksr.flags


def test_storage_down_refuses_the_new_call_with_503_and_one_line():
    ksr = ksr_for(private_gateway_invite())
    router_for(ksr, storage=Storage("cannot connect to MySQL: (2002, ...)")).ksr_request_route(None)
    assert ksr.replies == [(503, "Service Unavailable")] and not ksr.relayed
    errors = [text for level, text in ksr.logs if level == "err"]
    assert len(errors) == 1 and "storage unavailable (cannot connect to MySQL" in errors[0]
    assert CALLER_CALL_ID in errors[0]
    assert not ksr.called("uac.uac_replace_from_uri") and not ksr.called("hdr.append")


def test_storage_down_is_counted():
    raw = tables(metrics={"enabled": True})
    ksr = ksr_for(private_gateway_invite())
    router_for(ksr, parse_settings(raw), storage=Storage("down")).ksr_request_route(None)
    assert ksr.counter("kemi_topology_calls_total", "storage_down") == 1
    assert ksr.counter("kemi_replies_503_total", "topology_storage") == 1
    ksr = ksr_for(private_gateway_invite())
    router_for(ksr, parse_settings(raw)).ksr_request_route(None)
    assert ksr.counter("kemi_topology_calls_total", "hidden") == 1


def test_a_call_id_too_long_to_mask_gets_400():
    long_id = "x" * (MAX_CALL_ID + 1)
    ksr = ksr_for(private_gateway_invite(call_id=long_id))
    router_for(ksr).ksr_request_route(None)
    assert ksr.replies == [(400, "Bad Request - Call-ID too long")] and not ksr.relayed


def far_side_bye() -> SipMessage:
    """The public callee's BYE: topos put back our Route; the wire has the masked Call-ID."""
    masked = MASK.mask(CALLER_CALL_ID)
    return SipMessage(method="BYE", ruri="sip:15559990001@198.51.100.10:5060", to_tag="caller-tag",
                      from_tag="callee-tag", call_id=masked, source=("203.0.113.11", 5060),
                      socket_name="public", received_on="udp:203.0.113.1:5060",
                      headers={"Call-ID": masked,
                               "Route": signed_route(CALLER_CALL_ID, host="203.0.113.1", extra=";r2=on;kth")})


def test_the_far_sides_request_goes_on_with_the_callers_call_id():
    ksr = ksr_for(far_side_bye())
    ksr.rtpengine_sessions.add(CALLER_CALL_ID)
    ksr.results["rr.loose_route"] = lambda k: (setattr(k, "send_socket", "private"), 1)[1]
    router_for(ksr).ksr_request_route(None)
    assert ksr.relayed, ksr.logs                          # the signature checked over the caller's Call-ID
    assert ksr.relayed[0]["headers"]["Call-ID"] == CALLER_CALL_ID
    assert ksr.calls_to("rtpengine.rtpengine_delete") == [(f"call-id={CALLER_CALL_ID}",)]
    assert CALLER_CALL_ID not in ksr.rtpengine_sessions
    assert ksr.tm_routes.get("onreply_route") == "ksr_onreply_manage" and FLT_HIDDEN in ksr.flags


def test_a_forged_mask_is_not_taken():
    message = far_side_bye()
    forged = message.call_id[:-2] + ("AA" if not message.call_id.endswith("AA") else "BB")
    message.call_id = forged
    message.set_header("Call-ID", forged)
    ksr = ksr_for(message)
    ksr.results["rr.loose_route"] = 1
    router_for(ksr).ksr_request_route(None)
    assert not ksr.relayed and ksr.replies == [(403, "Forbidden")]     # its Route was signed for another Call-ID


def test_the_callers_in_dialog_request_goes_out_masked():
    message = SipMessage(method="BYE", ruri="sip:btpsh-x@198.51.100.1", to_tag="callee-tag", from_tag="caller-tag",
                         call_id=CALLER_CALL_ID, source=("198.51.100.10", 5060), socket_name="private",
                         received_on="udp:198.51.100.1:5060",
                         headers={"Call-ID": CALLER_CALL_ID,
                                  "Route": signed_route(CALLER_CALL_ID, host="198.51.100.1", extra=";r2=on;kth")})
    ksr = ksr_for(message)
    ksr.results["rr.loose_route"] = lambda k: (setattr(k, "send_socket", "public"), 1)[1]
    router_for(ksr).ksr_request_route(None)
    assert ksr.relayed and ksr.relayed[0]["headers"]["Call-ID"] == MASK.mask(CALLER_CALL_ID)


def test_a_passing_dialogs_request_keeps_its_call_id():
    message = SipMessage(method="BYE", ruri="sip:x@198.51.100.31", to_tag="t", call_id=CALLER_CALL_ID,
                         source=("198.51.100.30", 5060), socket_name="private", received_on="udp:198.51.100.1:5060",
                         headers={"Call-ID": CALLER_CALL_ID,
                                  "Route": signed_route(CALLER_CALL_ID, host="198.51.100.1")})
    ksr = ksr_for(message)
    ksr.results["rr.loose_route"] = lambda k: (setattr(k, "send_socket", "private"), 1)[1]
    router_for(ksr).ksr_request_route(None)
    assert ksr.relayed and not ksr.called("hdr.append") and "onreply_route" not in ksr.tm_routes


def test_replies_are_flipped():
    masked = MASK.mask(CALLER_CALL_ID)
    # the far side's 200: back to the caller with its own Call-ID; rtpengine told the caller's
    reply = SipMessage(method="INVITE", status=200, reason="OK", call_id=masked, body="v=0\r\n",
                       headers={"Call-ID": masked, "Content-Type": "application/sdp"})
    ksr = ksr_for(reply)
    ksr.flags.add(FLT_HIDDEN)
    ksr.rtpengine_sessions.add(CALLER_CALL_ID)
    from kemi.names import FLT_SDP_OFFER
    ksr.flags.add(FLT_SDP_OFFER)
    router_for(ksr).ksr_onreply_manage(None)
    assert ksr.message.header("Call-ID") == CALLER_CALL_ID
    assert any(f"call-id={CALLER_CALL_ID}" in args[0] for args in ksr.calls_to("rtpengine.rtpengine_answer"))
    # the caller's side answering the far side's request: out masked
    ksr = ksr_for(SipMessage(method="BYE", status=200, reason="OK", call_id=CALLER_CALL_ID,
                             headers={"Call-ID": CALLER_CALL_ID}))
    ksr.flags.add(FLT_HIDDEN)
    router_for(ksr).ksr_onreply_manage(None)
    assert ksr.message.header("Call-ID") == masked
    # a reply of a passing call: untouched
    ksr = ksr_for(SipMessage(method="INVITE", status=180, reason="Ringing", headers={"Call-ID": "c@x"},
                             call_id="c@x"))
    router_for(ksr).ksr_onreply_manage(None)
    assert not ksr.called("hdr.append")


def test_a_redirect_of_a_hidden_call_names_the_sbc():
    ksr = ksr_for(private_gateway_invite())
    ksr.flags.add(FLT_HIDDEN)
    ksr.t_reply_code = 302
    ksr.pvs.update({AVP_INGRESS: "public", "$T_reply_reason": "Moved Temporarily",
                    "$T_rpl($hdr(Contact))": "<sip:4711@198.51.100.40:5060>, <sip:198.51.100.41>"})
    ksr.results["tm.t_is_canceled"] = -1
    router_for(ksr).ksr_failure_manage(None)
    assert ksr.calls_to("hdr.append_to_reply") == [("Contact: <sip:4711@203.0.113.1>\r\n",)]
    assert ksr.replies == [(302, "Moved Temporarily")]
    # nothing usable: 480
    ksr = ksr_for(private_gateway_invite())
    ksr.flags.add(FLT_HIDDEN)
    ksr.t_reply_code = 301
    ksr.pvs.update({AVP_INGRESS: "public", "$T_rpl($hdr(Contact))": "<sip:198.51.100.41>"})
    router_for(ksr).ksr_failure_manage(None)
    assert ksr.replies == [(480, "Temporarily Unavailable")] and not ksr.called("hdr.append_to_reply")


def test_a_redirect_of_a_passing_call_is_relayed_as_it_came():
    ksr = ksr_for(private_gateway_invite())
    ksr.t_reply_code = 302
    router_for(ksr).ksr_failure_manage(None)
    assert ksr.replies == [] and not ksr.called("hdr.append_to_reply")


def test_each_branch_of_a_hidden_gateway_call_names_its_gateway():
    ksr = ksr_for(private_gateway_invite())
    ksr.flags.add(FLT_HIDDEN)
    ksr.pvs.update({AVP_GATEWAY_SET: 1, "$dd": "203.0.113.11", "$dp": 5080})
    router_for(ksr).ksr_branch_manage(None)
    assert ksr.calls_to("sethost") == [("203.0.113.11",)]
    assert ("$rp", 5080) in ksr.calls_to("pv.seti")
    ksr = ksr_for(private_gateway_invite())        # not hidden: R-URI untouched
    ksr.pvs.update({AVP_GATEWAY_SET: 1, "$dd": "203.0.113.11"})
    router_for(ksr).ksr_branch_manage(None)
    assert not ksr.called("sethost")


@pytest.mark.parametrize("record_routes, dropped", [
    ("<sip:198.51.100.1:5060;lr;kd=01>", True),
    ("<sip:198.51.100.1:5060;lr;kd=01;kth>", False),
    (None, False),
])
def test_the_topos_event_callback(record_routes, dropped):
    ksr = ksr_for(SipMessage())
    if record_routes is not None:
        ksr.pvs["$(hdr(Record-Route)[*])"] = record_routes
    router = router_for(ksr)
    assert router.ksr_topos_event(None, "topos:msg-sending") == 1
    assert ksr.dropped is dropped


def test_the_topos_event_callback_never_raises():
    ksr = ksr_for(SipMessage())
    ksr.results["pv.gete"] = lambda k, name: (_ for _ in ()).throw(RuntimeError("boom"))
    assert router_for(ksr).ksr_topos_event(None, "topos:msg-sending") == 1
    assert not ksr.dropped and "the message is hidden" in ksr.log_text("err")


def test_the_registrar_hides_every_call_and_keeps_from_and_to():
    settings = parse_settings({"security": {"route_secret": TEST_ROUTE_SECRET}, "topology": {"registrar": True}})
    message = SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", from_uri="sip:2002@127.0.0.1",
                         headers={"Proxy-Authorization": "Digest ...", "Call-ID": "c1@192.0.2.10"},
                         call_id="c1@192.0.2.10")
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    router = router_for(ksr, settings)
    router.ksr_request_route(None)
    assert ksr.relayed and ksr.relayed[0]["headers"]["Call-ID"] == MASK.mask("c1@192.0.2.10")
    assert (";kth",) in ksr.calls_to("rr.add_rr_param")
    assert not ksr.called("uac.uac_replace_from_uri")
