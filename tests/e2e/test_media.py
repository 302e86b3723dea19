"""Media anchoring end to end: real Kamailio, MariaDB, rtpengine and SIPp phones.

Each test starts its own rtpengine (tests/harness/media.py: own ng port, relay address
127.0.0.2, ports from the slot's media range, delete-delay 0 so `list` shows only sessions
nobody deleted) and a Kamailio whose [media] settings point at it. The phones are SIPp
scenarios offering audio AND video on 127.0.0.1 with media ports of their own; RTP/RTCP is
played from pcaps written by the test and counted on lo by a kernel-filtered capture.
"""
from __future__ import annotations

import time

import pytest

from harness import media, stack
from harness.media import PHONE_ADDRESS, RTPENGINE_ADDRESS, sdp_body, sdps, sipp_messages, wait_until
from harness.sipp import Sipp, auth_row
from harness.stack import free_port

# video RTP is on the phone's media port + 2 (SIPp's [media_port+2]), RTCP one above RTP
MEDIA_OFFSETS = {"audio": 0, "video": 2}
# a new call while rtpengine is down must be refused within this many seconds (SIPp's own
# start and the 407 round trip included); the settings allow timeout_ms x retries per try
REFUSED_WITHIN_S = 3.5


@pytest.fixture
def rtpengine(tmp_path):
    engine = media.TestRtpengine(tmp_path / "rtpengine").start()
    yield engine
    engine.stop()


class MediaPhones:
    """SIPp phones with media ports of their own, playing the pcaps in their workdir."""

    def __init__(self, proxy, db, workdir):
        self.proxy, self.db, self.workdir = proxy, db, workdir
        self.running: list[Sipp] = []

    def register(self, user: str, contact_port: int) -> None:
        reg = Sipp("register.xml", self.workdir, target=self.proxy.target, local_port=free_port(),
                   rows=[auth_row(user, stack.PASSWORD, stack.DOMAIN)],
                   keys={"contact_port": contact_port, "expires": 3600}).run()
        assert reg.finals == [200], reg.stdout[-2000:]

    def callee(self, port: int, scenario: str = "media_uas.xml", media_attr: str = "sendrecv",
               timeout: float = 30) -> Sipp:
        uas = self._sipp(scenario, local_port=port, timeout=timeout, keys={"media_attr": media_attr})
        self.running.append(uas)
        return uas.start()

    def call(self, caller: str, callee: str, scenario: str = "media_uac.xml", media_attr: str = "sendrecv",
             hold_ms: int | None = 1500) -> Sipp:
        return self._sipp(scenario, target=self.proxy.target, local_port=free_port(),
                          rows=[auth_row(caller, stack.PASSWORD, stack.DOMAIN, callee)], keys={"media_attr": media_attr},
                          sets={} if hold_ms is None else {"hold_ms": hold_ms}).start()

    def _sipp(self, scenario: str, **kw) -> Sipp:
        port = media.phone_media_port()
        sipp = Sipp(scenario, self.workdir, extra=["-mp", str(port)], **kw)
        sipp.media_port = port
        return sipp

    def stop(self):
        for s in self.running:
            s.stop()


@pytest.fixture
def media_phones(db, tmp_path):
    made = []

    def make(proxy):
        p = MediaPhones(proxy, db, tmp_path / f"sipp-{len(made)}")
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def media_proxy(kamailio_factory, engine, name: str = "kamailio", router: str | None = None):
    overrides = engine.media_settings()
    if router:
        overrides["python"] = {"router": router, "path": [str(stack.project_file("tests", "e2e", "routers"))]}
    return kamailio_factory(overrides, name=name)


def register_callee(db, phones, callee: str, caller: str) -> int:
    db.add_subscriber(callee)
    db.add_subscriber(caller)
    port = free_port()
    phones.register(callee, port)
    return port


def assert_anchored(sdp: media.Sdp, who: str) -> None:
    """c=, o= and every m= of `sdp` are rtpengine's, none is a phone's."""
    media.assert_sdp_on_rtpengine(sdp, RTPENGINE_ADDRESS, who)


def call_id_of(result) -> str:
    return result.log[0].split("call-id=")[1].strip()


# --- SDP rewritten, RTP and RTCP relayed -----------------------------------------------------


