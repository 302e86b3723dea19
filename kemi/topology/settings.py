"""[topology]: topology hiding's storage and the registrar's hiding; which SBC sides hide is a key
of each side's table (sbc.public.hide_topology, sbc.private.hide_topology: beside the side's
networks, gateways and media security). Renders topos's and uac's parameters. docs/sbc.md,
"Topology hiding"."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import TOPOS_EVENT_CALLBACK
from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

TOPOLOGY_RANGES = {             # key: (lowest, highest, unit)
    # a dialog record must outlive the longest call: topos does not refresh it on re-INVITEs
    "dialog_expire": (600, 7 * 86400, "seconds (longer than your longest call)"),
    # a transaction record must outlive tm's INVITE timer (fr_inv_timer, 120 s)
    "branch_expire": (150, 3600, "seconds (longer than tm's 120 s INVITE timer)"),
}


@dataclass(frozen=True)
class TopologySettings:
    # the registrar (sbc.enabled = false): hide every call's parties from each other (each
    # phone sees only the server's address); on the SBC, set sbc.<side>.hide_topology instead
    registrar: bool = False
    # seconds topos keeps a hidden call's record (its dialog_expire): longer than your longest
    # call; an older call's in-dialog requests no longer find their party
    dialog_expire: int = 10800
    # seconds topos keeps a transaction's record (its branch_expire)
    branch_expire: int = 180


def hiding_sides(s: Settings) -> frozenset[str]:
    """Names of the SBC sides that hide (none without the SBC)."""
    if not s.sbc.enabled:
        return frozenset()
    return frozenset(side.name for side in s.sbc.sides if side.hide_topology)


def hides_everything(s: Settings) -> bool:
    """Every call is hidden: the registrar with topology.registrar, or both SBC sides hide."""
    if not s.sbc.enabled:
        return s.topology.registrar
    return all(side.hide_topology for side in s.sbc.sides)


def enabled(s: Settings) -> bool:
    return hides_everything(s) or bool(hiding_sides(s))


def _hiding_key(s: Settings) -> str:
    """The key that turned hiding on, for error messages."""
    if not s.sbc.enabled:
        return "topology.registrar"
    role = next(role for role, side in (("public", s.sbc.public), ("private", s.sbc.private)) if side.hide_topology)
    return f"sbc.{role}.hide_topology"


def validate(s: Settings, source: str) -> None:
    t = s.topology
    for name, (low, high, unit) in TOPOLOGY_RANGES.items():
        value = getattr(t, name)
        require(low <= value <= high, f"topology.{name}", f"{value} is out of range", f"use {low} to {high} {unit}",
                source)
    require(not (s.sbc.enabled and t.registrar), "topology.registrar", "is for the registrar, but sbc.enabled is true",
            "on the SBC set sbc.public.hide_topology / sbc.private.hide_topology instead", source)
    if not enabled(s):
        return
    key = _hiding_key(s)
    require(s.media.enabled, key, "needs media anchoring, but media.enabled is false: the SDP would carry "
            "the other side's media addresses", "set media.enabled = true (rtpengine relays the media)", source)
    require(bool(s.security.route_secret or s.cluster.secret), "security.route_secret",
            f"is empty, but {key} needs a fixed secret: it keys the Call-ID mask and signs the Record-Route "
            "topos keeps, so hidden calls survive a restart",
            "set it, e.g. to the output of `openssl rand -hex 32` (in a cluster: cluster.secret)", source)
    # acc writes a request's Call-ID as received: a BYE from the far side carries the mask, and
    # the call's record would never get its end (measured; docs/sbc.md). Refused until records
    # write the dialog's own Call-ID
    require(not s.records.enabled, key, "cannot be used with records.enabled yet: a call the far side "
            "hangs up would get a record without its end (acc writes the masked Call-ID)",
            "turn off records.enabled, or topology hiding on every side", source)


def cfg_lines(s: Settings) -> list[str]:
    """WITH_TOPOLOGY loads topos (its storage: the database, database.url) and uac (From/To)."""
    if not enabled(s):
        return []
    t = s.topology
    lines = ["#!define WITH_TOPOLOGY",
             f"#!define TOPOS_DIALOG_EXPIRE {t.dialog_expire}",
             f"#!define TOPOS_BRANCH_EXPIRE {t.branch_expire}"]
    if not hides_everything(s):
        # one side hides: the routing tells topos which outgoing messages to leave alone
        lines.append(f'#!define TOPOS_EVENT_CALLBACK "{TOPOS_EVENT_CALLBACK}"')
    return lines
