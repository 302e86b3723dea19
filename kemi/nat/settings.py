"""[nat]: keeping phones behind NAT routers reachable; renders nathelper's keepalive interval."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

# seconds between two keepalives; 0 = none
KEEPALIVE_RANGE = (0, 3600)


@dataclass(frozen=True)
class NatSettings:
    # seconds between the OPTIONS keepalives nathelper sends to each contact registered from
    # behind NAT (natping_interval); shorter than the NAT routers' UDP binding timeout, or a
    # silent phone becomes unreachable (many routers forget a binding after 20 to 30 s:
    # 15 is safe for those). 0 = no keepalives
    keepalive_interval: int = 30


def validate(s: Settings, source: str) -> None:
    low, high = KEEPALIVE_RANGE
    value = s.nat.keepalive_interval
    require(low <= value <= high, "nat.keepalive_interval", f"{value} is out of range",
            f"use {low} (no keepalives) to {high} seconds, shorter than the NAT routers' UDP timeout "
            "(e.g. 15 for routers that forget a binding after 20 s)", source)


def cfg_lines(s: Settings) -> list[str]:
    return [f"#!define NAT_KEEPALIVE_INTERVAL {s.nat.keepalive_interval}"]
