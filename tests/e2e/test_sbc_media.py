"""Media across the dual-NIC SBC: real Kamailio and rtpengine in the SBC namespace, SIPp
parties with audio and video in the public and private namespaces.

rtpengine runs with two interfaces, public/203.0.113.1 (pub0) and private/198.51.100.1
(priv0), its ng socket on the SBC namespace's loopback (tests/harness/sbc_media.py). The SBC
namespace does not forward IP: media gets from one side to the other only if rtpengine
relays it. Packets are counted by a kernel-filtered capture on the SBC's two NICs: into
rtpengine on the sender's side, out of rtpengine on the receiver's side.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from harness import media, netns, stack
from harness.media import assert_sdp_on_rtpengine, sdps, sipp_messages, wait_until
from harness.sbc import (GATEWAY_PORT, PRIVATE_GATEWAYS, PUBLIC_GATEWAYS, SBC_PRIVATE, SBC_PUBLIC,
                         TOLERATE_LATE_REPLIES, SbcNetwork)
from harness.sbc_media import NetnsCapture, SbcRtpengine, forwarding_enabled, sbc_media_tables
from harness.sipp import Sipp

# video RTP is on a party's media port + 2 (SIPp's [media_port+2]), RTCP one above RTP
MEDIA_OFFSETS = {"audio": 0, "video": 2}
# ms between starting the video and the BYE: the 1 s video pcap of BOTH sides has been sent
HOLD_MS = 1600
DIRECTIONS = ["public->private", "private->public"]
ENDERS = ["caller", "callee"]
NETWORK_OF = {SBC_PUBLIC: "203.0.113.", SBC_PRIVATE: "198.51.100."}


@pytest.fixture(scope="module")
def network(db, tmp_path_factory):
    assert netns.supported(), "the SBC tests need root and `ip netns`"
    net = SbcNetwork(tmp_path_factory.mktemp("sbc-media"))
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
    engine = SbcRtpengine(sbc.sbc_ns, tmp_path / "rtpengine").start()
    yield engine
    engine.stop()


def sides(sbc, direction: str):
    return (sbc.public, sbc.private) if direction == "public->private" else (sbc.private, sbc.public)


class Party:
    """One SIPp end of a call: its address, media port and what it received."""

    def __init__(self, side, address: str, sipp: Sipp, media_port: int):
        self.side, self.address, self.sipp, self.media_port = side, address, sipp, media_port
        self.result = None

    def wait(self):
        self.result = self.sipp.wait()
        return self.result

    def received_sdps(self, start: str) -> list[media.Sdp]:
        return sdps(sipp_messages(self.result), start)

    def sdp_bodies(self) -> list[str]:
        return [media.sdp_body(m) for m in sipp_messages(self.result) if media.parse_sdp(m)]


def media_party(sbc, side, scenario: str, address: str, workdir, *, ender: bool, media_attr: str = "sendrecv",
                **kw) -> Party:
    port = media.phone_media_port()
    sipp = Sipp(scenario, workdir, netns=side.ns.name, local_ip=address, timeout=30,
                keys={"media_attr": media_attr}, sets={"hold_ms": HOLD_MS, "i_end": int(ender)},
                extra=[*TOLERATE_LATE_REPLIES, "-mp", str(port), "-mi", address], **kw)
    sbc.sipps.append(sipp)
    return Party(side, address, sipp.start(), port)


def call_across(sbc, direction: str, ender: str, workdir, caller_attr="sendrecv", callee_attr="sendrecv"):
    """A public<->private call with audio and video: the callee (the egress side's gateway 1)
    re-INVITEs, both play RTP + RTCP, then `ender` hangs up. Returns (caller, callee)."""
    ingress, egress = sides(sbc, direction)
    callee = media_party(sbc, egress, "gw_media.xml", egress.gateways[0], workdir / "callee",
                         ender=ender == "callee", media_attr=callee_attr, local_port=GATEWAY_PORT, calls=1)
    caller = media_party(sbc, ingress, "trunk_media.xml", ingress.gateways[0], workdir / "caller",
                         ender=ender == "caller", media_attr=caller_attr, target=ingress.target,
                         local_port=stack.free_port(), calls=1,
                         rows=[f"15559990001;15550100;{ingress.domain}"])
    caller.wait()
    callee.wait()
    return caller, callee


def assert_sees_only_its_side(party: Party, who: str) -> None:
    """No SDP this party received names the other side's network (addresses in SDP only)."""
    other = NETWORK_OF[SBC_PRIVATE if party.side.sbc_address == SBC_PUBLIC else SBC_PUBLIC]
    bodies = party.sdp_bodies()
    assert bodies and not [b for b in bodies if other in b], f"{who} saw the other side's network {other}"


def measure(capture: NetnsCapture, caller: Party, callee: Party, caller_view: media.Sdp, callee_view: media.Sdp,
            sent: dict, rtcp_mux: dict) -> dict:
    """(packets into rtpengine, packets out of rtpengine) per medium, direction, RTP/RTCP."""
    parties = {"caller": (caller, caller_view), "callee": (callee, callee_view)}
    measured = {}
    for kind, offset in MEDIA_OFFSETS.items():
        for src, dst in (("caller", "callee"), ("callee", "caller")):
            (sender, sender_view), (receiver, receiver_view) = parties[src], parties[dst]
            for rtcp, expected in ((False, sent[src][kind].rtp), (True, sent[src][kind].rtcp)):
                def port_of(party, name):
                    return party.media_port + offset + (1 if rtcp and not rtcp_mux[name] else 0)
                # the sender sends where its SDP says; rtpengine sends on from what the receiver's SDP says
                relay_in = (sender.side.sbc_address, sender_view.rtcp_port(kind) if rtcp else sender_view.port(kind))
                relay_out = (receiver.side.sbc_address,
                             receiver_view.rtcp_port(kind) if rtcp else receiver_view.port(kind))
                into = capture.count((sender.address, port_of(sender, src)), relay_in, rtcp)
                out = capture.count(relay_out, (receiver.address, port_of(receiver, dst)), rtcp)
                what = f"{kind} {'RTCP' if rtcp else 'RTP'} {src}->{dst}"
                measured[what] = (into, out)
                assert into == expected and out == expected, \
                    (f"{what}: sent {expected}, rtpengine got {into}, relayed {out} (packets the capture itself "
                     f"missed: {capture.dropped}); flows: {capture.flows()}")
    return measured


@pytest.mark.parametrize("ender", ENDERS, ids=[f"{e}-hangs-up" for e in ENDERS])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_audio_video_rtp_rtcp_cross_the_sbc_through_rtpengine_on_each_sides_address(
        sbc, rtpe, tmp_path, direction, ender):
    k = sbc.start_kamailio(sbc_media_tables(rtpe))
    assert not forwarding_enabled(sbc.sbc_ns)          # only rtpengine can carry media across
    sent = {"caller": media.write_call_pcaps(tmp_path / "caller", ssrc_base=0x6000),
            "callee": media.write_call_pcaps(tmp_path / "callee", ssrc_base=0x7000)}
    before = rtpe.totals()
    with NetnsCapture(sbc.sbc_ns) as capture:
        caller, callee = call_across(sbc, direction, ender, tmp_path)
        assert wait_until(lambda: rtpe.ng.calls() == [], 3), rtpe.ng.calls()
    r, e = caller.result, callee.result
    assert r.rc == 0 and r.finals == [200] and r.values("reinvite"), r.stdout[-3000:]
    assert e.rc == 0 and e.values("reinvite") == ["200"], e.stdout[-3000:]
    assert (r.values("bye"), e.values("bye")) == ((["sent"], ["received"]) if ender == "caller"
                                                  else (["received"], ["sent"]))

    # what each side was told: rtpengine's address on ITS side, the same ports before and
    # after the callee's re-INVITE (one session, same interfaces)
    answer, = caller.received_sdps("SIP/2.0 200")          # the callee's answer, as the caller got it
    reoffer, = caller.received_sdps("INVITE")               # the callee's re-INVITE
    offer, = callee.received_sdps("INVITE")                 # the caller's offer, as the callee got it
    reanswer, = callee.received_sdps("SIP/2.0 200")        # the caller's answer to the re-INVITE
    for sdp, party, who in ((answer, caller, "200 the caller got"), (reoffer, caller, "re-INVITE the caller got"),
                            (offer, callee, "INVITE the callee got"), (reanswer, callee, "200 the callee got")):
        assert_sdp_on_rtpengine(sdp, party.side.sbc_address, who)
    assert [p for _, p, _ in reoffer.media] == [p for _, p, _ in answer.media]
    assert [p for _, p, _ in reanswer.media] == [p for _, p, _ in offer.media]
    assert_sees_only_its_side(caller, "the caller")
    assert_sees_only_its_side(callee, "the callee")

    measured = measure(capture, caller, callee, reoffer, reanswer, sent, {"caller": False, "callee": False})
    after = rtpe.totals()
    relayed = int(after["relayedpackets"]) - int(before["relayedpackets"])
    created = int(after["managedsessions"]) - int(before["managedsessions"]) + rtpe.ng.open_sessions()
    left = rtpe.ng.calls()
    print(f"\n{direction}, {ender} hangs up: SDP at the caller ({caller.side.sbc_address} side) "
          f"o/c/m={answer.origin_address}/{answer.connection}/{answer.media}; at the callee "
          f"({callee.side.sbc_address} side) o/c/m={offer.origin_address}/{offer.connection}/{offer.media}"
          f"\n  packets (into rtpengine, out to the other side): {measured}"
          f"\n  rtpengine relayedpackets +{relayed}, sessions created {created}, left {len(left)}")
    assert relayed >= sum(out for _, out in measured.values())
    assert left == [] and rtpe.ng.open_sessions() == 0
    assert created == 1                                    # the re-INVITE kept the call's session
    assert "kemi: media:" not in k.log()                   # no failed offer/answer/delete


def test_rtcp_mux_handling_follows_the_profile_of_the_side_the_sdp_goes_to(sbc, rtpe, tmp_path):
    """The public caller offers rtcp-mux; the private side's profile demuxes: the private
    callee gets RTCP on its own port, the caller gets it muxed on the RTP port."""
    tables = sbc_media_tables(rtpe, profiles={"pbx": {"rtcp_mux": ["demux"]}})
    k = sbc.start_kamailio(stack.merge(tables, {"sbc.private": {"media_profile": "pbx"}}))
    sent = {"caller": media.write_call_pcaps(tmp_path / "caller", ssrc_base=0x8000, rtcp_mux=True),
            "callee": media.write_call_pcaps(tmp_path / "callee", ssrc_base=0x9000)}
    with NetnsCapture(sbc.sbc_ns) as capture:
        caller, callee = call_across(sbc, "public->private", "caller", tmp_path, caller_attr="rtcp-mux")
        assert wait_until(lambda: rtpe.ng.calls() == [], 3), rtpe.ng.calls()
    assert caller.result.rc == 0 and callee.result.rc == 0, caller.result.stdout[-3000:] + callee.result.stdout[-3000:]
    answer, = caller.received_sdps("SIP/2.0 200")
    reoffer, = caller.received_sdps("INVITE")
    offer, = callee.received_sdps("INVITE")
    reanswer, = callee.received_sdps("SIP/2.0 200")
    assert_sdp_on_rtpengine(offer, SBC_PRIVATE, "INVITE the callee got")
    assert_sdp_on_rtpengine(answer, SBC_PUBLIC, "200 the caller got")
    for kind in MEDIA_OFFSETS:
        assert not offer.has_attribute(kind, "rtcp-mux"), f"{kind}: rtcp-mux offered to the private side"
        assert answer.has_attribute(kind, "rtcp-mux"), f"{kind}: the caller's rtcp-mux was not accepted"
        assert reoffer.has_attribute(kind, "rtcp-mux")     # the caller keeps it after the re-INVITE
    measured = measure(capture, caller, callee, reoffer, reanswer, sent, {"caller": True, "callee": False})
    print(f"\nrtcp-mux on the public side, demuxed to the private side: {measured}")
    assert "kemi: media:" not in k.log()


def test_failover_to_the_next_gateway_keeps_the_anchored_session(sbc, rtpe):
    """Gateway 1 answers 503, gateway 2 takes the call: the offer made for gateway 1 is
    still rtpengine's session (not deleted by the failure route), the answer anchors it."""
    k = sbc.start_kamailio(sbc_media_tables(rtpe, gateways_per_side=2))
    sbc.gateway(sbc.private, 0, scenario="gw_reject.xml")
    second = sbc.gateway(sbc.private, 1)
    before = int(rtpe.totals()["managedsessions"])
    calls = 0
    while "answered 503, trying" not in k.log() and calls < 2:   # round-robin: one of two meets gateway 1
        call = sbc.trunk_call(sbc.public, "15550100").wait()
        calls += 1
        assert call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]
        answer, = sdps(sipp_messages(call), "SIP/2.0 200")
        assert answer.connection == SBC_PUBLIC and answer.media[0][2] == SBC_PUBLIC, answer
    assert "answered 503, trying" in k.log()
    sbc.stop_sipp(second)
    offers = sdps(sipp_messages(second.wait()), "INVITE")
    assert len(offers) == calls and all(o.connection == SBC_PRIVATE for o in offers), offers
    assert wait_until(lambda: rtpe.ng.calls() == [], 3), rtpe.ng.calls()
    created = int(rtpe.totals()["managedsessions"]) - before
    print(f"\nfailover with media: {calls} call(s), one via gateway 1's 503; rtpengine sessions "
          f"created {created}, left {len(rtpe.ng.calls())}")
    assert created == calls and rtpe.ng.open_sessions() == 0
    assert "kemi: media:" not in k.log()


