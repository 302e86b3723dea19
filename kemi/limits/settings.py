"""[limits]: concurrent call limits (dialog profiles) per subscriber, side, trunk and gateway,
overridable per name from the call_limits table; call-rate limits (pipelimit) per source,
gateway and trunk; the emergency numbers no limit refuses. Renders the dialog and pipelimit
defines. docs/sbc.md, "Call limits"."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from kemi.names import LIMIT_PROFILES, PIPELIMIT_INTERVAL_S
from kemi.schema import pipelimit_lines, require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

EMERGENCY_RE = re.compile(r"^[0-9+*#]{1,32}$")
MAX_CALLS = 1_000_000
MAX_CPS = 100_000
# the dialog module refuses a keepalive interval below 30 s (dialog.c mod_init)
MIN_KEEPALIVE = 30
# pipelimit's window (timer_interval, s): its TAILDROP pipes let `limit` requests through per window
RATE_WINDOW = PIPELIMIT_INTERVAL_S
# pipes idle this many windows are removed (a scan from many addresses cannot grow the table for good)
RATE_CLEAN_UNUSED = 60


@dataclass(frozen=True)
class PerSide:
    """One value per SBC side (sbc.public, sbc.private); 0 = no limit."""
    public: int = 0
    private: int = 0


@dataclass(frozen=True)
class LimitsSettings:
    # --- concurrent calls (dialog module profiles); 0 = no limit -----------------------------
    # calls a subscriber makes / receives at once (an authenticated caller; a local extension rung)
    caller_calls: int = 0
    callee_calls: int = 0
    # SBC: calls from or to one gateway address at once
    gateway_calls: int = 0
    # SBC: calls from or to one side's gateway set (the trunk) at once
    trunk_calls: PerSide = PerSide()
    # SBC: calls arriving on one side at once (from its gateways and its subscribers)
    side_calls: PerSide = PerSide()
    # read per-name limits from the call_limits table (kind, name, max_calls), which win
    # over the values above; cached per Kamailio process for cache_ttl seconds
    from_database: bool = False
    cache_ttl: int = 5
    cache_size: int = 10000
    # --- call rate (pipelimit): initial INVITEs per second; 0 = no limit ---------------------
    # per source address that is not a listed gateway (counted after digest auth)
    source_cps: int = 0
    # SBC: per gateway address, and per side's gateways together
    gateway_cps: int = 0
    trunk_cps: PerSide = PerSide()
    # --- what every limit shares ----------------------------------------------------------------
    # R-URI users (numbers dialled) never refused by a limit (counted all the same)
    emergency: tuple[str, ...] = ("112", "911")
    # seconds in the Retry-After of a 503 for a full trunk, gateway or side
    retry_after: int = 5
    # s without any in-dialog request before a call is ended (BYE to both) and released
    call_timeout: int = 43200
    # s between in-dialog OPTIONS to both parties (0 = none, else at least 30): a party that
    # does not answer one is gone, its call ended 10 s later (BYE to the other) and released
    keepalive_interval: int = 0
    # cluster: every node counts the calls of every node (dialog replication over DMQ);
    # false: each node counts only its own
    shared: bool = True

    @property
    def calls_on(self) -> bool:
        """Concurrent limits are counted (the dialog module is loaded)."""
        return self.from_database or any(
            v > 0 for v in (self.caller_calls, self.callee_calls, self.gateway_calls,
                            *_sides(self.trunk_calls), *_sides(self.side_calls)))

    @property
    def rate_on(self) -> bool:
        """Call-rate limits are checked (pipelimit is loaded)."""
        return any(v > 0 for v in (self.source_cps, self.gateway_cps, *_sides(self.trunk_cps)))


def _sides(values: PerSide) -> tuple[int, ...]:
    return tuple(getattr(values, f.name) for f in fields(PerSide))


# key: (lowest, highest, fix)
RANGES = {
    "caller_calls": (0, MAX_CALLS, "concurrent calls (0 = no limit)"),
    "callee_calls": (0, MAX_CALLS, "concurrent calls (0 = no limit)"),
    "gateway_calls": (0, MAX_CALLS, "concurrent calls (0 = no limit)"),
    "source_cps": (0, MAX_CPS, "INVITEs per second (0 = no limit)"),
    "gateway_cps": (0, MAX_CPS, "INVITEs per second (0 = no limit)"),
    "cache_ttl": (0, 3600, "seconds"),
    "cache_size": (1, 10_000_000, "entries"),
    "retry_after": (1, 3600, "seconds"),
    "call_timeout": (2, 7 * 86400, "seconds"),
}
# SBC-only keys: what a registrar has none of
SBC_ONLY = ("gateway_calls", "gateway_cps")
SBC_ONLY_SIDES = ("trunk_calls", "side_calls", "trunk_cps")


def validate(s: Settings, source: str) -> None:
    lim = s.limits
    for key, (low, high, unit) in RANGES.items():
        value = getattr(lim, key)
        require(low <= value <= high, f"limits.{key}", f"{value} is out of range", f"use {low} to {high} {unit}",
                source)
    for key in SBC_ONLY_SIDES:
        for side in fields(PerSide):
            value = getattr(getattr(lim, key), side.name)
            high = MAX_CPS if key.endswith("cps") else MAX_CALLS
            require(0 <= value <= high, f"limits.{key}.{side.name}", f"{value} is out of range",
                    f"use 0 (no limit) to {high}", source)
    require(lim.keepalive_interval == 0 or MIN_KEEPALIVE <= lim.keepalive_interval <= 3600,
            "limits.keepalive_interval", f"{lim.keepalive_interval} is out of range",
            f"use 0 (no keepalives) or {MIN_KEEPALIVE} to 3600 seconds (the dialog module's minimum is "
            f"{MIN_KEEPALIVE})", source)
    for number in lim.emergency:
        require(EMERGENCY_RE.match(number) is not None, "limits.emergency", f"{number!r} is not a number",
                'list the R-URI users as dialled, digits (and + * #), e.g. ["112", "911"]', source)
    if not s.sbc.enabled:
        for key in SBC_ONLY:
            require(getattr(lim, key) == 0, f"limits.{key}", "is set but there are no gateways (sbc.enabled "
                    "is false)", "remove it, or turn the SBC on", source)
        for key in SBC_ONLY_SIDES:
            require(not any(_sides(getattr(lim, key))), f"limits.{key}", "is set but there are no SBC sides "
                    "(sbc.enabled is false)", "remove it, or turn the SBC on", source)


def cfg_lines(s: Settings) -> list[str]:
    """The dialog module (requested with WITH_DIALOG, which other features may request too) and
    this feature's dialog and pipelimit parameters (kamailio-common.cfg)."""
    lim = s.limits
    lines: list[str] = []
    if lim.calls_on:
        lines += [
            # any feature may ask for the dialog module: defined once, whoever asks first
            "#!ifndef WITH_DIALOG",
            "#!define WITH_DIALOG",
            "#!endif",
            "#!define WITH_CALL_LIMITS",
            f'#!define DLG_PROFILES "{";".join(LIMIT_PROFILES.values())}"',
            f"#!define DLG_CALL_TIMEOUT {lim.call_timeout}",
            f"#!define DLG_KA_INTERVAL {lim.keepalive_interval}",
        ]
        if s.cluster.enabled and lim.shared:
            # dialog ids: node N uses N, N + step, ... (never one another node's, replicated over DMQ)
            lines += ["#!define WITH_SHARED_CALL_LIMITS", f"#!define DLG_H_ID_STEP {len(s.cluster.nodes) + 1}"]
    if lim.rate_on:
        lines += [*pipelimit_lines(), "#!define WITH_CALL_RATE_LIMITS",
                  f"#!define PL_CLEAN_UNUSED {RATE_CLEAN_UNUSED}"]
    return lines
