"""Overload: new requests refused early (503 + Retry-After) while Kamailio cannot keep up.

admission.py  what pipelimit's answer means, which requests may still pass, when to log (plain)
part.py       the KSR part: Overload (pipelimit's check, its stateless 503) / NoOverload (off)
settings.py   [overload]: on/off, the queue limit, Retry-After

docs/reliability.md has the measurements (goodput, p99 and recovery under 1.5x and 3x load,
with and without it) and what to set.
"""