@pytest.mark.parametrize("rtcp_mux", [False, True], ids=["rtcp-separate-port", "rtcp-mux"])
def test_audio_video_rtp_and_rtcp_flow_between_phones_only_through_rtpengine(
        db, kamailio_factory, rtpengine, media_phones, rtcp_mux):
    proxy = media_proxy(kamailio_factory, rtpengine)
    phones = media_phones(proxy)
    callee_user, caller_user = ("3003", "3004") if rtcp_mux else ("3001", "3002")
    callee_port = register_callee(db, phones, callee_user, caller_user)
    sent = media.write_call_pcaps(phones.workdir, ssrc_base=0x1000, rtcp_mux=rtcp_mux)
    attr = "rtcp-mux" if rtcp_mux else "sendrecv"
    before = rtpengine.stats()["totalstatistics"]
    with media.LoopbackCapture() as capture:
        uas = phones.callee(callee_port, media_attr=attr)
        uac = phones.call(caller_user, callee_user, media_attr=attr)
        caller, callee = uac.wait(), uas.wait()
        wait_until(lambda: not rtpengine.ng.calls(), 2)
    assert caller.rc == 0 and caller.finals == [200] and caller.values("bye") == ["200"], caller.stdout[-3000:]
    assert callee.rc == 0, callee.stdout[-3000:]

    # what each phone was told: rtpengine's address and ports, never the other phone's
    offer = sdps(sipp_messages(callee), "INVITE")[0]          # the callee's view of the caller
    answer = sdps(sipp_messages(caller), "SIP/2.0 200")[0]    # the caller's view of the callee
    assert_anchored(offer, "SDP the callee received")
    assert_anchored(answer, "SDP the caller received")
    assert offer.has_attribute("audio", "rtcp-mux") == rtcp_mux
    assert answer.has_attribute("audio", "rtcp-mux") == rtcp_mux

    phone_ports = {"caller": uac.media_port, "callee": uas.media_port}
    measured = {}
    for kind, offset in MEDIA_OFFSETS.items():
        for src, dst, src_view, dst_view in (("caller", "callee", answer, offer), ("callee", "caller", offer, answer)):
            for rtcp, expected in ((False, sent[kind].rtp), (True, sent[kind].rtcp)):
                rtp_from, rtp_to = phone_ports[src] + offset, phone_ports[dst] + offset
                phone_from = (PHONE_ADDRESS, rtp_from + (1 if rtcp and not rtcp_mux else 0))
                phone_to = (PHONE_ADDRESS, rtp_to + (1 if rtcp and not rtcp_mux else 0))
                # the sender sends where its SDP says, rtpengine sends on from where the peer's SDP says
                relay_in = (RTPENGINE_ADDRESS, src_view.rtcp_port(kind) if rtcp else src_view.port(kind))
                relay_out = (RTPENGINE_ADDRESS, dst_view.rtcp_port(kind) if rtcp else dst_view.port(kind))
                into = capture.count(src=phone_from, dst=relay_in, rtcp=rtcp)
                out = capture.count(src=relay_out, dst=phone_to, rtcp=rtcp)
                what = f"{kind} {'RTCP' if rtcp else 'RTP'} {src}->{dst}"
                measured[what] = (into, out)
                assert into == expected and out == expected, \
                    f"{what}: sent {expected}, rtpengine got {into}, relayed {out}; flows: {capture.flows()}"
    direct = [p for p in capture.packets if p.src[0] == p.dst[0] == PHONE_ADDRESS]
    assert direct == [], f"media went phone to phone: {direct[:5]}"
    after = rtpengine.stats()["totalstatistics"]
    relayed = int(after["relayedpackets"]) - int(before["relayedpackets"])
    print(f"\nmeasured (packets to rtpengine, packets from rtpengine to the other phone): {measured}"
          f"\nrtpengine relayedpackets +{relayed}; sessions left: {len(rtpengine.ng.calls())}")
    assert relayed >= sum(out for _, out in measured.values())
    assert rtpengine.ng.calls() == []


def test_late_offer_in_200_and_answer_in_ack_are_anchored(db, kamailio_factory, rtpengine, media_phones):
    proxy = media_proxy(kamailio_factory, rtpengine)
    phones = media_phones(proxy)
    callee_port = register_callee(db, phones, "3011", "3012")
    media.write_call_pcaps(phones.workdir, ssrc_base=0x2000)
    uas = phones.callee(callee_port)
    caller = phones.call("3012", "3011", scenario="uac_late_offer.xml", hold_ms=300).wait()
    callee = uas.wait()
    assert caller.rc == 0 and caller.finals == [200], caller.stdout[-3000:]
    assert callee.rc == 0, callee.stdout[-3000:]
    invite = [m for m in sipp_messages(callee) if m.startswith("INVITE")][0]
    assert media.parse_sdp(invite) is None                         # the INVITE had no SDP
    assert_anchored(sdps(sipp_messages(caller), "SIP/2.0 200")[0], "offer in the 200 the caller received")
    assert_anchored(sdps(sipp_messages(callee), "ACK")[0], "answer in the ACK the callee received")
    assert wait_until(lambda: rtpengine.ng.calls() == [], 2), rtpengine.ng.calls()


