"""NAT: phones behind NAT routers stay reachable (nathelper in C does the work).

work.py   whether tm's branch and reply routes have NAT work for a request (plain functions)
part.py   the KSR part (Nat): detection, the registration's keepalive flags, the contact alias,
          whether an SDP's sender is behind NAT (rtpengine's SIP-source-address)
settings.py [nat]: the keepalive interval
"""
