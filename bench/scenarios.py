"""What `make bench` measures: one entry per scenario.

A scenario names the SIPp load (`kind`) and the state Kamailio runs with (usrloc db_mode,
how many contacts are registered, how many calls are held open around the measured ones).
Scenarios with the same state share one start of both Kamailios.

Adding a scenario is adding an entry here; a new kind of load (rtpengine media, the SBC's
dispatcher path to SIPp gateways) adds a `Load` class in bench/run.py that prepares what the
load needs (rtpengine, gateway SIPps) and builds the SIPp command line, and names it here.
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

    @property
    def state(self) -> tuple:
        """Scenarios with equal state run on the same Kamailio start."""
        return (self.usrloc_db_mode, self.contacts)


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
)


def select(names: list[str] | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
