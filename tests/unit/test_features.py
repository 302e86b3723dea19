"""Feature detection (kemi/features.py) against the fake KSR of each Kamailio version."""
import pytest

from kemi.features import error_reply
from kemi.testing import FakeKSR


def test_5_6_answers_errors_with_sl_reply_error():
    ksr = FakeKSR(kamailio="5.6")
    error_reply(ksr)()
    assert ksr.calls == [("sl.sl_reply_error", ())] and ksr.replies == [(500, "Server Internal Error")]


@pytest.mark.parametrize("version", ["6.0", "6.1"])
def test_6_0_and_later_use_send_reply_error(version):
    ksr = FakeKSR(kamailio=version)
    error_reply(ksr)()
    assert ksr.calls == [("sl.send_reply_error", ())] and ksr.replies == [(500, "Server Internal Error")]


def test_control_the_5_6_fake_refuses_what_5_6_lacks():
    """Why the detection is needed: calling 5.8+'s function on 5.6 fails (as hasattr is False
    on the real 5.6 KSR)."""
    with pytest.raises(AttributeError, match="no function 'send_reply_error' in Kamailio 5.6"):
        FakeKSR(kamailio="5.6").sl.send_reply_error()
    with pytest.raises(AttributeError, match="no function 't_reply_error' in Kamailio 5.6"):
        FakeKSR(kamailio="5.6").tm.t_reply_error
