"""kemi/message.py: a field is read from Kamailio once, then kept as a plain attribute."""
from __future__ import annotations

from kemi.message import Message
from kemi.testing import FakeKSR, SipMessage


class CountingKSR(FakeKSR):
    """FakeKSR that records every pv.gete spec."""

    def __init__(self, message: SipMessage):
        super().__init__(message)
        self.read: list[str] = []

    def _m_pv__gete(self, name):
        self.read.append(name)
        return super()._m_pv__gete(name)


def invite(**fields) -> SipMessage:
    return SipMessage(method="INVITE", ruri="sip:2001@127.0.0.1", **fields)


def test_a_field_is_read_from_kamailio_once_then_kept_on_the_message():
    ksr = CountingKSR(invite())
    msg = Message(ksr)
    assert msg.method == "INVITE" and msg.method == "INVITE"
    assert ksr.read == ["$rm"]
    assert msg.__dict__["method"] == "INVITE"       # later reads: a plain attribute


def test_set_ruri_forgets_the_ruri_fields():
    ksr = CountingKSR(invite())
    msg = Message(ksr)
    assert (msg.ruri, msg.ruri_user) == ("sip:2001@127.0.0.1", "2001")
    msg.set_ruri("sip:2002@127.0.0.1")
    assert (msg.ruri, msg.ruri_user) == ("sip:2002@127.0.0.1", "2002")


def test_the_cache_and_the_attribute_agree():
    """pv() and the field share what was read: one read, whichever asks first."""
    ksr = CountingKSR(invite())
    msg = Message(ksr)
    assert msg.pv("$rm") == "INVITE" and msg.method == "INVITE" and msg.pv("$rm") == "INVITE"
    assert ksr.read == ["$rm"]


def descriptor_calls(monkeypatch) -> list[str]:
    """Records every call of the PV descriptor (_PV.__get__) on a message."""
    from kemi.message import _PV
    calls: list[str] = []
    original = _PV.__get__

    def counted(self, msg, owner=None):
        if msg is not None:
            calls.append(self.spec)
        return original(self, msg, owner)
    monkeypatch.setattr(_PV, "__get__", counted)
    return calls


def test_later_reads_do_not_call_the_descriptor(monkeypatch):
    calls = descriptor_calls(monkeypatch)
    msg = Message(FakeKSR(invite()))
    assert [msg.method for _ in range(3)] == ["INVITE"] * 3
    assert calls == ["$rm"]


def test_control_without_the_kept_attribute_every_read_calls_the_descriptor(monkeypatch):
    """Control: the attribute removed after each read (the mechanism off), every read is a
    descriptor call again (~1,250 instructions each in a Kamailio worker)."""
    calls = descriptor_calls(monkeypatch)
    msg = Message(FakeKSR(invite()))
    for _ in range(3):
        assert msg.method == "INVITE"
        del msg.__dict__["method"]
    assert calls == ["$rm"] * 3
