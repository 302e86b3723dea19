"""bench/native.cfg and the Python routing answer alike, so the benchmark compares like with like.

The same SIPp scenarios (fixtures/sipp) and raw requests run against Kamailio with
kamailio.cfg (Python routing) and with bench/native.cfg (the same routing in native cfg),
both on the same settings, modules and database. Every reply either side sends, and every
request the callee receives, must have the same status line and the same header names.
When a route changes on one side only, this test fails: change both.
"""
from __future__ import annotations

import re

from harness import rawsip, stack
from harness.stack import free_port

NATIVE_CFG = stack.project_file("bench", "native.cfg")
# a foreign SIP domain (documentation range): REGISTER for it must be refused, never relayed
FOREIGN_DOMAIN = "203.0.113.9"


def shape(message: str) -> tuple:
    """What must match between the two configs: the first line and the header names."""
    first, *headers = message.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")
    names = sorted({h.split(":", 1)[0].strip().lower() for h in headers if ":" in h})
    if first.startswith("SIP/2.0 "):
        return (first.strip(), tuple(names))
    # requests: the method and the R-URI's user (hosts and ports differ between instances)
    method, uri = first.split(" ")[:2]
    user = re.match(r"sips?:([^@;>]*)@", uri)
    return (method, "user" if user else "no-user", tuple(names))


def replies(result) -> list[tuple]:
    return [shape(m) for m in result.received() if m.startswith("SIP/2.0 ")]


def observe(db, phones, proxy, base: int) -> dict[str, list]:
    """Run every scenario against `proxy`; users base+1.. are this config's own."""
    callee, caller, absent, stranger = (str(base + i) for i in range(1, 5))
    for user in (callee, caller, absent):
        db.add_subscriber(user)
    seen: dict[str, list] = {}

    callee_port = free_port()
    reg = phones.register(callee, callee_port)
    seen["register ok"] = replies(reg)
    seen["register wrong password"] = replies(phones.register(caller, free_port(), password="wrong"))

    uas = phones.callee(callee_port)
    call = phones.call(caller, callee)
    callee_side = uas.wait()
    assert call.rc == 0 and callee_side.rc == 0, call.stdout[-2000:] + callee_side.stdout[-2000:]
    seen["call ok"] = replies(call)
    seen["call ok, at the callee"] = [shape(m) for m in callee_side.received()]

    seen["call to a non-subscriber (404)"] = replies(phones.call(caller, stranger))
    seen["call to an unregistered subscriber (480)"] = replies(phones.call(caller, absent))
    seen["From other than credentials (403)"] = replies(phones.call(caller, callee, auth_user=callee))

    # R-URI, From and To in a foreign domain, valid credentials
    foreign = phones.register(caller, free_port(), domain=FOREIGN_DOMAIN)
    seen["REGISTER for a foreign domain (403)"] = replies(foreign)

    raw = {
        "OPTIONS to the server": dict(method="OPTIONS", ruri=f"sip:{proxy.target}"),
        "Max-Forwards 0 (483)": dict(method="OPTIONS", ruri=f"sip:{callee}@{proxy.target}",
                                     headers={"Max-Forwards": "0"}),
        "in-dialog BYE we never routed (404)": dict(
            method="BYE", ruri=f"sip:{callee}@{proxy.target}",
            to_uri=f"sip:{callee}@{proxy.target}", headers={}),
    }
    for name, request in raw.items():
        if name.startswith("in-dialog"):
            request["headers"]["To"] = f"<sip:{callee}@{proxy.target}>;tag=nobody-routed-this"
        got = rawsip.exchange(proxy.address, **request)
        seen[name] = [shape(m) for m in got]
    return seen


# what each scenario must end with, so that both sides being broken alike also fails
EXPECTED_FINAL = {
    "register ok": "SIP/2.0 200 OK",
    "register wrong password": "SIP/2.0 401 Unauthorized",
    "call ok": "SIP/2.0 200 OK",
    "call to a non-subscriber (404)": "SIP/2.0 404 Not Found",
    "call to an unregistered subscriber (480)": "SIP/2.0 480 Temporarily Unavailable",
    "From other than credentials (403)": "SIP/2.0 403 Forbidden - From user does not match credentials",
    "REGISTER for a foreign domain (403)": "SIP/2.0 403 Forbidden - Not Relaying",
    "OPTIONS to the server": "SIP/2.0 200 OK",
    "Max-Forwards 0 (483)": "SIP/2.0 483 Too Many Hops",
    "in-dialog BYE we never routed (404)": "SIP/2.0 404 Not Found",
}


def test_native_cfg_passes_config_check(kamailio_factory):
    native = kamailio_factory(name="native", cfg=NATIVE_CFG)
    checked = native.check_config()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_native_cfg_answers_like_the_python_routing(db, proxy, kamailio_factory, phones, tmp_path):
    native = kamailio_factory(name="native", cfg=NATIVE_CFG)
    observed = {}
    for label, instance, base in (("python", proxy, 5100), ("native", native, 5200)):
        phones.proxy, phones.workdir = instance, tmp_path / f"sipp-{label}"
        observed[label] = observe(db, phones, instance, base)

    for scenario, final in EXPECTED_FINAL.items():
        got = observed["python"][scenario]
        assert got and got[-1][0] == final, f"{scenario}: python routing answered {got}"
    # the callee got INVITE, ACK and BYE through the proxy, without the caller's credentials
    at_callee = observed["python"]["call ok, at the callee"]
    assert [m[0] for m in at_callee] == ["INVITE", "ACK", "BYE"], at_callee
    assert all("proxy-authorization" not in m[-1] for m in at_callee)

    differences = {s: {"python": observed["python"][s], "native": observed["native"][s]}
                   for s in observed["python"] if observed["python"][s] != observed["native"][s]}
    assert not differences, "native.cfg and the Python routing answer differently:\n" + "\n".join(
        f"  {s}:\n    python {d['python']}\n    native {d['native']}" for s, d in differences.items())
