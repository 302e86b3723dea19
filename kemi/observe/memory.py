"""What a Kamailio process's Python holds, written to a file now and then: the soak's debug hook.

Off by default (settings metrics.python_memory_interval = 0): the Router then builds nothing
and no message pays anything. With N > 0 seconds (a restart applies it), each process that
runs Python starts tracemalloc in child_init and, on the first message at least N seconds
after its last report, appends one JSON line to `<runtime.dir>/python-memory/<pid>.jsonl`:

    {"pid": 4711, "time": ..., "messages": 81234, "gc_objects": 61234, "allocated_blocks": ...,
     "traced_bytes": ..., "traced_peak": ..., "gc_collections": [..], "types": [["dict", 9123], ...],
     "top": [["kemi/routing/router.py:201", 123456, 789], ...]}

gc_objects counts the objects the cyclic GC tracks (containers); allocated_blocks every
block pymalloc holds (strings too, sys.getallocatedblocks()); traced_bytes what tracemalloc
sees allocated now, and top its largest allocation sites (file:line, bytes, blocks). make soak
(bench/soak.py) reads the files and judges their slopes.

Cost while on: tracemalloc slows every allocation (about 2x for allocation-heavy code) and
stores a trace per block, so a worker's RSS grows by some tens of percent; each report walks
gc.get_objects() and takes a tracemalloc snapshot (some tens of milliseconds every N s). A
debugging and soak tool, not for production traffic.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

# stack depth tracemalloc keeps per allocation (1: the line that allocated)
TRACE_FRAMES = 1
# allocation sites and object types per report
TOP = 12
MEMORY_DIR = "python-memory"


def start_tracing() -> None:
    """In each process, once (child_init): allocations from now on are traced."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)


def short_path(filename: str) -> str:
    """A traced file name without the install prefix: kemi/routing/router.py, cachetools/__init__.py."""
    parts = filename.replace("\\", "/").split("/")
    for anchor in ("kemi", "kemi_tools", "dist-packages", "site-packages"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i + (anchor.endswith("packages")):])
    return "/".join(parts[-2:])


def snapshot(messages: int) -> dict:
    """What this process's Python holds now (the report's fields, above)."""
    objects = gc.get_objects()
    types = Counter(type(o).__name__ for o in objects).most_common(TOP)
    count = len(objects)
    del objects
    report: dict = {"pid": os.getpid(), "time": time.time(), "messages": messages, "gc_objects": count,
                    "allocated_blocks": sys.getallocatedblocks(),
                    "gc_collections": [s["collections"] for s in gc.get_stats()], "types": types}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        stats = tracemalloc.take_snapshot().statistics("lineno")[:TOP]
        report.update(traced_bytes=current, traced_peak=peak,
                      top=[[f"{short_path(s.traceback[0].filename)}:{s.traceback[0].lineno}", s.size, s.count]
                           for s in stats])
    return report


class MemoryProbe:
    """Wraps one Router callback: counts messages, appends a report every `interval` seconds."""

    def __init__(self, directory: str | os.PathLike, interval: float, clock=time.monotonic):
        self.directory = Path(directory)
        self.interval, self.clock = interval, clock
        self.messages = 0
        self.due = clock() + interval

    def wrap(self, callback):
        def probed(*args):
            self.messages += 1
            if self.clock() >= self.due:
                self.report()
            return callback(*args)
        return probed

    def report(self) -> None:
        self.due = self.clock() + self.interval
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            line = json.dumps(snapshot(self.messages), separators=(",", ":"))
            with open(self.directory / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            pass            # a full disk must not stop routing; the soak sees the gap
