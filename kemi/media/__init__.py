"""Media anchoring with rtpengine (docs/media.md).

actions.py   which rtpengine operation a request / reply / failure needs (plain)
flags.py     the flag strings for offer / answer / delete: profile, NAT, direction= (plain)
security.py  media security: what an SDP carries (SDES, DTLS, ICE), the transport / SDES / DTLS /
             ICE / rtcp-mux flags a receiver needs, the 488 refusals (plain)
view.py      SdpView: what the call's sides say about one SDP (the sides part answers it)
part.py      the KSR parts: Rtpengine / NoMedia (offer, answer, delete), MediaSecurity / NoSecurity
settings.py  [media]: instances, the daemon `make run` starts, profiles, media security

The daemon `make run` starts is kemi_tools/stack/rtpengine.py.
"""
