"""What `make bench` measures: one entry per scenario.

A scenario names the SIPp load (`kind`) and the state Kamailio runs with (usrloc db_mode,
how many contacts are registered, how many calls are held open around the measured ones).
Scenarios with the same state share one start of both Kamailios.

Adding a scenario is adding an entry here; a new kind of load adds a `Load` class in
bench/run.py that prepares what the load needs (gateway SIPps, ...) and builds the SIPp
command line, and names it here. `media` and `sbc` are part of the Kamailio state: the bench
starts rtpengine (on the slot's ports) for media scenarios and both Kamailios as SBCs on
loopback sides (bench/stack.py) for sbc ones.
"""
from __future__ import annotations

from dataclasses import dataclass

SUBSCRIBERS = 10_000


@dataclass(frozen=True)
class Scenario:
    name: str                 # short id, used in JSON and the plot
    title: str                # what the table says
    kind: str                 # "register" or "call" (a Load in bench/run.py)
    usrloc_db_mode: int = 1
    contacts: int = SUBSCRIBERS   # registered contacts (preloaded by usrloc)
    held_calls: int = 0       # calls held open through the proxy while measuring
    probe_rate: int = 200     # calls/s of the first, calibrating run
    media: bool = False       # rtpengine anchoring on (media.enabled; bench starts rtpengine)
    sbc: bool = False         # the SBC path (sbc.enabled, loopback sides, gateway SIPps)

    @property
    def state(self) -> tuple:
        """Scenarios with equal state run on the same Kamailio start."""
        return (self.usrloc_db_mode, self.contacts, self.media, self.sbc)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("register-db1", "REGISTER + digest auth, usrloc db_mode 1", "register"),
    Scenario("call", "call 2002->2001 (INVITE/407/180/200/ACK/BYE), db_mode 1", "call", probe_rate=100),
    Scenario("call-held-100", "call, 100 calls held open", "call", held_calls=100, probe_rate=100),
    Scenario("call-held-1000", "call, 1,000 calls held open", "call", held_calls=1000, probe_rate=100),
    Scenario("register-db2", "REGISTER + digest auth, usrloc db_mode 2", "register", usrloc_db_mode=2),
    Scenario("register-1k", "REGISTER, 1,000 contacts registered", "register", contacts=1_000),
    Scenario("call-1k", "call, 1,000 contacts registered", "call", contacts=1_000, probe_rate=100),
    Scenario("register-100k", "REGISTER, 100,000 contacts registered", "register", contacts=100_000),
    Scenario("call-100k", "call, 100,000 contacts registered", "call", contacts=100_000, probe_rate=100),
    Scenario("call-media", "call with rtpengine anchoring (offer/answer/delete)", "call", media=True,
             probe_rate=100),
    Scenario("sbc", "SBC call, public gateway -> dispatcher -> 2 private gateways, rtpengine", "sbc",
             media=True, sbc=True, probe_rate=100),
)


def select(names: list[str] | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
