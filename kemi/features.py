"""What this Kamailio's KEMI offers beyond 5.6, found by feature detection.

Plain functions of the KSR object (the real one or kemi.testing's fake of any version): the
routing asks which function to call instead of naming a version. A function that a module
does not export is simply absent from it (`getattr(KSR.sl, "x", None)` is None), on the real
KSR as on the fake.
"""
from __future__ import annotations


def error_reply(ksr):
    """The function that answers a request from Kamailio's internal error code (after
    save(), t_relay() or another function failed and set it).

    5.8+: sl.send_reply_error(), which sends that reply statefully when a transaction exists
    (after a failed t_relay() there is one: tm then retransmits the reply and absorbs the
    request's retransmissions), statelessly otherwise. 5.6 has only sl.sl_reply_error(),
    always stateless. (tm.t_reply_error(), new in the same release, is the stateful half of
    send_reply_error(): it fails when there is no transaction.)
    """
    send = getattr(ksr.sl, "send_reply_error", None)
    return send if send is not None else ksr.sl.sl_reply_error
