"""Reading callgrind's output files: self cost per (object, function) and the calls between them.

callgrind (valgrind --tool=callgrind) writes one file per dump in its own text format
(https://valgrind.org/docs/manual/cl-format.html): name compression "fn=(id) name", cost
lines "<positions> <event counts>", and after each "calls=" line one cost line holding the
INCLUSIVE cost of that call (not the caller's own cost). `parse()` turns a file into a
`Profile`; `category()` says which part of the system an object is (libpython, the KSR
glue of app_python3, Kamailio's core or a module, libc ...). Plain functions of text: no
valgrind needed to test them.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CACHE_LINE_BITS = 6           # 64-byte cache lines
# the libc functions that format text (printf family): "who formats text per message"
# (glibc 2.36: __vfprintf_internal, _IO_default_xsputn ...; 2.41: __printf_buffer ...)
FORMATTING = re.compile(r"printf|_IO_str|_IO_default_xsputn|_itoa|__strchrnul")


@dataclass
class Profile:
    """One dump: costs by event name (Ir, and with --cache-sim=yes I1mr, D1mr, ... )."""
    events: list[str] = field(default_factory=list)
    # (object, function) -> event counts, the function's own cost
    self_cost: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # ((caller object, function), (callee object, function)) -> [calls, inclusive event counts...]
    calls: dict[tuple[tuple[str, str], tuple[str, str]], list[int]] = field(default_factory=dict)
    trigger: str = ""
    # with --dump-instr=yes --compress-pos=no: the 64-byte lines of code executed, per object
    # (the instruction-cache footprint of the dump: what a cold cache must fetch)
    code_lines: dict[str, set[int]] = field(default_factory=dict)

    def total(self, event: str = "Ir") -> int:
        i = self.events.index(event)
        return sum(c[i] for c in self.self_cost.values())


def _name(table: dict, text: str) -> str:
    """Resolve callgrind's name compression: "(12) name" defines id 12, "(12)" refers to it."""
    text = text.strip()
    if text.startswith("("):
        close = text.index(")")
        key, rest = text[1:close], text[close + 1:].strip()
        if rest:
            table[key] = rest
            return rest
        return table.get(key, f"({key})")
    return text


def parse(path: Path) -> Profile:
    prof = Profile()
    names: dict[str, dict] = {"ob": {}, "fl": {}, "fn": {}}
    npos = 1
    instr = False             # the first subposition is an instruction address
    ob = fn = ""
    cob = cfn = None
    pending_call: list[int] | None = None       # the calls= line waiting for its cost line
    with open(path, errors="replace") as f:
        for line in f:
            if not line or line == "\n":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                values = [int(v) for v in parts[npos:]]
                values += [0] * (len(prof.events) - len(values))
                if pending_call is not None:
                    edge = ((ob, fn), (cob if cob is not None else ob, cfn or ""))
                    slot = prof.calls.setdefault(edge, [0] * (1 + len(prof.events)))
                    slot[0] += pending_call[0]
                    for i, v in enumerate(values):
                        slot[1 + i] += v
                    pending_call = None
                    cob = cfn = None
                else:
                    slot = prof.self_cost.setdefault((ob, fn), [0] * len(prof.events))
                    for i, v in enumerate(values):
                        slot[i] += v
                    if instr and c == "0":          # absolute (--compress-pos=no): 0x...
                        prof.code_lines.setdefault(ob, set()).add(int(parts[0], 16) >> CACHE_LINE_BITS)
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = _name(names["fn"], value)
            elif key == "ob":
                ob = _name(names["ob"], value)
            elif key == "cob":
                cob = _name(names["ob"], value)
            elif key == "cfn":
                cfn = _name(names["fn"], value)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                _name(names["fl"], value)
            elif key == "calls":
                pending_call = [int(value.split()[0])]
            elif line.startswith("events:"):
                prof.events = line.split(":", 1)[1].split()
            elif line.startswith("positions:"):
                kinds = line.split(":", 1)[1].split()
                npos, instr = len(kinds), kinds[0] == "instr"
            elif line.startswith("desc: Trigger:"):
                prof.trigger = line.split(":", 2)[2].strip()
    return prof


# --- what part of the system an object file is ----------------------------------------------

def category(obj: str, fn: str = "") -> str:
    """The part of the system a function belongs to, by its object file (and name for libc)."""
    name = obj.rsplit("/", 1)[-1]
    if name.startswith("libpython"):
        return "libpython"
    if name.startswith("app_python3"):
        return "ksr_glue"
    if "/lib-dynload/" in obj or ("python3" in obj and name.endswith(".so")):
        return "python_ext"
    if name == "kamailio":
        return "kamailio_core"
    if "/kamailio/modules/" in obj:
        return "kamailio_modules"
    if name.startswith("libc.so") or name.startswith("libc-"):
        return "libc_format" if FORMATTING.search(fn) else "libc"
    if name.startswith(("libmariadb", "libmysqlclient")):
        return "db_client"
    if name.startswith(("libcrypto", "libssl")):
        return "libcrypto"
    return "other"


CATEGORIES = ("libpython", "ksr_glue", "python_ext", "kamailio_core", "kamailio_modules", "libc",
              "libc_format", "db_client", "libcrypto", "other")
LABELS = {
    "libpython": "libpython (the interpreter running kemi's code)",
    "ksr_glue": "KSR glue (app_python3: the KSR.* export wrappers, route entry)",
    "python_ext": "Python extension modules (lib-dynload, _mysql ...)",
    "kamailio_core": "Kamailio core",
    "kamailio_modules": "Kamailio modules",
    "libc": "libc (without formatting)",
    "libc_format": "libc text formatting (printf family)",
    "db_client": "MySQL client library",
    "libcrypto": "libcrypto",
    "other": "other libraries (ld.so, libm ...)",
}


def module_of(obj: str) -> str:
    """A short name for an object file: the module or library name."""
    name = obj.rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".so") else name


def by_category(prof: Profile, event: str = "Ir") -> Counter:
    i = prof.events.index(event)
    out: Counter = Counter()
    for (obj, fn), cost in prof.self_cost.items():
        out[category(obj, fn)] += cost[i]
    return out


def by_object(prof: Profile, event: str = "Ir") -> Counter:
    i = prof.events.index(event)
    out: Counter = Counter()
    for (obj, _fn), cost in prof.self_cost.items():
        out[module_of(obj)] += cost[i]
    return out


def by_function(prof: Profile, event: str = "Ir") -> Counter:
    i = prof.events.index(event)
    out: Counter = Counter()
    for (obj, fn), cost in prof.self_cost.items():
        out[f"{module_of(obj)}:{fn}"] += cost[i]
    return out


def edges(prof: Profile, caller, callee, event: str = "Ir") -> int:
    """Inclusive cost of the calls for which caller((obj, fn)) and callee((obj, fn)) hold."""
    i = 1 + prof.events.index(event)
    return sum(v[i] for (a, b), v in prof.calls.items() if caller(a) and callee(b))


def call_counts(prof: Profile, caller, callee) -> int:
    return sum(v[0] for (a, b), v in prof.calls.items() if caller(a) and callee(b))
