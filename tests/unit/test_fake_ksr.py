"""The fake KSR behaves like Kamailio 5.6's: unknown functions and wrong types fail."""
import pytest

from kemi.testing import FakeKSR, KSRTypeError, SipMessage


def test_unknown_function_is_refused():
    with pytest.raises(AttributeError, match="no function 't_relay_typo'"):
        FakeKSR().tm.t_relay_typo()


def test_unknown_module_is_refused():
    with pytest.raises(AttributeError):
        FakeKSR().nosuchmodule


def test_wrong_argument_type_raises_like_kamailio_5_6():
    with pytest.raises(KSRTypeError):
        FakeKSR().sl.sl_send_reply("404", "Not Found")


def test_wrong_argument_count_raises():
    with pytest.raises(TypeError):
        FakeKSR().registrar.lookup()


def test_results_override_the_model_and_calls_are_recorded():
    ksr = FakeKSR()
    ksr.results["registrar.lookup"] = lambda k, table: -3 if table == "location" else 1
    assert ksr.registrar.lookup("location") == -3
    assert ksr.calls == [("registrar.lookup", ("location",))]


def test_pseudo_variables_come_from_the_message():
    ksr = FakeKSR(SipMessage(method="BYE", ruri="sip:2001@127.0.0.1:5060", source=("192.0.2.7", 5070),
                             headers={"User-Agent": "phone"}, to_tag="x"))
    assert [ksr.pv.get(p) for p in ("$rm", "$rU", "$si", "$sp", "$ua", "$tt")] == \
           ["BYE", "2001", "192.0.2.7", 5070, "phone", "x"]
    assert ksr.pv.gete("$hdr(X-None)") == "" and ksr.pv.get("$hdr(X-None)") is None


def test_htable_values_through_sht_pv():
    ksr = FakeKSR(SipMessage(source=("192.0.2.7", 5070)))
    ksr.pv.seti("$sht(ipban=>$si)", 1)
    assert ksr.htable == {("ipban", "192.0.2.7"): 1}
    assert ksr.pv.get("$sht(ipban=>$si)") == 1
