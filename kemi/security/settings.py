"""[security]: the screen's limits (floods, failed digest attempts, bans), scanner User-Agents and
the Record-Route secret; renders pike's and htable's parameters. docs/security.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.names import AUTH_FAILURE_TABLE, BAN_TABLE
from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

SECURITY_RANGES = {             # key: (lowest, highest, unit) accepted
    "flood_interval": (1, 60, "seconds"),
    # pike keeps this limit in a 16-bit counter (ip_tree.h max_hits): a larger value wraps
    # silently (100,000 became 34,464, and a branch turns hot at a quarter of it)
    "flood_requests": (2, 65_535, "requests"),
    "auth_failure_limit": (0, 1000, "failed attempts (0 = never ban for them)"),
    "auth_failure_window": (1, 86400, "seconds"),
    "ban_time": (1, 7 * 86400, "seconds"),
}
# htable expiry timer (seconds): a ban or a failure count lives at most this much longer
HTABLE_TIMER_INTERVAL = 5


@dataclass(frozen=True)
class SecuritySettings:
    # master switch: false turns off scanner drops, flood detection and bans (digest auth stays)
    enabled: bool = True
    # User-Agent substrings (case-insensitive) of SIP scanners: such requests are dropped
    # silently and the source banned; [] disables the check
    scanner_user_agents: tuple[str, ...] = ("friendly-scanner", "sipvicious", "sipcli",
                                            "VaxSIPUserAgent", "pplsip")
    # pike flood detection: more than flood_requests requests per flood_interval seconds
    # from one source address (reached between 1x and 3x for IPv4, see pike) bans it
    flood_detection: bool = True
    flood_interval: int = 2
    flood_requests: int = 30
    # failed digest attempts (wrong password or unknown user) from one source address that
    # get it banned; the count is forgotten auth_failure_window seconds after the last one.
    # 0 = never ban for failed attempts
    auth_failure_limit: int = 5
    auth_failure_window: int = 60
    # seconds a banned source is dropped silently
    ban_time: int = 600
    # secret for the signed Record-Route (kemi/security/dialog.py); "" = a random one per
    # start, which makes dialogs set up before a restart unroutable: set it in production
    route_secret: str = ""


def validate(s: Settings, source: str) -> None:
    sec = s.security
    for name, (low, high, unit) in SECURITY_RANGES.items():
        value = getattr(sec, name)
        require(low <= value <= high, f"security.{name}", f"{value} is out of range",
                f"use {low} to {high} {unit}", source)
    require(sec.route_secret == "" or (len(sec.route_secret) >= 16 and sec.route_secret.isprintable()),
            "security.route_secret", "is shorter than 16 characters or has control characters",
            'use e.g. the output of `openssl rand -hex 32`, or "" for a random one per start', source)
    for agent in sec.scanner_user_agents:
        require(bool(agent.strip()) and agent.isprintable(), "security.scanner_user_agents",
                f"{agent!r} is empty or has control characters", "list plain User-Agent substrings", source)


def cfg_lines(s: Settings) -> list[str]:
    """#!define lines for pike and htable modparams (kamailio.cfg uses them by name)."""
    sec = s.security
    # cluster: bans and failure counts replicated over DMQ, and sent whole to a node that joins
    shared = ";dmqreplicate=1" if s.cluster.enabled and s.cluster.share_bans else ""
    return [
        f"#!define PIKE_SAMPLING_TIME {sec.flood_interval}",
        f"#!define PIKE_REQS_DENSITY {sec.flood_requests}",
        # pike forgets a source (its hit counts) after this many seconds without requests
        f"#!define PIKE_REMOVE_LATENCY {max(sec.flood_interval * 2, 4)}",
        f'#!define HTABLE_BAN "{BAN_TABLE}=>size=10;autoexpire={sec.ban_time}{shared};"',
        # initval=0: sht_inc() creates a missing counter (without it, it fails on a new key)
        f'#!define HTABLE_AUTHFAIL "{AUTH_FAILURE_TABLE}=>size=10;autoexpire={sec.auth_failure_window};'
        f'initval=0{shared};"',
        f"#!define HTABLE_TIMER_INTERVAL {HTABLE_TIMER_INTERVAL}",
    ]
