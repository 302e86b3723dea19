"""The soak's debug hook (metrics.python_memory_interval): off, nothing is wrapped; on, each
process appends what its Python holds every N seconds (kemi/observe/memory.py)."""
import json
import tracemalloc

import pytest

from kemi.observe import memory
from kemi.settings import SettingsError, parse_settings
from kemi.testing import FakeKSR, SipMessage, make_router


def test_off_by_default_nothing_is_wrapped():
    router = make_router(FakeKSR())
    assert router.memory_probe is None
    assert "ksr_request_route" not in vars(router)          # the class's method, no wrapper


def test_on_each_message_is_counted_and_a_report_written_every_interval(tmp_path):
    router = make_router(FakeKSR(SipMessage(method="OPTIONS", ruri="sip:127.0.0.1:5060")),
                         {"metrics": {"python_memory_interval": 30}, "runtime": {"dir": str(tmp_path)}})
    probe = router.memory_probe
    now = [1000.0]
    probe.clock, probe.due = (lambda: now[0]), 1030.0
    for _ in range(3):
        router.ksr_request_route(None)
    assert probe.messages == 3 and not (tmp_path / memory.MEMORY_DIR).exists()
    now[0] = 1030.0
    router.ksr_request_route(None)
    files = list((tmp_path / memory.MEMORY_DIR).glob("*.jsonl"))
    assert len(files) == 1
    report = json.loads(files[0].read_text().splitlines()[0])
    assert report["messages"] == 4 and report["gc_objects"] > 0 and report["allocated_blocks"] > 0
    assert probe.due == 1060.0


def test_child_init_starts_tracing_and_the_report_has_the_top_allocations(tmp_path):
    router = make_router(FakeKSR(), {"metrics": {"python_memory_interval": 5}, "runtime": {"dir": str(tmp_path)}})
    was = tracemalloc.is_tracing()
    try:
        router.child_init(1)
        assert tracemalloc.is_tracing()
        kept = [bytes(1000) for _ in range(200)]                # something to be seen
        report = memory.snapshot(7)
        assert report["traced_bytes"] >= 200_000
        # (the site's prefix depends on where the checkout is: a folder named kemi is an anchor)
        assert any("/test_memory_probe.py:" in f"/{site}" for site, _size, _count in report["top"]), report["top"]
        del kept
    finally:
        if not was:
            tracemalloc.stop()


def test_short_paths():
    assert memory.short_path("/opt/kemi/kemi/routing/router.py") == "kemi/routing/router.py"
    assert memory.short_path("/usr/lib/python3/dist-packages/cachetools/__init__.py") == "cachetools/__init__.py"
    assert memory.short_path("/usr/lib/python3.11/json/encoder.py") == "json/encoder.py"


def test_out_of_range_interval_is_refused():
    with pytest.raises(SettingsError, match="metrics.python_memory_interval"):
        parse_settings({"metrics": {"python_memory_interval": -1}})
