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


def measure(iterations: int = ITERATIONS) -> list[tuple[str, float, int, dict]]:
    from kemi.settings import parse_settings

    out = []
    sbc_settings = parse_settings(SBC_TABLES, source="bench.python_cost")
    limits_settings = parse_settings(LIMITS_TABLES, source="bench.python_cost")
    paths = [(p, Settings()) for p in PATHS.items()] + [(p, sbc_settings) for p in SBC_PATHS.items()] + \
        [(p, limits_settings) for p in LIMITS_PATHS.items()]
    for (name, (entry, pvs, answers)), settings in paths:
        ksr = StubKSR(dict(pvs), {**NOT_BANNED, **answers})
        router = Router(ksr, settings, subscribers=None, dids=_NoDids())
        if ksr.pvs.get(ROUTE_PARAMS_PV) is SIGNED:     # the Route this router signed for the call
            ksr.pvs[ROUTE_PARAMS_PV] = "lr" + rr_param(router.route_secret, ksr.pvs["$ci"])
        handler = getattr(router, entry)
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


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    print(f"{'path':38} {'µs Python':>9} {'KSR calls':>9}")
    for name, us, calls, detail in measure():
        print(f"{name:38} {us:9.2f} {calls:9d}")
        if verbose:
            print("    " + ", ".join(f"{k} x{v}" for k, v in sorted(detail.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