def test_hold_and_unhold_from_both_sides_keep_the_media_path(db, kamailio_factory, rtpengine, media_phones):
    proxy = media_proxy(kamailio_factory, rtpengine)
    phones = media_phones(proxy)
    callee_port = register_callee(db, phones, "3021", "3022")
    uas = phones.callee(callee_port, scenario="media_uas_hold.xml")
    caller = phones.call("3022", "3021", scenario="media_uac_hold.xml").wait()
    callee = uas.wait()
    assert caller.rc == 0 and caller.values("held") and caller.values("peer_held"), caller.stdout[-3000:]
    assert caller.values("bye") == ["200"] and callee.rc == 0, callee.stdout[-3000:]
    # every SDP each phone received: the initial one, two re-INVITEs of the other side, two 200s
    for who, result in (("caller", caller), ("callee", callee)):
        seen = [s for m in sipp_messages(result) if (s := media.parse_sdp(m))]
        assert len(seen) == 5, f"{who} received {len(seen)} SDPs"
        for sdp in seen:
            assert_anchored(sdp, f"SDP the {who} received")
        paths = {(s.port("audio"), s.port("video")) for s in seen}
        assert len(paths) == 1, f"{who}'s media path changed across hold/unhold: {paths}"
    # the hold itself reached the other phone (rtpengine passes the direction attributes)
    held_offer = sdps(sipp_messages(callee), "INVITE")[1]
    assert held_offer.has_attribute("audio", "sendonly")
    assert sdps(sipp_messages(caller), "INVITE")[0].has_attribute("video", "sendonly")
    assert wait_until(lambda: rtpengine.ng.calls() == [], 2), rtpengine.ng.calls()


# --- no session left behind ------------------------------------------------------------------


def test_no_rtpengine_session_left_after_bye_cancel_busy_timeout_hold_and_late_offer(
        db, kamailio_factory, rtpengine, media_phones):
    # ShortTimerRouter: a ringing phone is given up after 2.5 s (408) instead of 120 s
    proxy = media_proxy(kamailio_factory, rtpengine, router="short_timer_router:ShortTimerRouter")
    phones = media_phones(proxy)
    callee_port = register_callee(db, phones, "3031", "3032")
    media.write_call_pcaps(phones.workdir, ssrc_base=0x3000)
    before = int(rtpengine.stats()["totalstatistics"]["managedsessions"])
    endings = [  # (ending, callee scenario, caller scenario, caller's final answer)
        ("BYE", "media_uas.xml", "media_uac.xml", 200),
        ("CANCEL", "uas_ring_cancelled.xml", "uac_cancel.xml", 487),
        ("486 Busy", "uas_busy.xml", "media_uac.xml", 486),
        ("408 timeout", "uas_ring_cancelled.xml", "media_uac.xml", 408),
        ("re-INVITE hold/unhold, BYE", "media_uas_hold.xml", "media_uac_hold.xml", 200),
        ("late offer, BYE", "media_uas.xml", "uac_late_offer.xml", 200),
    ]
    for ending, uas_scenario, uac_scenario, final in endings:
        uas = phones.callee(callee_port, scenario=uas_scenario, timeout=15)
        caller = phones.call("3032", "3031", scenario=uac_scenario, hold_ms=300).wait()
        callee = uas.wait()
        assert caller.finals == [final], f"{ending}: {caller.stdout[-2500:]}"
        assert caller.rc == 0 and callee.rc == 0, f"{ending}: {caller.stdout[-1500:]}{callee.stdout[-1500:]}"
        if uac_scenario != "uac_late_offer.xml":       # the callee was offered rtpengine's media
            assert_anchored(sdps(sipp_messages(callee), "INVITE")[0], f"{ending}: offer to the callee")
    wait_until(lambda: rtpengine.ng.calls() == [], 2)
    left, own = rtpengine.ng.calls(), rtpengine.ng.open_sessions()
    # managedsessions counts the sessions that have ended; the open ones are still to come
    created = int(rtpengine.stats()["totalstatistics"]["managedsessions"]) - before + own
    print(f"\nrtpengine sessions created: {created}, left open: {own} (list: {left})")
    assert left == [] and own == 0, f"sessions left behind: {left}"
    assert created == len(endings), f"{created} sessions for {len(endings)} calls"


