"""Scanner User-Agents: sipvicious, sipcli and friends announce themselves.

Real attackers can change the User-Agent, so this is the cheap first filter, not the
defence: it keeps the noise of the common tools (which never change it) out of the logs
and the DB. Matching is a case-insensitive substring test against the settings list.
"""
from __future__ import annotations

from collections.abc import Iterable


class ScannerFilter:
    """Built once from settings `security.scanner_user_agents`; `matches()` per request."""

    __slots__ = ("_needles",)

    def __init__(self, user_agents: Iterable[str]):
        self._needles = tuple(dict.fromkeys(ua.strip().casefold() for ua in user_agents if ua.strip()))

    def __bool__(self) -> bool:
        return bool(self._needles)

    def matches(self, user_agent: str) -> bool:
        if not user_agent or not self._needles:
            return False
        ua = user_agent.casefold()
        return any(needle in ua for needle in self._needles)


def is_scanner(user_agent: str, user_agents: Iterable[str]) -> bool:
    """One-off form of ScannerFilter(user_agents).matches(user_agent)."""
    return ScannerFilter(user_agents).matches(user_agent)