# --- make run with SBC settings ---------------------------------------------------------------


def test_make_run_with_sbc_settings_starts_rtpengine_with_both_interfaces(sbc, tmp_path):
    """`make run`'s runner (python3 -m kemi_tools.stack), started inside the SBC namespace with SBC +
    media settings: rtpengine gets --interface=public/... and --interface=private/..., a call
    across is anchored on each side, SIGTERM stops everything it started."""
    rtpe = SbcRtpengine(sbc.sbc_ns, tmp_path)           # only for its settings (the runner starts it)
    tables = stack.merge(sbc.sbc_tables(sbc_media_tables(rtpe)),
                         {"runtime": {"dir": str(tmp_path / "run"), "log_level": 2}})
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(stack.toml_dump(tables))
    home = tmp_path / "home"
    home.mkdir()
    out_path = tmp_path / "runner.out"
    with open(out_path, "w") as out:
        runner = sbc.sbc_ns.popen([sys.executable, "-m", "kemi_tools.stack", str(settings_file)], cwd=stack.project_file(),
                                  env=dict(os.environ, HOME=str(home)), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    output = lambda: out_path.read_text(errors="replace")
    rtpengine_pid = kamailio_pid = None
    try:
        wait_until(lambda: "Kamailio running" in output() or runner.poll() is not None, 60)
        assert "Kamailio running" in output(), output()
        rtpengine_pid = int(re.search(r"rtpengine running \(pid (\d+)\)", output()).group(1))
        kamailio_pid = int(re.search(r"Kamailio running \(pid (\d+)\)", output()).group(1))
        argv = open(f"/proc/{rtpengine_pid}/cmdline", "rb").read().split(b"\0")
        assert b"--interface=public/" + SBC_PUBLIC.encode() in argv, argv
        assert b"--interface=private/" + SBC_PRIVATE.encode() in argv, argv
        assert rtpe.ng.ping()                                    # its ng socket, in the SBC namespace
        assert f"{SBC_PUBLIC}:" in output() and "(public)" in output() and "(private)" in output()
        sbc.gateway(sbc.private, 0)
        call = sbc.trunk_call(sbc.public, "15550100").wait()
        assert call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]
        answer, = sdps(sipp_messages(call), "SIP/2.0 200")
        assert answer.connection == answer.origin_address == SBC_PUBLIC, answer
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0, output()
        assert "kemi: stopping" in output()
        assert not os.path.exists(f"/proc/{rtpengine_pid}") and not os.path.exists(f"/proc/{kamailio_pid}")
        print(f"\nmake run (SBC): {re.search(r'rtpengine running.*', output()).group(0)}")
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(10)
        for pid in (rtpengine_pid, kamailio_pid):       # the runner's daemons have their own groups
            if pid and os.path.exists(f"/proc/{pid}"):
                os.killpg(pid, signal.SIGKILL)