# --- rtpengine unreachable -------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_rtpengine_unreachable_new_call_gets_503_quickly_then_calls_recover(
        db, kamailio_factory, rtpengine, media_phones, outage):
    proxy = media_proxy(kamailio_factory, rtpengine)
    phones = media_phones(proxy)
    callee_user, caller_user = ("3041", "3042") if outage == "stopped" else ("3043", "3044")
    callee_port = register_callee(db, phones, callee_user, caller_user)
    media.write_call_pcaps(phones.workdir, ssrc_base=0x4000)

    if outage == "stopped":
        rtpengine.stop()          # the ng port answers with ICMP port unreachable
    else:
        rtpengine.freeze()        # SIGSTOP: the ng port takes commands, nothing answers
    uas = phones.callee(callee_port, timeout=REFUSED_WITHIN_S + 2)
    started = time.monotonic()
    refused = phones.call(caller_user, callee_user, hold_ms=300).wait()
    took = time.monotonic() - started
    untouched = uas.wait()
    assert refused.finals == [503], refused.stdout[-3000:]
    assert took < REFUSED_WITHIN_S, f"503 after {took:.1f}s"
    assert "INVITE sip:" not in untouched.messages            # never relayed towards a dead relay
    call_id = call_id_of(refused)
    lines = [l for l in proxy.log().splitlines() if "kemi: media:" in l and call_id in l]
    assert len(lines) == 1, lines
    assert rtpengine.socket in lines[0] and "503" in lines[0], lines[0]
    print(f"\nrtpengine {outage}: 503 after {took:.2f}s; log: {lines[0].split('kemi: ', 1)[1]}")

    if outage == "stopped":
        rtpengine.start()
    else:
        rtpengine.thaw()
    uas = phones.callee(callee_port)
    started = time.monotonic()
    caller = phones.call(caller_user, callee_user, hold_ms=300).wait()
    callee = uas.wait()
    assert caller.rc == 0 and caller.finals == [200], caller.stdout[-3000:]
    assert callee.rc == 0, callee.stdout[-3000:]
    assert_anchored(sdps(sipp_messages(callee), "INVITE")[0], "offer after rtpengine came back")
    print(f"next call after rtpengine came back: 200, anchored ({time.monotonic() - started:.2f}s)")


def test_sdp_rtpengine_refuses_gets_488_and_leaves_no_session(db, kamailio_factory, rtpengine, media_phones):
    proxy = media_proxy(kamailio_factory, rtpengine)
    phones = media_phones(proxy)
    callee_port = register_callee(db, phones, "3061", "3062")
    uas = phones.callee(callee_port, timeout=4)
    refused = phones.call("3062", "3061", scenario="uac_sdp_without_media.xml", hold_ms=None).wait()
    assert refused.finals == [488], refused.stdout[-3000:]
    assert "INVITE sip:" not in uas.wait().messages
    call_id = call_id_of(refused)
    lines = [l for l in proxy.log().splitlines() if "kemi: media:" in l and call_id in l]
    assert len(lines) == 1 and "refused the SDP" in lines[0] and "488" in lines[0], lines
    # rtpengine keeps a half-made session for such an offer: the route deleted it
    assert "Error rewriting SDP" in rtpengine.log()
    assert rtpengine.ng.calls() == [] and rtpengine.ng.open_sessions() == 0


# --- anchoring off -------------------------------------------------------------------------


def test_anchoring_off_passes_sdp_untouched_and_media_goes_phone_to_phone(db, proxy, media_phones):
    assert proxy.settings.media.enabled is False            # the harness default
    phones = media_phones(proxy)
    callee_port = register_callee(db, phones, "3051", "3052")
    sent = media.write_call_pcaps(phones.workdir, ssrc_base=0x5000)
    with media.LoopbackCapture() as capture:
        uas = phones.callee(callee_port)
        uac = phones.call("3052", "3051")
        caller, callee = uac.wait(), uas.wait()
    assert caller.rc == 0 and caller.finals == [200] and callee.rc == 0, caller.stdout[-3000:]
    offer_sent = [m for m in sipp_messages(caller, "sent") if m.startswith("INVITE") and "v=0" in m][-1]
    offer_got = [m for m in sipp_messages(callee) if m.startswith("INVITE")][0]
    answer_sent = [m for m in sipp_messages(callee, "sent") if m.startswith("SIP/2.0 200")][0]
    answer_got = [m for m in sipp_messages(caller) if m.startswith("SIP/2.0 200")][0]
    assert sdp_body(offer_got) == sdp_body(offer_sent)
    assert sdp_body(answer_got) == sdp_body(answer_sent)
    assert media.parse_sdp(offer_got).connection == PHONE_ADDRESS
    # and the capture that shows rtpengine in the path above does see phone-to-phone media here
    direct = capture.count(src=(PHONE_ADDRESS, uac.media_port), dst=(PHONE_ADDRESS, uas.media_port), rtcp=False)
    assert direct == sent["audio"].rtp
    assert "rtpengine" not in proxy.log().lower()
