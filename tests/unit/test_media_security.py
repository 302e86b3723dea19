"""Media security decisions (kemi/media/security.py) as plain functions, and their settings."""
import pytest

from kemi.media.flags import ANSWER, DELETE, OFFER
from kemi.media.security import (ANY, BAD_CRYPTO, DTLS, DTLS_SRTP, NO_MEDIA, PLAIN, RTP, SDES, SDES_SRTP, SRTP,
                                 SRTP_REQUIRED, WEBRTC, Decision, Parties, Rules, crypto_problem, decide,
                                 refused_reply, rules_in_use, sdp_crypto)
from kemi.settings import SettingsError, parse_settings

KEY = "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"          # 30 bytes: AES_CM_128 key||salt
FP = ":".join(["AB"] * 32)


def sdp(*media: str, session: str = "") -> str:
    head = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" + session
    return head + "".join(media)


PLAIN_SDP = sdp("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
SDES_SDP = sdp(f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n")
DTLS_SDP = sdp(f"m=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=fingerprint:sha-256 {FP}\r\na=setup:actpass\r\n")
WEBRTC_SDP = sdp(f"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\n"
                 f"a=fingerprint:sha-256 {FP}\r\na=setup:actpass\r\na=rtcp-mux\r\na=mid:0\r\n",
                 session="a=group:BUNDLE 0\r\n")


# --- what an SDP carries ------------------------------------------------------------------


@pytest.mark.parametrize("body, kind, ice, mux", [
    (PLAIN_SDP, PLAIN, False, False),
    (SDES_SDP, SDES_SRTP, False, False),
    (DTLS_SDP, DTLS_SRTP, False, False),
    (WEBRTC_SDP, DTLS_SRTP, True, True),
    # a session-level fingerprint counts for every m= line
    (sdp("m=audio 4000 UDP/TLS/RTP/SAVP 0\r\n", session=f"a=fingerprint:sha-256 {FP}\r\n"), DTLS_SRTP, False, False),
    # RTP/SAVP keyed by DTLS only (a fingerprint, no a=crypto) is DTLS-SRTP
    (sdp(f"m=audio 4000 RTP/SAVP 0\r\na=fingerprint:sha-256 {FP}\r\n"), DTLS_SRTP, False, False),
    # the weakest active m= line counts: audio encrypted, video plain -> plain
    (SDES_SDP + "m=video 4002 RTP/AVP 96\r\n", PLAIN, False, False),
    # a rejected (port 0) plain stream does not make the offer plain
    (SDES_SDP + "m=video 0 RTP/AVP 96\r\n", SDES_SRTP, False, False),
    ("v=0\r\ns=-\r\n", NO_MEDIA, False, False),
    # SRTP that encrypts nothing (NULL cipher, UNENCRYPTED_SRTP) is plain for the rules
    (sdp(f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 NULL_HMAC_SHA1_80 inline:{KEY}\r\n"), PLAIN, False, False),
    (sdp(f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP\r\n"),
     PLAIN, False, False),
    (sdp(f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 NULL_HMAC_SHA1_80 inline:{KEY}\r\n"
         f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"), SDES_SRTP, False, False),
    (sdp("m=image 4000 udptl t38\r\n"), PLAIN, False, False),
])
def test_sdp_crypto_kinds(body, kind, ice, mux):
    found = sdp_crypto(body)
    assert (found.kind, found.ice, found.rtcp_mux, found.problem) == (kind, ice, mux, "")


@pytest.mark.parametrize("body, problem", [
    (sdp("m=audio 4000 RTP/SAVP 0\r\n"), "RTP/SAVP without a=crypto or a=fingerprint"),
    (sdp("m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n"), "UDP/TLS/RTP/SAVPF without a=fingerprint"),
    (sdp("m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n"), "has 5 bytes, not 30"),
    (sdp(f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 ROT13_HMAC inline:{KEY}\r\n"), "suite ROT13_HMAC is unknown"),
    (sdp("m=audio 4000 RTP/SAVP 0\r\na=crypto:x\r\n"), "is malformed"),
    (sdp("m=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=fingerprint:sha-256 not-hex\r\n"), "is not a fingerprint"),
])
def test_broken_crypto_is_named(body, problem):
    assert problem in sdp_crypto(body).problem


def test_crypto_lines():
    assert crypto_problem(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}") == ""
    assert crypto_problem(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:4") == ""
    assert crypto_problem("2 AEAD_AES_256_GCM inline:" + "A" * 59) == ""          # 44 bytes
    assert "not base64" in crypto_problem("1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 5)


# --- the decision: offers, by sender and receiver ----------------------------------------

RTP_FLAGS = ("transport-protocol=RTP/AVP",)
FROM_BROWSER = ("ICE=remove", "rtcp-mux-demux")
EXCLUDED = ("SDES-no-NULL_HMAC_SHA1_80", "SDES-no-NULL_HMAC_SHA1_32", "SDES-no-AEAD_AES_256_GCM",
            "SDES-no-AEAD_AES_128_GCM")
SDES_FLAGS = ("transport-protocol=RTP/SAVP", "DTLS=off", *EXCLUDED)
DTLS_FLAGS = ("transport-protocol=UDP/TLS/RTP/SAVP", "SDES-off")
WEBRTC_FLAGS = ("transport-protocol=UDP/TLS/RTP/SAVPF", "ICE=force", "rtcp-mux-require", "SDES-off", "generate-mid")


@pytest.mark.parametrize("body, sender, receiver, flags", [
    # the bullet list of issue 14: SDES -> RTP, DTLS -> RTP, RTP -> SDES, browser -> RTP phone
    (SDES_SDP, ANY, RTP, RTP_FLAGS),
    (DTLS_SDP, ANY, RTP, RTP_FLAGS),
    (PLAIN_SDP, RTP, SDES, SDES_FLAGS),
    (WEBRTC_SDP, WEBRTC, RTP, RTP_FLAGS + FROM_BROWSER),
    # the other way round: a plain phone calls a browser, a DTLS phone, an "srtp" side
    (PLAIN_SDP, RTP, WEBRTC, WEBRTC_FLAGS),
    (PLAIN_SDP, ANY, DTLS, DTLS_FLAGS),
    (PLAIN_SDP, RTP, SRTP, SDES_FLAGS),
    (DTLS_SDP, DTLS, SRTP, DTLS_FLAGS),           # srtp keeps the offer's kind
    (SDES_SDP, SDES, SRTP, SDES_FLAGS),
    (WEBRTC_SDP, WEBRTC, SRTP, DTLS_FLAGS + FROM_BROWSER),
    # DTLS to an SDES phone: rtpengine must still accept the offerer's DTLS (no DTLS=off)
    (DTLS_SDP, DTLS, SDES, ("transport-protocol=RTP/SAVP", *EXCLUDED)),
    # "any" passes the offer as it is (kemi before media security)
    (SDES_SDP, ANY, ANY, ()),
    (WEBRTC_SDP, WEBRTC, ANY, ()),
    (PLAIN_SDP, RTP, ANY, ()),
])
def test_offer_flags(body, sender, receiver, flags):
    assert decide(OFFER, sdp_crypto(body), sender, receiver) == Decision(flags=flags)


@pytest.mark.parametrize("sender", [SRTP, SDES, DTLS, WEBRTC])
@pytest.mark.parametrize("receiver", [ANY, RTP, SDES, WEBRTC])
def test_a_party_that_must_encrypt_never_offers_plain(sender, receiver):
    decision = decide(OFFER, sdp_crypto(PLAIN_SDP), sender, receiver)
    assert decision == Decision(refusal=SRTP_REQUIRED)


@pytest.mark.parametrize("sender", [ANY, RTP])
def test_plain_offers_from_plain_parties_are_fine(sender):
    assert not decide(OFFER, sdp_crypto(PLAIN_SDP), sender, SDES).refusal


def test_broken_crypto_is_refused_whoever_sends_it():
    for sender in (ANY, RTP, SDES, WEBRTC):
        decision = decide(OFFER, sdp_crypto(sdp("m=audio 4000 RTP/SAVP 0\r\n")), sender, RTP)
        assert decision.refusal.startswith(BAD_CRYPTO) and "a=crypto" in decision.refusal


def test_answers_get_no_flags_but_the_same_rules():
    # rtpengine answers each party in the transport it offered (measured over ng)
    assert decide(ANSWER, sdp_crypto(PLAIN_SDP), RTP, WEBRTC) == Decision()
    assert decide(ANSWER, sdp_crypto(SDES_SDP), SDES, RTP) == Decision()
    # an SRTP-required party answering plain RTP breaks its own rule
    assert decide(ANSWER, sdp_crypto(PLAIN_SDP), SDES, RTP).refusal == SRTP_REQUIRED
    assert decide(ANSWER, sdp_crypto(PLAIN_SDP), SRTP, RTP).refusal == SRTP_REQUIRED
    with pytest.raises(ValueError):
        decide(DELETE, sdp_crypto(PLAIN_SDP), ANY, ANY)


def test_the_488_names_the_kind_of_refusal_never_the_sdp():
    assert refused_reply(Decision(refusal=SRTP_REQUIRED)) == (488, "Not Acceptable Here - SRTP required")
    broken = decide(OFFER, sdp_crypto(sdp("m=audio 4000 RTP/SAVP 0\r\na=crypto:1 X\r\n")), ANY, RTP)
    assert refused_reply(broken) == (488, "Not Acceptable Here - bad crypto offer")


# --- who needs what: rules ------------------------------------------------------------------


def test_rules_most_specific_first():
    rules = Rules(RTP, (("ws", WEBRTC), ("wss", WEBRTC), ("tls", SDES)), (("2001", DTLS),))
    assert rules.of("2001", "wss") == DTLS                 # the extension's own entry
    assert rules.of("2002", "WSS") == WEBRTC               # its transport
    assert rules.of("2002", "tls") == SDES
    assert rules.of("2002", "udp") == RTP                  # the default
    assert rules.of("2002", "udp", side_default=SRTP) == SRTP    # an SBC side's own
    assert rules.of("", "", side_default=None) == RTP
    assert rules.parties(("2002", "wss"), ("2001", "udp"), (None, SRTP)) == Parties(WEBRTC, DTLS)
    assert Parties(WEBRTC, RTP).swapped() == Parties(RTP, WEBRTC)


def test_rules_in_use_only_when_some_party_can_need_more_than_any():
    defaults = Rules(ANY, (("ws", WEBRTC), ("wss", WEBRTC)))
    assert not rules_in_use(defaults, (), frozenset({"udp", "tcp"}))       # no WebSocket listener
    assert rules_in_use(defaults, (), frozenset({"udp", "wss"}))
    assert rules_in_use(Rules(RTP), (), frozenset({"udp"}))
    assert rules_in_use(Rules(ANY, (), (("2001", SDES),)), (), frozenset({"udp"}))
    assert rules_in_use(Rules(ANY), ("", SRTP), frozenset({"udp"}))
    assert not rules_in_use(Rules(ANY), ("", ANY), frozenset({"udp"}))


# --- settings ---------------------------------------------------------------------------------


def test_security_settings_defaults_and_tables():
    s = parse_settings({})
    assert s.media.security == ANY
    assert dict(s.media.transport_security) == {"ws": WEBRTC, "wss": WEBRTC}
    s = parse_settings({"media": {"security": "rtp", "transport_security": {"TLS": "sdes"},
                                  "extension_security": {"2001": "dtls"}}})
    assert dict(s.media.transport_security) == {"ws": WEBRTC, "wss": WEBRTC, "tls": SDES}   # over the defaults
    assert s.media.extension_security == (("2001", DTLS),)


@pytest.mark.parametrize("raw, key, fix", [
    ({"media": {"security": "srtp-mand"}}, "media.security", "use one of any, rtp, srtp, sdes, dtls, webrtc"),
    ({"media": {"transport_security": {"sctp": "rtp"}}}, "media.transport_security.sctp", "udp, tcp, tls, ws, wss"),
    ({"media": {"transport_security": {"ws": "browser"}}}, "media.transport_security.ws", "webrtc"),
    ({"media": {"extension_security": {"20 01": "sdes"}}}, "media.extension_security.20 01", "username"),
    ({"media": {"extension_security": ["2001"]}}, "media.extension_security", "table of strings"),
    ({"sbc": {"enabled": True, "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                                          "gateways": ["sip:203.0.113.10"], "media_security": "tls"},
              "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                          "gateways": ["sip:198.51.100.10"]}},
      "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                             {"name": "private", "address": "198.51.100.1"}]}}},
     "sbc.public.media_security", 'or "" for media.security'),
])
def test_security_settings_errors_name_the_key_and_the_fix(raw, key, fix):
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert any(p.key == key and fix in str(p) for p in err.value.problems), str(err.value)
