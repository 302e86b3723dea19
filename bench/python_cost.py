"""What the Python side of each route costs, without Kamailio: `python3 -m bench.python_cost`.

Runs the Router's entry points against a stub KSR whose functions are constant-returning
callables, many times over, and prints per path: microseconds of Python per message and
how many KSR functions it calls (each call into Kamailio costs about 1 µs more on the
benchmark machine, the C work it does aside). It isolates what kemi/routing itself costs,
so a change there can be measured in seconds and on any machine.
"""
from __future__ import annotations

import sys
import timeit
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from kemi.names import DS_CURRENT_GATEWAY, FLT_NATS, LIMIT_SIZE_PV
from kemi.routing import Router
from kemi.security.dialog import rr_param
from kemi.settings import Settings

ITERATIONS = 20_000
# KSR sub-modules (everything else on KSR is a core function)
MODULES = frozenset({"tm", "tmx", "sl", "rr", "maxfwd", "registrar", "auth", "auth_db", "sanity",
                     "nathelper", "siputils", "hdr", "textops", "kx", "pv", "htable", "sqlops",
                     "dispatcher", "rtpengine", "sdpops", "dialog", "pike", "permissions", "ipops", "uac",
                     "pipelimit"})


class StubModule:
    """KSR.<module>: every function answers `answers[name]` (default 1) and is counted."""

    def __init__(self, ksr: StubKSR, name: str):
        self._ksr, self._name = ksr, name

    def __getattr__(self, fn: str):
        key = f"{self._name}.{fn}" if self._name else fn
        value = self._ksr.answers.get(key, 1)
        calls = self._ksr.calls

        def call(*args):
            calls[key] += 1
            return value(*args) if callable(value) else value
        setattr(self, fn, call)          # later look-ups find the function directly
        return call


class StubKSR(StubModule):
    def __init__(self, pvs: dict, answers: dict):
        self.answers, self.calls, self.pvs = answers, Counter[str](), pvs
        super().__init__(self, "")
        self.pv = SimpleNamespace(gete=self._gete, get=self._gete, sets=self._set("sets"),
                                  seti=self._set("seti"))

    def _gete(self, spec):
        self.calls["pv.gete"] += 1
        return self.pvs.get(spec, "")

    def _set(self, name):
        def set_pv(spec, value):
            self.calls[f"pv.{name}"] += 1
        return set_pv

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in MODULES:               # a core function: KSR.force_rport(), KSR.isflagset() ...
            return StubModule.__getattr__(self, name)
        module = StubModule(self, name)
        setattr(self, name, module)
        return module


# from 127.0.0.3 like make bench's callers: not the server's own address, so the security
# screen (ban lookup, pike) runs as for any phone
REQUEST = {"$ru": "sip:200001@127.0.0.1", "$rU": "200001", "$rd": "127.0.0.1", "$fU": "200002",
           "$si": "127.0.0.3", "$sp": 5060, "$ci": "1-2@127.0.0.1", "$tt": ""}

# the source is neither banned (no htable entry) nor flooding (pike: 1)
NOT_BANNED = {"htable.sht_get": None, "pike.pike_check_req": 1}

# make bench's callers and callees are not NATed: no FLT_NATS, no FLB_NATB from the contact,
# no nat=yes in the Route (so route_relay arms no branch route)
NOT_NATED = {"isflagset": lambda flag: flag != FLT_NATS, "isbflagset": False}
# an in-dialog request's Route: ours, signed (the token is filled in per router: its secret)
ROUTE_PARAMS_PV = "$(hdr(Route){nameaddr.uri}{uri.params})"
SIGNED = object()

# path name -> (entry point, PVs, KSR answers)
PATHS: dict[str, tuple[str, dict, dict]] = {
    "REGISTER, challenged (401)": ("ksr_request_route", {**REQUEST, "$rm": "REGISTER", "$rU": ""},
                                   {"tmx.t_precheck_trans": -1, "tm.t_check_trans": -1,
                                    "auth_db.auth_check": -5, "nathelper.nat_uac_test": -1}),
    "REGISTER, authenticated (200)": ("ksr_request_route", {**REQUEST, "$rm": "REGISTER", "$rU": ""},
                                      {"tmx.t_precheck_trans": -1, "tm.t_check_trans": -1,
                                       "nathelper.nat_uac_test": -1, "isflagset": False}),
    "INVITE, challenged (407)": ("ksr_request_route", {**REQUEST, "$rm": "INVITE"},
                                 {"tmx.t_precheck_trans": -1, "tm.t_check_trans": -1,
                                  "auth_db.auth_check": -5, "nathelper.nat_uac_test": -1}),
    "INVITE, relayed to a contact": ("ksr_request_route", {**REQUEST, "$rm": "INVITE"},
                                     {"tmx.t_precheck_trans": -1, "tm.t_check_trans": -1,
                                      "nathelper.nat_uac_test": -1, "tm.t_is_set": -1, **NOT_NATED}),
    "ACK / BYE in dialog (loose_route)": ("ksr_request_route", {**REQUEST, "$rm": "BYE", "$tt": "abc",
                                                                ROUTE_PARAMS_PV: SIGNED},
                                          {"nathelper.nat_uac_test": -1, "isdsturiset": True,
                                           "tm.t_is_set": -1, **NOT_NATED}),
    "branch_route (INVITE, BYE)": ("ksr_branch_manage", {**REQUEST, "$rm": "INVITE"},
                                   {"isflagset": False, "isbflagset": False}),
    "onreply_route (180, 200)": ("ksr_onreply_manage", {**REQUEST, "$rm": "INVITE", "$rs": 180},
                                 {"isflagset": False, "isbflagset": False}),
}

