"""kamailio.cfg turns the core onsend callback off; a subclass relying on it is told."""
from kemi.app import DISABLED_CALLBACKS, warn_disabled_callbacks
from kemi.routing import Router
from kemi.settings import PROJECT_ROOT
from kemi.testing.fake_ksr import FakeKSR


class SendWatcher(Router):
    def ksr_onsend_route(self, _msg):
        return 1


def test_kamailio_cfg_turns_off_the_callbacks_router_leaves_empty():
    cfg = (PROJECT_ROOT / "kamailio.cfg").read_text()
    for name in DISABLED_CALLBACKS:
        assert f'kemi.{name[4:]}_callback="none"' in cfg


def test_router_itself_overrides_nothing():
    ksr = FakeKSR()
    assert warn_disabled_callbacks(ksr, Router) == []
    assert ksr.log_text("warn") == ""


def test_subclass_overriding_a_disabled_callback_gets_a_warning():
    ksr = FakeKSR()
    assert warn_disabled_callbacks(ksr, SendWatcher) == ["ksr_onsend_route"]
    assert 'kemi.onsend_route_callback="none"' in ksr.log_text("warn")
