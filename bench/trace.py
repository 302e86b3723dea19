"""Which files of the package one message passes through: `python3 -m bench.trace [-v]`.

Runs a path of bench.python_cost (an SBC INVITE with SDP by default) once on its stub KSR
with a profile hook and prints: the kemi files it enters, how often the running file changes
(a call into another file or a return to another one), how often it returns into
kemi/routing/router.py from another file, and the same for what tells rtpengine about the SDP
(the media part's on_request, to its return: the SDP's view, the flags, the offer). A layout
where a feature lives in one folder shows few changes; issue 18 measured both before and after
its restructuring.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.python_cost import NOT_BANNED, SBC_PATHS, SBC_TABLES, StubKSR, _NoDids
from kemi.routing import Router

PACKAGE = Path(__file__).resolve().parent.parent / "kemi"
ROUTER_FILE = PACKAGE / "routing" / "router.py"
PATH_NAME = "SBC: INVITE public trunk -> gateways"
# the media part's entry: from it to its return, what it takes to tell rtpengine about the SDP
FLAG_ENTRIES = ("on_request",)


def trace(entry: str, pvs: dict, answers: dict, settings) -> list[tuple[str, str, str]]:
    """(event, file, function) for every call and return inside the kemi package."""
    ksr = StubKSR(dict(pvs), {**NOT_BANNED, **answers})
    router = Router(ksr, settings, subscribers=None, dids=_NoDids())
    handler = getattr(router, entry)
    handler(None)                       # warm: per-process caches filled, as in a running worker
    events: list[tuple[str, str, str]] = []

    def hook(frame, event, _arg):
        if event in ("call", "return"):
            file = frame.f_code.co_filename
            if file.startswith(str(PACKAGE)):
                events.append((event, file, frame.f_code.co_name))
    sys.setprofile(hook)
    try:
        handler(None)
    finally:
        sys.setprofile(None)
    return events


def summary(events: list[tuple[str, str, str]]) -> dict:
    """files entered, file changes, returns into router.py (from another file)."""
    stack: list[str] = []
    files: list[str] = []
    changes, returns = 0, 0
    current: str | None = None
    for event, file, _fn in events:
        now: str | None
        if event == "call":
            stack.append(file)
            now = file
        else:
            stack.pop() if stack else None
            now = stack[-1] if stack else None
            if now == str(ROUTER_FILE) and file != now:
                returns += 1
        if now is not None and now != current:
            if current is not None:
                changes += 1
            current = now
            if now not in files:
                files.append(now)
    return {"files": files, "changes": changes, "returns_into_router": returns}


def flag_events(events):
    """The events from the first call of a FLAG_ENTRIES function to its return."""
    for i, (event, _file, fn) in enumerate(events):
        if event == "call" and fn in FLAG_ENTRIES:
            depth = 0
            for j in range(i, len(events)):
                depth += 1 if events[j][0] == "call" else -1
                if depth == 0:
                    return events[i:j + 1]
    return []


def main(argv: list[str]) -> int:
    from kemi.settings import parse_settings

    entry, pvs, answers = SBC_PATHS[PATH_NAME]
    events = trace(entry, pvs, answers, parse_settings(SBC_TABLES, source="bench.trace"))
    for name, part in (("whole message", events), ("rtpengine flags", flag_events(events))):
        s = summary(part)
        print(f"{PATH_NAME}, {name}: {len(s['files'])} kemi files, {s['changes']} file changes, "
              f"{s['returns_into_router']} returns into router.py")
        if "-v" in argv:
            for f in s["files"]:
                print(f"    {Path(f).relative_to(PACKAGE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
