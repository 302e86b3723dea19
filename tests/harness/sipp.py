"""SIPp in the tests: kemi_tools/sipp.py's runner with the tests' defaults.

Scenarios are in kemi_tools/scenarios/. Every message a test's SIPp sends or receives is
traced (SippResult.received()), and a run given no port gets one of this slot's.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.stack import free_port
from kemi_tools import sipp as runner
from kemi_tools.sipp import SCENARIOS, SippResult, auth_row

__all__ = ["SCENARIOS", "Sipp", "SippResult", "auth_row"]


@dataclass
class Sipp(runner.Sipp):
    trace_msg: bool = True

    def pick_port(self) -> int:
        return free_port()
