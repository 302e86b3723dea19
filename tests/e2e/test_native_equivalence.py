"""bench/native.cfg and the Python routing answer alike, so the benchmark compares like with like.

The same SIPp scenarios (kemi_tools/scenarios) and raw requests run against Kamailio with
kamailio.cfg (Python routing) and with bench/native.cfg (the same routing in native cfg),
both on the same settings, modules and database. Every reply either side sends, and every
request the callee receives, must have the same status line and the same header names.
When a route changes on one side only, this test fails: change both.

Both run with the production defaults: security on (scanner drops, signed Record-Route,
URI checks, reply screen) and media on (one rtpengine both use). The SBC check runs both as
SBCs on loopback addresses (public 127.0.1.0/24, private 127.0.2.0/24) with rtpengine
interfaces per side: a call from a public gateway must reach a private gateway through
either with the same replies, the same headers and rtpengine's private address in the SDP.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path

from bench import native_settings
from harness import media, rawsip, stack
from harness.sipp import Sipp
from harness.stack import free_port
from kemi.security import dialog
from kemi.settings import MediaInterface, RtpengineDaemon
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.process import sip_options_ok

NATIVE_CFG = stack.project_file("bench", "native.cfg")
# one Record-Route secret for both, so each side's ;kd= token can be checked against dialog.py
ROUTE_SECRET = "equivalence-test-secret"
TORTURE_DIR = stack.PROJECT_ROOT / "fixtures" / "torture" / "rfc4475"
# RFC 4475 messages that exercise the URI checks and the reply screen (see test_security_malformed)
TORTURE = ("unkscm.dat", "novelsc.dat", "bext01.dat", "unksm2.dat", "zeromf.dat", "esc01.dat",
           "semiuri.dat", "clerr.dat", "scalar02.dat", "unreason.dat", "bcast.dat")
SCANNER_UA = "friendly-scanner"
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
    seen["#sdp at the callee"] = [sdp_address(m) for m in callee_side.received() if media.parse_sdp(m)]
    seen["#sdp at the caller"] = [sdp_address(m) for m in call.received() if media.parse_sdp(m)]
    seen["#kd tokens valid"] = [route_token_ok(m) for m in callee_side.received_requests("INVITE")]

    seen["call to a non-subscriber (404)"] = replies(phones.call(caller, stranger))
    seen["call to an unregistered subscriber (480)"] = replies(phones.call(caller, absent))
    seen["From other than credentials (403)"] = replies(phones.call(caller, callee, auth_user=callee))

    # R-URI, From and To in a foreign domain, valid credentials
    foreign = phones.register(caller, free_port(), domain=FOREIGN_DOMAIN)
    seen["REGISTER for a foreign domain (403)"] = replies(foreign)

    in_dialog = {"To": f"<sip:{callee}@{proxy.target}>;tag=nobody-routed-this"}
    raw = {
        "OPTIONS to the server": dict(method="OPTIONS", ruri=f"sip:{proxy.target}"),
        "Max-Forwards 0 (483)": dict(method="OPTIONS", ruri=f"sip:{callee}@{proxy.target}",
                                     headers={"Max-Forwards": "0"}),
        "in-dialog BYE we never routed (404)": dict(
            method="BYE", ruri=f"sip:{callee}@{proxy.target}", headers=dict(in_dialog)),
        # To tag + a Route naming the proxy, with a token it never signed: no open relay
        "forged in-dialog Route (403)": dict(
            method="BYE", ruri=f"sip:{callee}@127.0.0.1:{free_port()}",
            headers={**in_dialog, "Route": f"<sip:{proxy.target};lr;kd=0123456789abcdef0123>"}),
        "scanner User-Agent (dropped)": dict(method="OPTIONS", ruri=f"sip:{proxy.target}",
                                             headers={"User-Agent": SCANNER_UA}, wait=1.0),
        # Python matches case-insensitively: so must native cfg's =~
        "scanner User-Agent, other case (dropped)": dict(
            method="OPTIONS", ruri=f"sip:{proxy.target}", headers={"User-Agent": "X SIPVicious/0.3"}, wait=1.0),
    }
    for name, request in raw.items():
        got = rawsip.exchange(proxy.address, **request)
        seen[name] = [shape(m) for m in got]
    seen["stray reply (dropped, not forwarded)"] = stray_reply_forwarded(proxy)
    for name in TORTURE:
        got = rawsip.exchange(proxy.address, raw=(TORTURE_DIR / name).read_bytes(), wait=1.0)
        seen[f"RFC 4475 {name}"] = [shape(m) for m in got]
    return seen


def stray_reply_forwarded(proxy) -> list[str]:
    """A 200 matching no transaction, its second Via naming a socket of ours: what reaches it.

    Kamailio would forward it there statelessly; the reply screen must drop it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim:
        victim.bind(("127.0.0.1", free_port()))
        victim.settimeout(1.0)
        reply = (f"SIP/2.0 200 OK\r\n"
                 f"Via: SIP/2.0/UDP {proxy.target};branch=z9hG4bKnotours1\r\n"
                 f"Via: SIP/2.0/UDP 127.0.0.1:{victim.getsockname()[1]};branch=z9hG4bKnotours2\r\n"
                 f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
                 f"Call-ID: stray-{free_port()}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
        rawsip.exchange(proxy.address, raw=reply.encode(), wait=0.2)
        try:
            return [victim.recv(65535).decode(errors="replace").split("\r\n", 1)[0]]
        except socket.timeout:
            return []


def sdp_address(message: str) -> str:
    return media.parse_sdp(message).connection


def route_token_ok(invite: str) -> bool:
    """The ;kd= of the proxy's Record-Route is dialog.py's HMAC of this Call-ID."""
    call_id = re.search(r"^Call-ID:\s*(\S+)", invite, re.M | re.I).group(1)
    tokens = re.findall(r";kd=([0-9a-f]+)", invite)
    return bool(tokens) and all(t == dialog.route_token(ROUTE_SECRET, call_id) for t in tokens)


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
    "forged in-dialog Route (403)": "SIP/2.0 403 Forbidden",
    "RFC 4475 unkscm.dat": "SIP/2.0 416 Unsupported URI Scheme",
    "RFC 4475 novelsc.dat": "SIP/2.0 416 Unsupported URI Scheme",
    "RFC 4475 bext01.dat": "SIP/2.0 420 Bad Extension",
}
# no answer at all (silent drops)
EXPECTED_SILENT = ("stray reply (dropped, not forwarded)", "scanner User-Agent (dropped)", "scanner User-Agent, other case (dropped)", "RFC 4475 unreason.dat", "RFC 4475 bcast.dat")


