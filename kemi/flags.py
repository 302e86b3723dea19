"""Message flags (FLT_) and branch flags (FLB_) used by the routes.

The numbers are rendered into kamailio-settings.cfg as #!define lines, so modparams in
kamailio.cfg (usrloc nat_bflag, nathelper sipping_bflag) use the very same values.
"""
__all__ = ["FLT_NATS", "FLB_NATB", "FLB_NATSIPPING", "FLT_SDP_OFFER"]

FLT_NATS = 5          # the request's sender is behind NAT
FLB_NATB = 6          # the branch's destination is behind NAT (stored with the contact)
FLB_NATSIPPING = 7    # send SIP OPTIONS keepalives to this contact
FLT_SDP_OFFER = 8     # the request carried an SDP offer to rtpengine: its 1xx/2xx SDP is the answer
