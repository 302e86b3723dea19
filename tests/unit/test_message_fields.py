"""kemi/message.py: a field read once and then kept as a plain attribute; a route's common
PVs fetched in one `$_s()` (Message.read) that never yields a value KSR.pv.gete alone would not."""
from __future__ import annotations

import pytest

from kemi.message import BATCH_SEPARATOR, Batch, Message, UndecodableValue
from kemi.testing import FakeKSR, SipMessage

FIELDS = Batch("source_ip", "user_agent", "method", "ruri", "$hdr(Proxy-Require)", "to_tag")


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


def test_one_ksr_call_gives_every_field_as_its_own_read_would():
    message = invite(headers={"User-Agent": "phone 1.0"})
    alone = Message(FakeKSR(message))
    expected = [alone.source_ip, alone.user_agent, alone.method, alone.ruri, alone.pv("$hdr(Proxy-Require)"),
                alone.to_tag]
    ksr = CountingKSR(message)
    msg = Message(ksr)
    msg.read(FIELDS)
    got = [msg.source_ip, msg.user_agent, msg.method, msg.ruri, msg.pv("$hdr(Proxy-Require)"), msg.to_tag]
    assert got == expected
    # a PV without a value ($_s prints "<null>") is read alone (no To tag), unless it is a
    # header the message does not have ($hdrc 0: no Proxy-Require)
    assert ksr.read == [FIELDS.spec, "$tt"]


def test_a_header_present_is_taken_from_the_batch():
    ksr = CountingKSR(invite(headers={"Proxy-Require": "foo"}))
    msg = Message(ksr)
    msg.read(FIELDS)
    assert msg.pv("$hdr(Proxy-Require)") == "foo"
    assert ksr.read == [FIELDS.spec]


def test_a_value_that_is_literally_null_text_keeps_its_text():
    msg = Message(FakeKSR(invite(headers={"User-Agent": "<null>"})))
    msg.read(FIELDS)
    assert msg.user_agent == "<null>"


def test_a_value_holding_the_separator_leaves_every_field_to_its_own_read():
    ua = f"evil{BATCH_SEPARATOR}INVITE"
    ksr = CountingKSR(invite(headers={"User-Agent": ua}))
    msg = Message(ksr)
    msg.read(FIELDS)
    assert ksr.read == [FIELDS.spec]            # nothing taken from the batch
    assert msg.user_agent == ua and msg.method == "INVITE" and msg.source_ip == "192.0.2.10"


def test_control_without_the_count_check_the_separator_would_shift_the_fields():
    """Control: split naively, the User-Agent's separator gives the method field the wrong text."""
    ua = f"evil{BATCH_SEPARATOR}INVITE"
    ksr = FakeKSR(invite(headers={"User-Agent": ua}))
    parts = ksr._m_pv__gete(FIELDS.spec).split(BATCH_SEPARATOR)
    assert len(parts) != FIELDS.size
    assert dict(zip(FIELDS.specs, parts, strict=False))["$ru"] == "INVITE"


def test_the_batch_text_names_each_pv_and_the_header_count():
    assert FIELDS.spec == "$_s(" + BATCH_SEPARATOR.join(
        ["$si", "$ua", "$rm", "$ru", "$tt", "$hdr(Proxy-Require)", "$hdrc(Proxy-Require)"]) + ")"


def test_bytes_that_are_not_utf8_fail_only_the_field_that_holds_them():
    class Undecodable(CountingKSR):
        def _m_pv__gete(self, name):
            if name == "$ua" or name.startswith("$_s("):
                self.read.append(name)
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            return super()._m_pv__gete(name)
    msg = Message(Undecodable(invite()))
    msg.read(FIELDS)
    assert msg.method == "INVITE"
    with pytest.raises(UndecodableValue):
        _ = msg.user_agent