def start_native(workdir: Path, overrides: dict):
    """bench/native.cfg on the same settings, with its native-settings.cfg rendered beside it."""
    native = stack.KamailioInstance(workdir, stack.kamailio_port(), overrides, cfg=NATIVE_CFG)
    native_settings.write(native.settings, workdir)
    return native.start()


def test_native_cfg_passes_config_check(db, tmp_path):
    sbc = stack.merge(sbc_media_table(SBC_RTPENGINE), sbc_tables(stack.kamailio_port(), free_port()))
    for name, tables in (("plain", {"media": {"enabled": True}}), ("sbc", sbc),
                         ("overload", {"overload": {"enabled": True}})):     # route[OVERLOAD] (issue 21)
        native = stack.KamailioInstance(tmp_path / name, stack.kamailio_port(), tables, cfg=NATIVE_CFG)
        native_settings.write(native.settings, native.workdir)
        checked = native.check_config()
        assert checked.returncode == 0, f"{name}: " + checked.stdout + checked.stderr


def test_native_cfg_answers_like_the_python_routing(db, kamailio_factory, tmp_path):
    from conftest import Phones      # tests/e2e/conftest.py

    engine = media.TestRtpengine(tmp_path / "rtpengine").start()
    overrides = stack.merge(engine.media_settings(), {"security": {"route_secret": ROUTE_SECRET}})
    native = None
    try:
        python = kamailio_factory(overrides, name="python")
        native = start_native(tmp_path / "native", overrides)
        observed = {}
        for label, instance, base in (("python", python, 5100), ("native", native, 5200)):
            phones = Phones(instance, db, tmp_path / f"sipp-{label}")
            try:
                observed[label] = observe(db, phones, instance, base)
            finally:
                phones.stop()
    finally:
        if native:
            native.stop()
        engine.stop()

    for scenario, final in EXPECTED_FINAL.items():
        got = observed["python"][scenario]
        assert got and got[-1][0] == final, f"{scenario}: python routing answered {got}"
    for scenario in EXPECTED_SILENT:
        assert observed["python"][scenario] == [], f"{scenario}: python routing answered {observed['python'][scenario]}"
    # the callee got INVITE, ACK and BYE through the proxy, without the caller's credentials
    at_callee = observed["python"]["call ok, at the callee"]
    assert [m[0] for m in at_callee] == ["INVITE", "ACK", "BYE"], at_callee
    assert all("proxy-authorization" not in m[-1] for m in at_callee)
    for label in ("python", "native"):
        # the phones' SDP says 127.0.0.1: rtpengine's address means it was anchored
        assert observed[label]["#sdp at the callee"] == [media.RTPENGINE_ADDRESS], (label, observed[label])
        assert observed[label]["#sdp at the caller"] == [media.RTPENGINE_ADDRESS], (label, observed[label])
        assert observed[label]["#kd tokens valid"] == [True], (label, "Record-Route token")

    differences = {s: {"python": observed["python"][s], "native": observed["native"][s]}
                   for s in observed["python"] if observed["python"][s] != observed["native"][s]}
    assert not differences, "native.cfg and the Python routing answer differently:\n" + "\n".join(
        f"  {s}:\n    python {d['python']}\n    native {d['native']}" for s, d in differences.items())


