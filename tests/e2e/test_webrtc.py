"""A real browser calls a plain-RTP phone: headless Chromium (Debian's) runs the sample page
tests/web/phone.html (JsSIP from the npm registry, served from loopback), registers over WSS
to Kamailio's websocket listener and calls a baresip phone that only does plain RTP.

Checked: the browser's WebRTC stats (packets and bytes received and audio energy on the
inbound audio track, DTLS connected, an SRTP cipher), the phone's received audio (the
browser's fake microphone plays a tone: its frequency dominates what the phone decoded),
the browser's registration (a ws contact with the connection's address), and the phone's
plain RTP. Control: the same call with media security off (every party "any", as before
issue 14): the browser's DTLS-SRTP offer reaches the plain phone as it is and the call fails.

Everything runs in one network namespace (tests/harness/webrtc.py: why).
"""
from __future__ import annotations

import pytest

from harness import stack
from harness.baresip import Baresip, write_tone
from harness.media import wait_until
from harness.webrtc import MEDIA_ADDRESS, WebNetwork, web_ready

pytestmark = pytest.mark.e2e

BROWSER_HZ, PHONE_HZ = 800, 1400
HOLD_SECONDS = 4
SECURITY_ON = {"security": "rtp"}                      # ws/wss are "webrtc" by default
SECURITY_OFF = {"security": "any", "transport_security": {"ws": "any", "wss": "any"}}


@pytest.fixture(scope="module")
def web(db, tmp_path_factory):
    missing = web_ready()
    assert not missing, missing
    net = WebNetwork(tmp_path_factory.mktemp("webrtc"))
    try:
        net.start_rtpengine()
        net.serve_page()
        yield net
    finally:
        problems = net.close()
        assert not problems, problems


def browser_calls_phone(web, db, tmp_path, browser_user, phone_user, media):
    web.start_kamailio(media)
    for user in (browser_user, phone_user):
        db.add_subscriber(user)
    phone = Baresip(tmp_path, phone_user, tone_hz=PHONE_HZ, register=True, address=MEDIA_ADDRESS)
    phone.start(web.proxy, seconds=90, netns=web.ns)
    try:
        assert wait_until(lambda: db.locations(phone_user), 20, 0.2), phone.log()[-2000:]
        tone = tmp_path / "browser-tone.wav"
        write_tone(tone, BROWSER_HZ, seconds=30)
        result = web.browse(web.page_url(browser_user, phone_user), HOLD_SECONDS, tone)
    finally:
        phone.stop()
    return result, phone


def test_browser_over_wss_calls_a_plain_rtp_phone(web, db, tmp_path):
    result, phone = browser_calls_phone(web, db, tmp_path, "4201", "4202", SECURITY_ON)
    where = f"{result}\nphone log:\n{phone.log()[-2000:]}\nkamailio:\n{web.log()[-3000:]}"
    assert result["ok"] and result["state"] == "confirmed", where
    # the browser registered over WebSocket, reachable through its connection
    contacts = db.query("SELECT contact, received FROM location WHERE username = '4201';")
    assert contacts and "transport=ws" in contacts[0][0] and contacts[0][1].startswith("sip:127.0.0.1:"), contacts
    stats = result["stats"]
    inbound, outbound = stats["inbound"], stats["outbound"]
    assert inbound["packetsReceived"] > 0 and inbound["bytesReceived"] > 0, where
    assert inbound["totalAudioEnergy"] > 0, where               # decoded sound, not only packets
    assert outbound["packetsSent"] > 0, where
    assert stats["transport"]["dtlsState"] == "connected" and stats["transport"]["srtpCipher"], where
    heard, share = phone.received_tone()
    assert heard == BROWSER_HZ and share > 0.5, f"the phone heard {heard} Hz ({share:.2f})\n{where}"
    # a plain phone: no SRTP or DTLS module loaded, so what it decoded came in plain RTP
    assert "srtp.so" not in (phone.dir / "config").read_text() and "Using media encryption" not in phone.log()
    times = result["times"]
    print(f"WebRTC->RTP: answer after {times['accepted'] - times['invite']:.0f} ms, ICE+DTLS connected "
          f"{times['media'] - times['accepted']:.0f} ms after it; {HOLD_SECONDS} s held: browser received "
          f"{inbound['packetsReceived']} packets ({inbound['bytesReceived']} bytes), sent {outbound['packetsSent']}")


def test_a_plain_rtp_phone_calls_the_browser_registered_over_wss(web, db, tmp_path):
    """The browser's contact is reachable (the WebSocket connection it registered on) and
    rtpengine gives it DTLS-SRTP, ICE and rtcp-mux for the phone's plain offer."""
    web.start_kamailio(SECURITY_ON)
    for user in ("4205", "4206"):
        db.add_subscriber(user)
    tone = tmp_path / "browser-tone.wav"
    write_tone(tone, BROWSER_HZ, seconds=30)
    browsing = web.browse_async(web.page_url("4205"), HOLD_SECONDS, tone)
    phone = Baresip(tmp_path, "4206", tone_hz=PHONE_HZ, address=MEDIA_ADDRESS)
    try:
        assert wait_until(lambda: db.locations("4205"), 30, 0.2), browsing.page_log()[-3000:]
        phone.start(web.proxy, dial="4205", seconds=HOLD_SECONDS + 6, netns=web.ns)
        result = browsing.result()
    finally:
        phone.stop()
    where = f"{result}\nphone log:\n{phone.log()[-2000:]}\nkamailio:\n{web.log()[-3000:]}"
    assert result["ok"] and result["state"] in ("confirmed", "ended") and "confirmed" in result["times"], where
    assert "incoming call from 4206" in " ".join(result["events"]), where
    offer = next(e for e in result["events"] if "sdp remote offer" in e)
    assert "UDP/TLS/RTP/SAVPF" in offer and "a=fingerprint" in offer and "a=ice-ufrag" in offer \
        and "a=rtcp-mux" in offer and "a=crypto" not in offer, offer
    inbound = result["stats"]["inbound"]
    assert inbound["packetsReceived"] > 0 and inbound["bytesReceived"] > 0 and inbound["totalAudioEnergy"] > 0, where
    heard, share = phone.received_tone()
    assert heard == BROWSER_HZ and share > 0.5, f"the phone heard {heard} Hz ({share:.2f})\n{where}"


def test_control_without_media_security_the_browser_call_fails(web, db, tmp_path):
    result, phone = browser_calls_phone(web, db, tmp_path, "4203", "4204", SECURITY_OFF)
    assert result["ok"] and result["state"] == "failed", result
    assert "488" in " ".join(result["events"]) or "Incompatible" in str(result.get("failure")), result
    assert not phone.established()
