"""The dual-NIC SBC with an IPv6 public side and an IPv4 private side (issue 24): the checks
that run on IPv4 in test_sbc.py and test_sbc_media.py (direction, trust, gateways, media).

The same topology as tests/harness/sbc.py, with the public side on 2001:db8:113::/64 (the
SBC's public NIC 2001:db8:113::1, gateways ::10 and ::11, a host ::20 that is no gateway,
2001:db8:66::66 a source on no side) and the private side on 198.51.100.0/24. rtpengine
has one interface per side: public/2001:db8:113::1, private/198.51.100.1, so direction=
picks the family of each side. The SBC namespace forwards nothing: media crosses only if
rtpengine relays it.

Control: without rtpengine (media.enabled = false) the IPv6 gateway's SDP reaches the IPv4
side as it is, with an address no IPv4 gateway can send to.
"""
from __future__ import annotations

import collections

import pytest

from harness import media, netns
from harness.media import assert_sdp_on_rtpengine, sipp_messages, wait_until
from harness.sbc import (GATEWAY_PORT, IPV6_PUBLIC, PRIVATE_GATEWAYS, SBC_PORT, SBC_PRIVATE, SbcNetwork, gateway_uri,
                         send_raw)
from harness.sbc_media import NetnsCapture, SbcRtpengine, forwarding_enabled, sbc_media_tables
from test_sbc_media import call_across, measure

pytestmark = pytest.mark.e2e

PUBLIC = IPV6_PUBLIC.sbc
DIRECTIONS = ["public->private", "private->public"]


@pytest.fixture(scope="module")
def network(db, tmp_path_factory):
    assert netns.supported(), "the SBC tests need root and `ip netns`"
    net = SbcNetwork(tmp_path_factory.mktemp("sbc-ipv6"), public=IPV6_PUBLIC)
    yield net
    problems = net.close()
    assert not problems, problems


@pytest.fixture
def sbc(network, tmp_path):
    network.reset(tmp_path)
    yield network
    network.reset(tmp_path)


@pytest.fixture
def rtpe(sbc, tmp_path):
    engine = SbcRtpengine(sbc.sbc_ns, tmp_path / "rtpengine",
                          interfaces=[{"name": "public", "address": PUBLIC},
                                      {"name": "private", "address": SBC_PRIVATE}]).start()
    yield engine
    engine.stop()


def count(log: list[str], key: str) -> int:
    return sum(1 for line in log if line.startswith(key + "="))


def gateway_invites(sbc, gateway) -> int:
    sbc.stop_sipp(gateway)
    return count(gateway.wait().log, "invite")


# --- direction and trust ---------------------------------------------------------------------


def test_unknown_ipv6_source_gets_403(sbc):
    k = sbc.start_kamailio()
    gateway = sbc.gateway(sbc.private, 0)
    source = IPV6_PUBLIC.unknown
    invite = (f"INVITE sip:15550100@[{PUBLIC}]:{SBC_PORT} SIP/2.0\n"
              f"Via: SIP/2.0/UDP [{source}]:LOCALPORT;branch=z9hG4bK-unknown6;rport\n"
              f"Max-Forwards: 70\nFrom: <sip:mallory@[{source}]>;tag=u6\nTo: <sip:15550100@[{PUBLIC}]>\n"
              f"Call-ID: unknown-source-6\nCSeq: 1 INVITE\nContact: <sip:mallory@[{source}]:LOCALPORT>\n"
              f"Content-Length: 0\n\n")
    replies = send_raw(sbc.public.ns, source, PUBLIC, SBC_PORT, invite)
    assert replies and replies[-1].startswith("SIP/2.0 403 Forbidden"), replies
    assert f"source {source} is on no side" in k.log()
    assert gateway_invites(sbc, gateway) == 0


def test_public_ipv6_host_that_is_no_gateway_must_authenticate(sbc):
    sbc.start_kamailio()
    gateway = sbc.gateway(sbc.private, 0)
    call = sbc.trunk_call(sbc.public, "15550100", source=IPV6_PUBLIC.host).wait()
    assert call.finals == [407], call.stdout[-2000:]
    assert gateway_invites(sbc, gateway) == 0


