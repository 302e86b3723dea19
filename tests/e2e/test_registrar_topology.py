"""Topology hiding on the registrar (settings topology.registrar; docs/sbc.md): two phones of the
same server see only the server. Real Kamailio (topos in MariaDB, uac), rtpengine, SIPp phones
on loopback: the addresses are all 127.0.0.1 here, so what is checked is the shape of what the
callee got (the server's Contact, one Via, no Record-Route, a masked Call-ID), and that the
call works through it; the SBC tests check addresses (test_sbc_topology.py)."""
from __future__ import annotations

import re

import pytest

from conftest import Phones
from harness import media, stack
from harness.stack import free_port

ROUTE_SECRET = "topology-test-secret-0123456789abcdef"


@pytest.fixture
def rtpengine(tmp_path):
    engine = media.TestRtpengine(tmp_path / "rtpengine").start()
    yield engine
    engine.stop()


def header(message: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in message.splitlines()
            if line.lower().startswith(name.lower() + ":")]


@pytest.mark.parametrize("hiding", [True, False], ids=["hidden", "control-off"])
def test_the_registrars_phones_see_only_the_server(kamailio_factory, db, rtpengine, tmp_path, hiding):
    """With topology.registrar the callee gets the server's Contact, one Via and the masked
    Call-ID, and the call (INVITE to BYE, through the proxy) completes; the CONTROL (off) shows
    the caller's Contact, both Vias and its Call-ID."""
    proxy = kamailio_factory(stack.merge(rtpengine.media_settings(), {
        "security": {"route_secret": ROUTE_SECRET}, "topology": {"registrar": hiding}}))
    phones = Phones(proxy, db, tmp_path / "sipp")
    caller, callee = ("4801", "4802") if hiding else ("4803", "4804")
    db.add_subscriber(caller)
    db.add_subscriber(callee)
    callee_port = free_port()
    assert phones.register(callee, callee_port).finals == [200]
    try:
        uas = phones.callee(callee_port)
        call = phones.call(caller, callee, hold_ms=100)
        got = uas.wait()
    finally:
        phones.stop()
    assert call.rc == 0 and call.finals == [200], call.stdout[-2000:]
    assert got.rc == 0, got.stdout[-2000:]
    invite = got.received_requests("INVITE")[0]
    caller_call_id = call.log[0].split("call-id=")[1]
    contact, vias, call_id = header(invite, "Contact")[0], header(invite, "Via"), header(invite, "Call-ID")[0]
    if hiding:
        assert re.fullmatch(rf"<sip:[ab]tpsh-[^@]+@127\.0\.0\.1:{proxy.port}>", contact), contact
        assert len(vias) == 1 and vias[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{proxy.port};")
        assert not header(invite, "Record-Route")
        assert call_id.startswith("kth1-") and caller_call_id not in invite
        bye = got.received_requests("BYE")[0]
        assert header(bye, "Call-ID") == [call_id]          # the callee's side keeps its mask
    else:
        assert contact.startswith(f"<sip:{caller}@127.0.0.1:") and len(vias) == 2
        assert header(invite, "Record-Route") and call_id == caller_call_id