# the SBC as make bench runs it (loopback sides): a public trunk's INVITE to the private
# gateway set, and the gateway's 200 with the SDP answer
SBC_TABLES = {
    "sip": {"listen": ["udp:127.0.0.1:5060"]},
    "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "127.0.1.1"},
                                           {"name": "private", "address": "127.0.2.1"}]}},
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:127.0.1.1:5060"], "networks": ["127.0.1.0/24"],
                       "gateways": ["sip:127.0.1.10:5070"]},
            "private": {"listen": ["udp:127.0.2.1:5060"], "networks": ["127.0.2.0/24"],
                        "gateways": ["sip:127.0.2.10:5070"]}},
}
SBC_INVITE = {**REQUEST, "$rm": "INVITE", "$si": "127.0.1.10", "$Rn": "public", "$rU": "15550100",
              "$ru": "sip:15550100@127.0.1.1", "$avp(sbc_ingress)": "public", "$avp(sbc_gwset)": 2}
SBC_PATHS: dict[str, tuple[str, dict, dict]] = {
    "SBC: INVITE public trunk -> gateways": (
        "ksr_request_route", SBC_INVITE,
        {"tmx.t_precheck_trans": -1, "tm.t_check_trans": -1, "nathelper.nat_uac_test": -1,
         "tm.t_is_set": -1, "kx.get_send_sock_name": "private", "htable.sht_get": None}),
    "SBC: 200 from a gateway (answer)": (
        "ksr_onreply_manage", {**SBC_INVITE, "$rs": 200, "$Rn": "private", "$si": "127.0.2.10"},
        {"isflagset": True, "isbflagset": False}),
}

# the same INVITE with every call limit of an SBC gateway call (kemi/limits/): 5 dialog profile
# counts (side, trunk both ways, gateway both ends) and 2 pipelimit pipes; no count is full
LIMITS_TABLES = {**SBC_TABLES, "limits": {"trunk_calls": {"public": 1000, "private": 1000},
                                          "side_calls": {"public": 1000}, "gateway_calls": 1000,
                                          "gateway_cps": 1000, "trunk_cps": {"public": 1000}}}
LIMITS_PATHS = {
    "SBC: the same INVITE with call limits": (
        "ksr_request_route", {**SBC_INVITE, LIMIT_SIZE_PV: 0, DS_CURRENT_GATEWAY: "sip:127.0.2.10:5070"},
        SBC_PATHS["SBC: INVITE public trunk -> gateways"][2]),
}


class _NoDids:
    def extension(self, did):
        return None


def _paths():
    from kemi.settings import parse_settings

    sbc_settings = parse_settings(SBC_TABLES, source="bench.python_cost")
    limits_settings = parse_settings(LIMITS_TABLES, source="bench.python_cost")
    return [(p, Settings()) for p in PATHS.items()] + [(p, sbc_settings) for p in SBC_PATHS.items()] + \
        [(p, limits_settings) for p in LIMITS_PATHS.items()]


def _handler(path):
    """(handler, stub KSR) of one path: a Router on the stub, its entry point."""
    (name, (entry, pvs, answers)), settings = path
    ksr = StubKSR(dict(pvs), {**NOT_BANNED, **answers})
    router = Router(ksr, settings, subscribers=None, dids=_NoDids())
    if ksr.pvs.get(ROUTE_PARAMS_PV) is SIGNED:     # the Route this router signed for the call
        ksr.pvs[ROUTE_PARAMS_PV] = "lr" + rr_param(router.route_secret, ksr.pvs["$ci"])
    return getattr(router, entry), ksr


def measure(iterations: int = ITERATIONS) -> list[tuple[str, float, int, dict]]:
    out = []
    for path in _paths():
        name = path[0][0]
        handler, ksr = _handler(path)
        handler(None)                           # warm up; count one message's KSR calls
        per_message = dict(ksr.calls)
        failed = [k for k in per_message if k == "err"]
        if failed:
            raise RuntimeError(f"{name}: the route failed against the stub KSR (see ksr.err)")
        if ("relay" in name or "loose_route" in name or "gateways" in name) and "tm.t_relay" not in per_message:
            raise RuntimeError(f"{name}: the path did not relay (refused by the routing?): {per_message}")
        ksr.calls.clear()
        # (the lambda is as it was, so the figures compare with earlier runs)
        seconds = min(timeit.repeat(lambda: handler(None),  # noqa: B023 (timeit calls it in this iteration)
                                    number=iterations, repeat=3))
        out.append((name, seconds / iterations * 1e6, sum(per_message.values()), per_message))
    return out


