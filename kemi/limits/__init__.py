"""Call limits at the border (docs/sbc.md, "Call limits"): concurrent calls per subscriber, side,
trunk and gateway (dialog profiles), INVITEs per second per source, gateway and trunk (pipelimit).

calls.py       which counts a call takes, each count's limit, the answer when one is full (plain)
rate.py        which pipes an INVITE passes, the answer over the rate (plain)
part.py        the KSR parts (CallLimits / NoCallLimits, CallRate / NoCallRate)
settings.py    [limits]
The per-name limits of the call_limits table are read by kemi/store/limits.py.
"""
