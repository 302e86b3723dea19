"""KEMI__ environment variables reach both sides of a real Kamailio: the rendered cfg and the
Python routing; a Kamailio whose environment differs from the rendered one refuses to start."""
import pytest

from harness import rawsip, stack
from kemi_tools.stack.process import StartError

SCANNERS = "KEMI__SECURITY__SCANNER_USER_AGENTS"


def options(proxy, user_agent: str) -> list[str]:
    return rawsip.exchange(proxy.address, "OPTIONS", f"sip:{proxy.target}", headers={"User-Agent": user_agent})


def test_an_override_reaches_the_python_routing(kamailio_factory, monkeypatch):
    monkeypatch.setenv(SCANNERS, '["kit-scanner"]')
    proxy = kamailio_factory()
    cfg = (proxy.workdir / "kamailio-settings.cfg").read_text()
    assert f"# Environment overrides: {SCANNERS}" in cfg
    # the list from the environment replaced the default one: sipvicious's agent passes ...
    replies = options(proxy, "friendly-scanner")
    assert replies and rawsip.status(replies[-1]) == 200, replies
    # ... and the new one is dropped silently
    assert options(proxy, "kit-scanner") == []


def test_kamailio_refuses_an_environment_other_than_the_rendered_one(db, tmp_path, monkeypatch):
    monkeypatch.setenv(SCANNERS, '["kit-scanner"]')
    inst = stack.KamailioInstance(tmp_path / "kamailio", stack.kamailio_port())   # renders with it
    monkeypatch.delenv(SCANNERS)                                                  # Kamailio runs without
    with pytest.raises(StartError):
        inst.start()
    inst.stop()
    log = (tmp_path / "kamailio" / "kamailio.log").read_text(errors="replace")
    assert "KEMI__ variables (none) are not those kamailio-settings.cfg was rendered with" in log, log[-3000:]