def opcodes(top: int = 12) -> list[tuple[str, int, int, list, int]]:
    """Per path: bytecodes one message executes in kemi's code (the stub KSR's own aside),
    in the stub, and the kemi functions that execute most (own bytecodes, not callees').
    Deterministic (sys.settrace opcode events): where a path's Python time goes, by function."""

    out = []
    for path in _paths():
        name = path[0][0]
        handler, ksr = _handler(path)
        handler(None)                       # warm up: caches filled as in a running worker
        counts: Counter = Counter()
        calls: Counter = Counter()        # Python function calls (frames), kemi's vs the stub's
        frames: Counter = Counter()       # Python function calls per function

        def local(frame, event, arg, counts=counts):
            if event == "opcode":
                code = frame.f_code
                counts[(code.co_filename, code.co_qualname)] += 1
            return local

        def tracer(frame, event, arg, calls=calls, frames=frames, local=local):
            frame.f_trace_opcodes, frame.f_trace_lines = True, False
            calls[frame.f_code.co_filename == __file__] += 1
            frames[(frame.f_code.co_filename, frame.f_code.co_qualname)] += 1
            return local
        sys.settrace(tracer)
        try:
            handler(None)
        finally:
            sys.settrace(None)
        stub = sum(v for (f, _q), v in counts.items() if f == __file__)
        own = Counter({f"{_short(f)}:{q}": v for (f, q), v in counts.items() if f != __file__})
        called = {f"{_short(f)}:{q}": v for (f, q), v in frames.items()}
        out.append((name, sum(own.values()), stub, [(f, n, called.get(f, 0)) for f, n in own.most_common(top)],
                    calls[False]))
    return out


# --instructions: each path's loop under valgrind (callgrind), twice with different lengths; the
# difference divided by the extra messages is what one message costs hot, start-up excluded
LOOPS = (300, 1300)
STUB_PATH = "(the stub KSR: one KSR.pv.gete)"


def _loop(index: int, n: int) -> None:
    """The child under valgrind: path `index` n times after one warm-up message."""
    paths = _paths()
    if index == len(paths):                 # the stub's own cost per KSR call
        ksr = StubKSR(dict(REQUEST), {})
        def call(_msg):
            return ksr.pv.gete("$rm")
    else:
        call, _ksr = _handler(paths[index])
    call(None)
    for _ in range(n):
        call(None)


def instructions() -> list[tuple[str, float]]:
    """(path, CPU instructions per message in the hot loop), counted by valgrind."""
    import os
    import re
    import subprocess
    import tempfile

    names = [p[0][0] for p in _paths()] + [STUB_PATH]
    out = []
    with tempfile.TemporaryDirectory(prefix="kemi-python-cost-") as tmp:
        for index, name in enumerate(names):
            totals = []
            for n in LOOPS:
                cg = f"{tmp}/cg.{index}.{n}"
                done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", sys.executable,
                                       "-m", "bench.python_cost", "--loop", str(index), str(n)],
                                      capture_output=True, text=True, timeout=900,
                                      env={**os.environ, "PYTHONHASHSEED": "0"})
                if done.returncode != 0:
                    raise RuntimeError(f"valgrind on {name}: {done.stderr[-2000:]}")
                total = re.search(r"^(?:totals|summary): (\d+)", Path(cg).read_text(), re.M)
                if total is None:
                    raise RuntimeError(f"valgrind on {name}: no totals line in {cg}")
                totals.append(int(total.group(1)))
            out.append((name, (totals[1] - totals[0]) / (LOOPS[1] - LOOPS[0])))
    return out


def _short(filename: str) -> str:
    """kemi/routing/router.py for a file of the package, the file name for anything else."""
    parts = filename.replace("\\", "/").split("/")
    return "/".join(parts[parts.index("kemi"):]) if "kemi" in parts else parts[-1]


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    if "--loop" in argv:
        at = argv.index("--loop")
        _loop(int(argv[at + 1]), int(argv[at + 2]))
        return 0
    if "--instructions" in argv:
        timed = {name: (us, calls) for name, us, calls, _detail in measure()}
        print(f"{'path':38} {'instructions':>12} {'µs':>6} {'ns/instr':>8} {'KSR calls':>9}")
        for name, per in instructions():
            us, calls = timed.get(name, (None, 1))
            print(f"{name:38} {per:12,.0f} " + (f"{us:6.2f} {us * 1000 / per:8.3f} {calls:9d}" if us else ""))
        return 0
    if "--opcodes" in argv:
        for name, own, stub, top, frames in opcodes():
            print(f"{name}: {own} bytecodes per message (kemi and the stdlib it calls) in {frames} Python "
                  f"function calls (+{stub} in the stub KSR)")
            for function, n, called in top:
                print(f"    {n:5d} in {called:3d} calls  {function}")
        return 0
    print(f"{'path':38} {'µs Python':>9} {'KSR calls':>9}")
    for name, us, calls, detail in measure():
        print(f"{name:38} {us:9.2f} {calls:9d}")
        if verbose:
            print("    " + ", ".join(f"{k} x{v}" for k, v in sorted(detail.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
