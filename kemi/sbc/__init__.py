"""The dual-NIC SBC (docs/sbc.md): two sides (NICs), a gateway set per side, rtpengine between them.

direction.py   which side a request comes from: socket name, then source CIDR (plain)
policy.py      where a call goes (gateway set or extension), when to fail over (plain)
media.py       rtpengine interfaces (direction=), profile and media security of a call's SDP (plain)
part.py        the KSR part (SbcSides, SbcMessage): what the Router asks its sides part, the SBC's answers
settings.py    [sbc]
"""
