"""Which rtpengine operation a SIP message needs: plain functions, no KSR.

An SDP offer can come in the request (INVITE, UPDATE, re-INVITE) or, for a late offer, in
the 1xx/2xx reply; the answer then comes in the reply, or in the ACK (PRACK). A session
ends with BYE, CANCEL or the initial INVITE's final failure.
"""
from __future__ import annotations

from kemi import sip
from kemi.media.flags import ANSWER, DELETE, OFFER

OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
ANSWER_METHODS = frozenset({"ACK", "PRACK"})
ENDING_METHODS = frozenset({"BYE", "CANCEL"})


def request_action(method: str, has_sdp: bool) -> str | None:
    """The operation for a request about to be relayed (None: leave it alone)."""
    if method in ENDING_METHODS:
        return DELETE
    if not has_sdp:
        return None
    if method in OFFER_METHODS:
        return OFFER
    if method in ANSWER_METHODS:
        return ANSWER
    return None


def reply_action(status: int, has_sdp: bool, request_offered: bool) -> str | None:
    """For a 1xx (not 100) or 2xx reply: answer the request's offer, or it is a late offer."""
    if not has_sdp or not 100 < status < 300:
        return None
    return ANSWER if request_offered else OFFER


def failure_action(in_dialog: bool, canceled: bool) -> str | None:
    """After the final failure (>= 300 or timeout) of an INVITE.

    The initial INVITE's session is deleted: nothing will ever use it. A CANCELed one was
    deleted when the CANCEL came through. A failed re-INVITE (491, 488, ...) leaves the
    call as it was, so its session stays.
    """
    if in_dialog or canceled:
        return None
    return DELETE


def offer_failed_reply(rtpengine_answered: bool) -> sip.Reply:
    """rtpengine refused the SDP (it answered with an error): 488. No answer at all: 503."""
    return sip.NOT_ACCEPTABLE_HERE if rtpengine_answered else sip.SERVICE_UNAVAILABLE