# --- the SBC, on loopback addresses ---------------------------------------------------------

SBC_PUBLIC, SBC_PRIVATE = "127.0.1.1", "127.0.2.1"
PUBLIC_GATEWAY, PRIVATE_GATEWAY = "127.0.1.10", "127.0.2.10"
UNMAPPED_DID = "15550100999"


def sbc_tables(port: int, gateway_port: int) -> dict:
    return {
        "sbc": {"enabled": True, "failover_timeout": 1500, "probing_interval": 0},
        "sbc.public": {"listen": [f"udp:{SBC_PUBLIC}:{port}"], "networks": ["127.0.1.0/24"],
                       "gateways": [f"sip:{PUBLIC_GATEWAY}:{gateway_port}"]},
        "sbc.private": {"listen": [f"udp:{SBC_PRIVATE}:{port}"], "networks": ["127.0.2.0/24"],
                        "gateways": [f"sip:{PRIVATE_GATEWAY}:{gateway_port}"]},
    }


SBC_RTPENGINE = RtpengineDaemon(
    listen_ng=f"127.0.0.1:{next(media._ng_ports)}",     # an ng port of the media tests' range
    interfaces=(MediaInterface("public", SBC_PUBLIC), MediaInterface("private", SBC_PRIVATE)),
    port_min=media.RTPENGINE_PORT_MIN, port_max=media.RTPENGINE_PORT_MAX, delete_delay=0)


def sbc_media_table(engine: RtpengineDaemon) -> dict:
    """[media] for an rtpengine with one interface per side, named after the sides."""
    return {"media": {"enabled": True, "rtpengine": {
        "listen_ng": engine.listen_ng,
        "interfaces": [{"name": i.name, "address": i.address} for i in engine.interfaces],
        "port_min": engine.port_min, "port_max": engine.port_max}}}


