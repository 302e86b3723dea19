"""Topology hiding (docs/sbc.md, "Topology hiding"): what leaves on a hiding side carries no
address, Via, Contact, Record-Route or Call-ID of the other side.

decisions.py   which calls are hidden, which outgoing messages topos leaves alone, From/To and
               R-URI hosts, redirect contacts (plain)
callid.py      the Call-ID mask: a keyed, reversible, deterministic encryption (plain)
part.py        the KSR part (Topology / NoTopology): topos, uac, the Call-ID on the wire
settings.py    [topology], and sbc.<side>.hide_topology
"""
