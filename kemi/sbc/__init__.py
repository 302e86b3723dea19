"""The dual-NIC SBC's decisions as plain functions (no KSR here): unit-tested without Kamailio.

direction.py   which side (NIC) a request comes from: socket name, then source CIDR
policy.py      where a call goes (gateway set or extension), when to fail over
media.py       rtpengine interfaces (direction=) and profile for an SDP of a call

The routes that call them (KSR at the edges) are in kemi/routing/sbc.py.
"""
from kemi.sbc.direction import CallSides, Detection, Side, Sides, sides_from_settings

__all__ = ["CallSides", "Detection", "Side", "Sides", "sides_from_settings"]