def sbc_call(instance, tables: dict, workdir: Path) -> dict[str, list]:
    """A call from the public gateway's address through `instance` to the private gateway."""
    port = tables["sbc.public"]["listen"][0].rsplit(":", 1)[1]
    gateway_port = int(tables["sbc.private"]["gateways"][0].rsplit(":", 1)[1])
    gateway = Sipp("gw_answer.xml", workdir, local_ip=PRIVATE_GATEWAY, local_port=gateway_port,
                   calls=None, timeout=30).start()
    try:
        # the gateway answers OPTIONS once it listens: only then may the call come
        media.wait_until(lambda: sip_options_ok(PRIVATE_GATEWAY, gateway_port), 10)
        call = Sipp("trunk_call.xml", workdir, target=f"{SBC_PUBLIC}:{port}",
                    rows=[f"15559990001;{UNMAPPED_DID};{SBC_PUBLIC}"], local_ip=PUBLIC_GATEWAY,
                    local_port=free_port(), sets={"hold_ms": 100},
                    extra=["-default_behaviors", "all,-abortunexp"]).run()
        # a source on neither side is refused (the phones' 127.0.0.1 is on no side)
        stranger = rawsip.exchange((SBC_PUBLIC, int(port)), "OPTIONS", f"sip:{UNMAPPED_DID}@{SBC_PUBLIC}:{port}")
    finally:
        stop_gracefully(gateway)
    received = gateway.wait().received()
    return {
        "call": replies(call),
        "at the gateway": [shape(m) for m in received if not m.startswith("OPTIONS ")],
        "#sdp at the gateway": [sdp_address(m) for m in received if media.parse_sdp(m)],
        "#sdp at the caller": [sdp_address(m) for m in call.received() if media.parse_sdp(m)],
        "source on no side (403)": [shape(m) for m in stranger],
    }


def stop_gracefully(sipp: Sipp) -> None:
    """SIGTERM, so a gateway SIPp writes its message log completely (as harness/sbc.py does)."""
    sipp.stop(grace=10)


def test_sbc_public_gateway_to_private_gateway_alike(db, kamailio_factory, tmp_path):
    engine = rtpengine_stack.start(SBC_RTPENGINE, tmp_path)
    observed, native = {}, None
    try:
        media_table = sbc_media_table(SBC_RTPENGINE)
        for label in ("python", "native"):
            tables = stack.merge(media_table, sbc_tables(stack.kamailio_port(), free_port()))
            if label == "python":
                instance = kamailio_factory(tables, name="sbc-python")
            else:
                instance = native = start_native(tmp_path / "sbc-native", tables)
            observed[label] = sbc_call(instance, tables, tmp_path / f"sbc-sipp-{label}")
    finally:
        if native:
            native.stop()
        engine.stop()

    got = observed["python"]
    assert got["call"] and got["call"][-1][0] == "SIP/2.0 200 OK", got
    assert [m[0] for m in got["at the gateway"]] == ["INVITE", "ACK", "BYE"], got
    assert got["source on no side (403)"][-1][0] == "SIP/2.0 403 Forbidden", got
    for label in ("python", "native"):
        # rtpengine's interface on each party's side: the private one at the gateway, the public one
        # at the caller (the trunk's SDP says 127.0.1.10)
        assert observed[label]["#sdp at the gateway"] == [SBC_PRIVATE], (label, observed[label])
        assert observed[label]["#sdp at the caller"] == [SBC_PUBLIC], (label, observed[label])
    differences = {s: {"python": observed["python"][s], "native": observed["native"][s]}
                   for s in got if observed["python"][s] != observed["native"][s]}
    assert not differences, "native.cfg and the Python routing differ as SBCs:\n" + "\n".join(
        f"  {s}:\n    python {d['python']}\n    native {d['native']}" for s, d in differences.items())
