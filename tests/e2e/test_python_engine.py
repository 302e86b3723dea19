"""python.engine: app_python3 or app_python3s runs the same routing (kamailio.cfg picks one).

"auto" is app_python3s on Kamailio 6 and newer (cheaper entries), app_python3 on 5.x. Which
module a worker really runs is read from its memory map.
"""
import re
import subprocess
from pathlib import Path

import pytest

from harness import stack
from harness.stack import free_port


def kamailio_major() -> int:
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10).stdout
    return int(re.search(r"kamailio (\d+)\.", out).group(1))


def modules_dir() -> Path:
    out = subprocess.run(["kamailio", "-I"], capture_output=True, text=True, timeout=10).stdout
    return Path(re.search(r"Default paths to modules:\s*(\S+)", out).group(1))


def loaded_python_module(proxy) -> str:
    """app_python3.so or app_python3s.so, as mapped into Kamailio's main process."""
    maps = Path(f"/proc/{proxy.daemon.pid}/maps").read_text()
    found = set(re.findall(r"/(app_python3s?\.so)$", maps, re.M))
    assert len(found) == 1, found
    return found.pop()


AUTO = "app_python3s.so" if kamailio_major() >= 6 else "app_python3.so"
OTHER = "app_python3" if AUTO == "app_python3s.so" else "app_python3s"


@pytest.fixture
def proxy(kamailio_factory, request):
    """The proxy `phones` use, with the engine a test asks for ("auto" unless parametrized)."""
    return kamailio_factory({"python": {"engine": getattr(request, "param", "auto")}})


def test_auto_runs_the_engine_of_this_kamailio_version(db, proxy, phones):
    assert loaded_python_module(proxy) == AUTO
    db.add_subscriber("2501")
    assert phones.register("2501", free_port()).finals == [200]


@pytest.mark.skipif(not (modules_dir() / f"{OTHER}.so").exists(), reason=f"this Kamailio has no {OTHER}")
@pytest.mark.parametrize("proxy", [OTHER], indirect=True)
def test_the_other_engine_routes_alike_where_kamailio_has_it(db, proxy, phones):
    """Control for the choice: the other module, named in the settings, is what runs."""
    assert loaded_python_module(proxy) == f"{OTHER}.so"
    db.add_subscriber("2511")
    caller, callee = free_port(), free_port()
    db.add_subscriber("2512")
    assert phones.register("2511", callee).finals == [200]
    assert phones.register("2512", caller).finals == [200]
    uas = phones.callee(callee)
    call = phones.call("2512", "2511", local_port=caller)
    uas.wait()
    assert call.finals == [200] and call.values("bye") == ["200"], call.stdout[-2000:]


@pytest.mark.skipif((modules_dir() / "app_python3s.so").exists(), reason="this Kamailio has app_python3s")
def test_app_python3s_on_a_kamailio_without_it_is_refused_at_the_config_check(db, tmp_path):
    inst = stack.KamailioInstance(tmp_path / "k", stack.kamailio_port(), {"python": {"engine": "app_python3s"}})
    checked = inst.check_config()
    assert checked.returncode != 0 and "app_python3s" in checked.stdout + checked.stderr
