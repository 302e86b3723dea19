"""Media anchoring with rtpengine: the decisions, as plain functions of plain values.

flags.py    the rtpengine flag strings for offer / answer / delete (profile, NAT, direction)
actions.py  which operation a request / reply / failure needs
security.py media security: what an SDP carries (SDES, DTLS, ICE), the transport / SDES /
            DTLS / ICE / rtcp-mux flags the receiver needs, the 488 refusals

The routes that call rtpengine (KSR.rtpengine.*) are in kemi/routing/media.py; the daemon
`make run` starts is in kemi_tools/stack/rtpengine.py; settings are the [media] table.
"""
from kemi.media.flags import ANSWER, DELETE, OFFER, build_flags

# the pseudo-variable rtpengine's rtp_inst_pvar fills with the instance that answered
from kemi.names import RTPENGINE_INSTANCE_PV

__all__ = ["ANSWER", "DELETE", "OFFER", "RTPENGINE_INSTANCE_PV", "build_flags"]
