"""The rtpengine flag builder and the offer/answer/delete decisions: tables of plain values."""
import pytest

from kemi import sip
from kemi.media.actions import failure_action, offer_failed_reply, reply_action, request_action
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags
from kemi.settings import DEFAULT_MEDIA_PROFILE, MediaProfile

SEED = "replace-origin replace-session-connection"
TRANSCODING = MediaProfile("transcoding", flags=("replace-origin",), rtcp_mux=("demux",),
                           codec_mask=("all",), codec_strip=("G729",), codec_transcode=("PCMU", "PCMA"))


@pytest.mark.parametrize("op, profile, kw, expected", [
    # the seed's default: replace o= and session c=, trust the SDP address when not NATed
    (OFFER, DEFAULT_MEDIA_PROFILE, {}, f"{SEED} trust-address endpoint-learning-off strict-source"),
    (ANSWER, DEFAULT_MEDIA_PROFILE, {}, f"{SEED} trust-address endpoint-learning-off strict-source"),
    # behind NAT: the media address is the SIP packet's source
    (OFFER, DEFAULT_MEDIA_PROFILE, {"nat": True}, f"{SEED} SIP-source-address endpoint-learning-heuristic strict-source"),
    (ANSWER, DEFAULT_MEDIA_PROFILE, {"nat": True}, f"{SEED} SIP-source-address endpoint-learning-heuristic strict-source"),
    # delete carries none of the SDP flags
    (DELETE, DEFAULT_MEDIA_PROFILE, {"nat": True}, ""),
    (DELETE, DEFAULT_MEDIA_PROFILE, {"extra": ["via-branch=1"]}, "via-branch=1"),
    # the SBC's two interfaces: direction= twice, the SDP sender's interface first
    (OFFER, DEFAULT_MEDIA_PROFILE, {"ingress": "public", "egress": "private"},
     f"{SEED} trust-address endpoint-learning-off strict-source direction=public direction=private"),
    (OFFER, DEFAULT_MEDIA_PROFILE, {"ingress": "private", "egress": "public", "nat": True},
     f"{SEED} SIP-source-address endpoint-learning-heuristic strict-source direction=private direction=public"),
    # ... on answers too (rtpengine 10.5 applies it there): the answerer's interface first
    (ANSWER, DEFAULT_MEDIA_PROFILE, {"ingress": "private", "egress": "public"},
     f"{SEED} trust-address endpoint-learning-off strict-source direction=private direction=public"),
    (DELETE, DEFAULT_MEDIA_PROFILE, {"ingress": "private", "egress": "public"}, ""),
    # one interface for both sides is allowed (rtpengine repeats it)
    (OFFER, DEFAULT_MEDIA_PROFILE, {"ingress": "pub", "egress": "pub"}, f"{SEED} trust-address endpoint-learning-off strict-source direction=pub direction=pub"),
    # rtcp-mux handling and codec filtering: passed through on offers, in this order
    (OFFER, TRANSCODING, {}, "replace-origin trust-address endpoint-learning-off strict-source rtcp-mux-demux codec-mask=all codec-strip=G729 "
                             "codec-transcode=PCMU codec-transcode=PCMA"),
    (ANSWER, TRANSCODING, {}, "replace-origin trust-address endpoint-learning-off strict-source"),
    # extra flags go last; a repeated flag is written once
    (OFFER, DEFAULT_MEDIA_PROFILE, {"extra": ["replace-origin", "via-branch=auto"]}, f"{SEED} trust-address endpoint-learning-off strict-source via-branch=auto"),
])
def test_build_flags(op, profile, kw, expected):
    assert build_flags(op, profile, **kw) == expected


@pytest.mark.parametrize("kw, message", [
    ({"ingress": "public"}, "both interfaces"),
    ({"egress": "private"}, "both interfaces"),
    ({"ingress": "", "egress": "private"}, "bad rtpengine interface"),
    ({"ingress": "pub lic", "egress": "private"}, "bad rtpengine interface"),
])
def test_build_flags_rejects_half_a_direction(kw, message):
    with pytest.raises(ValueError, match=message):
        build_flags(OFFER, DEFAULT_MEDIA_PROFILE, **kw)


def test_build_flags_rejects_unknown_operation():
    with pytest.raises(ValueError, match="unknown rtpengine operation"):
        build_flags("query", DEFAULT_MEDIA_PROFILE)


@pytest.mark.parametrize("method, has_sdp, expected", [
    ("INVITE", True, OFFER),        # initial INVITE or re-INVITE with an offer
    ("INVITE", False, None),        # late offer: the 200 will carry it
    ("UPDATE", True, OFFER),
    ("UPDATE", False, None),
    ("ACK", True, ANSWER),          # the answer to a late offer
    ("ACK", False, None),
    ("PRACK", True, ANSWER),
    ("BYE", False, DELETE),
    ("BYE", True, DELETE),
    ("CANCEL", False, DELETE),
    ("OPTIONS", True, None),
    ("MESSAGE", False, None),
    ("REGISTER", False, None),
])
def test_request_action(method, has_sdp, expected):
    assert request_action(method, has_sdp) == expected


@pytest.mark.parametrize("status, has_sdp, request_offered, expected", [
    (200, True, True, ANSWER),      # the usual answer
    (183, True, True, ANSWER),      # early media
    (180, True, True, ANSWER),
    (200, True, False, OFFER),      # late offer in the 200
    (183, True, False, OFFER),
    (200, False, True, None),
    (180, False, False, None),
    (100, True, True, None),        # 100 Trying never carries SDP we would use
    (486, True, True, None),        # failures are the failure route's
    (300, True, True, None),
])
def test_reply_action(status, has_sdp, request_offered, expected):
    assert reply_action(status, has_sdp, request_offered) == expected


@pytest.mark.parametrize("in_dialog, canceled, expected", [
    (False, False, DELETE),         # initial INVITE: 4xx/5xx/6xx or timeout
    (False, True, None),            # the CANCEL already deleted it
    (True, False, None),            # a failed re-INVITE leaves the call's media alone
    (True, True, None),
])
def test_failure_action(in_dialog, canceled, expected):
    assert failure_action(in_dialog, canceled) == expected


def test_offer_failed_reply():
    assert offer_failed_reply(rtpengine_answered=False) == sip.SERVICE_UNAVAILABLE
    assert offer_failed_reply(rtpengine_answered=True) == sip.NOT_ACCEPTABLE_HERE
