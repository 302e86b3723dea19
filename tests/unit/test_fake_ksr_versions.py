"""The fake KSR per Kamailio version: 5.6's, 5.8's and 6.0's KEMI API (snapshots), chosen by
what the user targets, the installed Kamailio by default."""
import shutil
import subprocess

import pytest

from kemi.testing import FakeKSR
from kemi.testing import fake_ksr


def test_the_snapshots_are_there_and_each_only_adds_to_the_one_before():
    assert {(5, 6), (5, 8), (6, 0)} <= set(fake_ksr.api_versions())
    for older, newer in (((5, 6), (5, 8)), ((5, 8), (6, 0))):
        old, new = fake_ksr.load_api(older), fake_ksr.load_api(newer)
        for module, funcs in old.items():
            for name, spec in funcs.items():
                assert new[module][name] == spec, f"{module}.{name} changed from {older} to {newer}"
    added = {f"{m}.{f}" for m, funcs in fake_ksr.load_api((5, 8)).items() for f in funcs
             if f not in fake_ksr.load_api((5, 6)).get(m, {})}
    # what 5.8 added that the routing feature-detects (kemi/features.py)
    assert {"sl.send_reply_error", "tm.t_reply_error", "tm.t_exists"} <= added


def test_the_newest_snapshot_not_above_the_version_is_used():
    assert fake_ksr.snapshot_for((5, 6)) == (5, 6)
    assert fake_ksr.snapshot_for((5, 7)) == (5, 6)       # 5.7 only extends 5.6
    assert fake_ksr.snapshot_for((5, 8)) == (5, 8) and fake_ksr.snapshot_for((5, 9)) == (5, 8)
    assert fake_ksr.snapshot_for((6, 0)) == (6, 0) and fake_ksr.snapshot_for((6, 1)) == (6, 0)
    with pytest.raises(ValueError, match="older than the oldest supported, 5.6"):
        fake_ksr.snapshot_for((5, 4))


def test_each_version_refuses_what_it_lacks():
    assert FakeKSR(kamailio="6.0").tm.t_exists() == 1
    with pytest.raises(AttributeError, match=r"KSR.tm has no function 't_exists' in Kamailio 5.6$"):
        FakeKSR(kamailio="5.6").tm.t_exists()
    with pytest.raises(AttributeError, match=r"in Kamailio 5.6 \(the API snapshot for 5.7\)"):
        FakeKSR(kamailio="5.7").sl.send_reply_error()
    # 5.8 has the error replies and t_exists (its own snapshot, not 5.6's)
    ksr58 = FakeKSR(kamailio="5.8")
    assert ksr58.api_version == (5, 8)
    for module, name in (("sl", "send_reply_error"), ("tm", "t_reply_error"), ("tm", "t_exists")):
        assert hasattr(getattr(ksr58, module), name), f"5.8 lacks {module}.{name}"
    assert ksr58.tm.t_exists() == 1
    assert hasattr(FakeKSR(kamailio="6.0").sl, "send_reply_error")
    assert not hasattr(FakeKSR(kamailio="5.6").sl, "send_reply_error")
    assert "send_reply_error" in dir(FakeKSR(kamailio="6.0").sl)


def test_the_target_is_explicit_then_the_environment_then_the_installed_kamailio(monkeypatch):
    monkeypatch.setattr(fake_ksr, "installed_kamailio", lambda: (6, 0))
    monkeypatch.delenv(fake_ksr.VERSION_VARIABLE, raising=False)
    assert FakeKSR().kamailio_version == (6, 0)
    monkeypatch.setenv(fake_ksr.VERSION_VARIABLE, "5.6")
    assert FakeKSR().kamailio_version == (5, 6)
    assert FakeKSR(kamailio="6.0").kamailio_version == (6, 0)
    monkeypatch.setattr(fake_ksr, "installed_kamailio", lambda: None)
    monkeypatch.delenv(fake_ksr.VERSION_VARIABLE)
    assert FakeKSR().kamailio_version == (5, 6)           # no Kamailio: the oldest supported
    with pytest.raises(ValueError, match="not a Kamailio version"):
        FakeKSR(kamailio="latest")


def test_by_default_the_fake_is_the_installed_kamailio(monkeypatch):
    monkeypatch.delenv(fake_ksr.VERSION_VARIABLE, raising=False)
    if shutil.which("kamailio") is None:
        assert FakeKSR().kamailio_version == (5, 6)
        return
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
    assert FakeKSR().kamailio_version == fake_ksr.parse_version(out)


def test_versions_are_read_from_kamailio_v_and_short_forms():
    assert fake_ksr.parse_version("version: kamailio 5.6.3 (x86_64/linux) ") == (5, 6)
    assert fake_ksr.parse_version("version: kamailio 6.0.1 (x86_64/linux) ") == (6, 0)
    assert fake_ksr.parse_version("5.8") == (5, 8) and fake_ksr.parse_version("6.0.4") == (6, 0)