# --- calls across the families, round-robin ----------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_calls_spread_over_the_other_sides_gateways_across_the_families(sbc, direction):
    ingress, egress = (sbc.public, sbc.private) if direction == "public->private" else (sbc.private, sbc.public)
    sbc.start_kamailio()
    gateways = [sbc.gateway(egress, i) for i in range(2)]
    call = sbc.trunk_call(ingress, "15550100", calls=4, rate=10, hold_ms=100).wait()
    assert call.rc == 0 and call.finals == [200] * 4 and call.values("bye") == ["200"] * 4, call.stdout[-3000:]
    answered = collections.Counter(call.values("answered_by"))
    hosts = [f"[{g}]" if ":" in g else g for g in egress.gateways]
    assert answered == {f"{h}:{GATEWAY_PORT}": 2 for h in hosts}, answered
    sbc.stop_sipp(gateways[0])
    invite = gateways[0].wait().received_requests("INVITE")[0]
    via = next(line for line in invite.splitlines() if line.lower().startswith("via:"))
    assert f"SIP/2.0/UDP {egress.domain}:{SBC_PORT}" in via, via        # the SBC's address on that side
    print(f"\n{direction}: {dict(answered)}")


# --- media across the families ------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_audio_video_cross_from_ipv6_to_ipv4_through_rtpengine(sbc, rtpe, tmp_path, direction):
    """Each side's SDP names rtpengine's address in ITS family (IPv6 public, IPv4 private);
    every RTP and RTCP packet each party sent reached the other, relayed by rtpengine."""
    k = sbc.start_kamailio(sbc_media_tables(rtpe, public_gateways=IPV6_PUBLIC.gateways))
    assert not forwarding_enabled(sbc.sbc_ns)
    sent = {"caller": media.write_call_pcaps(tmp_path / "caller", ssrc_base=0x6600),
            "callee": media.write_call_pcaps(tmp_path / "callee", ssrc_base=0x7600)}
    with NetnsCapture(sbc.sbc_ns) as capture:
        caller, callee = call_across(sbc, direction, "caller", tmp_path)
        assert wait_until(lambda: rtpe.ng.calls() == [], 3), rtpe.ng.calls()
    r, e = caller.result, callee.result
    assert r.rc == 0 and r.finals == [200] and e.rc == 0, r.stdout[-3000:] + e.stdout[-3000:]
    answer, = caller.received_sdps("SIP/2.0 200")
    reoffer, = caller.received_sdps("INVITE")
    offer, = callee.received_sdps("INVITE")
    reanswer, = callee.received_sdps("SIP/2.0 200")
    for sdp, party, who in ((answer, caller, "200 the caller got"), (reoffer, caller, "re-INVITE the caller got"),
                            (offer, callee, "INVITE the callee got"), (reanswer, callee, "200 the callee got")):
        assert_sdp_on_rtpengine(sdp, party.side.sbc_address, who)
        family = "IP6" if ":" in party.side.sbc_address else "IP4"
        assert all(f"IN {family} " in line for line in media.sdp_body(_raw(party, sdp)).splitlines()
                   if line.startswith(("o=", "c="))), who
    measured = measure(capture, caller, callee, reoffer, reanswer, sent, {"caller": False, "callee": False})
    print(f"\n{direction}: caller ({caller.side.sbc_address} side) c={answer.connection}, callee "
          f"({callee.side.sbc_address} side) c={offer.connection}; packets {measured}")
    assert "kemi: media:" not in k.log()


def _raw(party, sdp: media.Sdp) -> str:
    """The received message whose SDP is `sdp` (for its o=/c= lines as written)."""
    return next(m for m in sipp_messages(party.result) if media.parse_sdp(m) == sdp)


def test_control_without_rtpengine_the_ipv4_side_gets_an_ipv6_address(sbc, tmp_path):
    """media.enabled = false: the public IPv6 gateway's SDP reaches the private IPv4 gateway
    unchanged, naming an IPv6 address it has no route to: only rtpengine bridges the families."""
    sbc.start_kamailio({"media": {"enabled": False}, "sbc": {"probing_interval": 0},
                        "sbc.public": {"gateways": [gateway_uri(IPV6_PUBLIC.gateways[0])]},
                        "sbc.private": {"gateways": [gateway_uri(PRIVATE_GATEWAYS[0])]}})
    for party in ("caller", "callee"):
        media.write_call_pcaps(tmp_path / party, ssrc_base=0x8600)
    caller, callee = call_across(sbc, "public->private", "caller", tmp_path)
    offer, = callee.received_sdps("INVITE")
    assert offer.connection == caller.address and ":" in offer.connection, offer
    print(f"\nno rtpengine: the IPv4 gateway was offered c={offer.connection}")

