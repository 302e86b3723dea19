"""Compiled routing (issue 26 b): settings python.compiled, the build's staleness check, what
make reload keeps, and, when `make compile` has built a current copy, the routing tests run
against the compiled modules (with a control: the same check on the plain package fails)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from kemi import compiled, reload
from kemi.settings import PROJECT_ROOT, SettingsError, parse_settings, render_kamailio_defines


def _package(root: Path) -> Path:
    package = root / "kemi"
    (package / "routing").mkdir(parents=True)
    (package / "message.py").write_text("X = 1\n")
    (package / "routing" / "router.py").write_text("Y = 2\n")
    (package / "testing").mkdir()
    (package / "testing" / "fake_ksr.py").write_text("Z = 3\n")
    return package


def test_a_fresh_build_is_current_and_any_edit_makes_it_stale(tmp_path):
    package, build = _package(tmp_path / "src"), tmp_path / "build"
    build.mkdir()
    compiled.write_manifest(build, compiled.source_hashes(package), "mypy test")
    assert compiled.staleness(build, package) is None
    (package / "routing" / "router.py").write_text("Y = 3\n")
    assert compiled.staleness(build, package) == (
        f"{build} is stale: kemi/routing/router.py changed since make compile")


def test_a_new_or_removed_module_makes_it_stale_the_fake_ksr_does_not(tmp_path):
    package, build = _package(tmp_path / "src"), tmp_path / "build"
    build.mkdir()
    compiled.write_manifest(build, compiled.source_hashes(package), "mypy test")
    (package / "testing" / "fake_ksr.py").write_text("Z = 4\n")      # never compiled, never run by Kamailio
    assert compiled.staleness(build, package) is None
    (package / "new.py").write_text("")
    (package / "message.py").unlink()
    assert compiled.staleness(build, package) == (
        f"{build} is stale: kemi/message.py, kemi/new.py changed since make compile")


def test_missing_copy_other_interpreter_and_bad_manifest_are_named(tmp_path):
    package, build = _package(tmp_path / "src"), tmp_path / "build"
    assert compiled.staleness(build, package) == f"there is no compiled copy at {build}"
    build.mkdir()
    compiled.write_manifest(build, compiled.source_hashes(package), "mypy test")
    manifest = json.loads((build / compiled.MANIFEST).read_text())
    # an interpreter no Debian has (3.13.5 is Debian 13's own: the copy would be current there)
    other = "cpython-299:.cpython-299-x86_64-linux-gnu.so:2.99.0"
    assert other != compiled.interpreter_tag()
    manifest["interpreter"] = other
    (build / compiled.MANIFEST).write_text(json.dumps(manifest))
    assert compiled.staleness(build, package) == (
        f"{build} was built for {other}, "
        f"this is {compiled.interpreter_tag()}")
    (build / compiled.MANIFEST).write_text("{")
    assert "is not a manifest written by make compile" in compiled.staleness(build, package)


def test_the_setting_refuses_a_missing_or_stale_copy_naming_the_key_and_the_fix(monkeypatch):
    monkeypatch.setattr(compiled, "staleness", lambda: "there is no compiled copy at /x/build/compiled")
    with pytest.raises(SettingsError) as err:
        parse_settings({"python": {"compiled": True}}, "site.toml")
    assert "python.compiled" in str(err.value)
    assert "there is no compiled copy at /x/build/compiled" in str(err.value)
    assert "make compile" in str(err.value) and "restart" in str(err.value)


def test_control_off_the_copy_is_never_looked_at(monkeypatch):
    """The default (interpreted) starts whatever state build/compiled/ is in."""
    monkeypatch.setattr(compiled, "staleness", lambda: pytest.fail("looked at the compiled copy"))
    settings = parse_settings({})
    assert settings.python.compiled is False
    assert "KEMI_COMPILED" not in render_kamailio_defines(settings)


def test_on_the_rendered_cfg_names_the_compiled_folder(monkeypatch):
    monkeypatch.setattr(compiled, "staleness", lambda: None)
    settings = parse_settings({"python": {"compiled": True}})
    assert f'#!define KEMI_COMPILED "{compiled.BUILD_DIR}"' in render_kamailio_defines(settings).splitlines()


def test_the_setting_must_be_a_boolean():
    with pytest.raises(SettingsError) as err:
        parse_settings({"python": {"compiled": "yes"}})
    assert "python.compiled" in str(err.value)


def _router(compiled_on: bool):
    return types.SimpleNamespace(settings=types.SimpleNamespace(
        python=types.SimpleNamespace(compiled=compiled_on, path=())))


def test_a_reload_keeps_the_compiled_package_and_takes_the_site_modules(monkeypatch, tmp_path):
    site = tmp_path / "site"
    fake = {"kemi.fake_compiled": types.ModuleType("kemi.fake_compiled"),
            "site_router_x": types.ModuleType("site_router_x")}
    fake["site_router_x"].__file__ = str(site / "site_router_x.py")
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    roots = [str(site) + "/"]
    assert reload._package_reloads(_router(True)) is False
    taken = reload._take_modules(roots, reload._package_reloads(_router(True)))
    assert set(taken) == {"site_router_x"} and "kemi.fake_compiled" in sys.modules
    sys.modules.update(taken)
    # control: the interpreted package is re-imported from its sources on a reload
    assert reload._package_reloads(_router(False)) is True
    taken = reload._take_modules(roots, reload._package_reloads(_router(False)))
    assert {"site_router_x", "kemi.fake_compiled"} <= set(taken)
    sys.modules.update(taken)


def _site(tmp_path: Path, compiled_on: bool) -> Path:
    file = tmp_path / "site.toml"
    file.write_text(f'[python]\ncompiled = {str(compiled_on).lower()}\n[runtime]\ndir = "{tmp_path}/run"\n')
    return file


def test_make_reload_refuses_a_stale_compiled_copy_naming_the_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(compiled, "staleness", lambda: "/x/build/compiled is stale: kemi/routing/router.py changed")
    assert reload.main([str(_site(tmp_path, True))]) == 1
    err = capsys.readouterr().err
    assert "python.compiled" in err and "kemi/routing/router.py changed" in err and "make compile" in err
    assert "reload NOT sent" in err


def test_make_reload_with_a_current_compiled_copy_says_what_reloads(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(compiled, "staleness", lambda: None)
    assert reload.main([str(_site(tmp_path, True))]) == 1       # no Kamailio runs: no control socket
    out = capsys.readouterr()
    assert reload.COMPILED_NOTE in out.out and "no control socket" in out.err
    assert "make compile" in reload.COMPILED_NOTE and "restart" in reload.COMPILED_NOTE
    # control: the interpreted package reloads whole, no such note
    assert reload.main([str(_site(tmp_path, False))]) == 1
    assert reload.COMPILED_NOTE not in capsys.readouterr().out


def test_every_compiled_module_exists_and_is_not_start_up_code():
    for name in compiled.COMPILED_MODULES:
        assert (PROJECT_ROOT / name).is_file(), name
        assert not name.startswith(("kemi/settings/", "kemi/testing/")), name
    assert "kemi/compiled.py" not in compiled.COMPILED_MODULES       # the settings check reads it


# --- the compiled copy itself (only when make compile built a current one) ------------------

PROBE = """
import json, sys
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
from kemi import compiled
import kemi.routing.router, kemi.sbc.part, kemi.media.part, kemi.security.part
mods = ["kemi.routing.router", "kemi.sbc.part", "kemi.media.part", "kemi.security.part"]
print(json.dumps({m: compiled.is_compiled(sys.modules[m]) for m in mods}))
"""
# a plugin for the pytest run below: every routing test fails unless the compiled modules ran
PLUGIN = """
import sys
from kemi import compiled

def pytest_sessionstart(session):
    import kemi.routing.router, kemi.sbc.part
    for name in ("kemi.routing.router", "kemi.sbc.part"):
        if not compiled.is_compiled(sys.modules[name]):
            raise SystemExit(f"{name} is not compiled: {sys.modules[name].__file__}")
"""
needs_build = pytest.mark.skipif(compiled.staleness() is not None,
                                 reason=f"no current compiled copy ({compiled.staleness()}): make compile")


def _probe(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, path], cwd="/", capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_build
def test_the_compiled_copy_is_what_gets_imported_and_control_without_it():
    assert all(_probe(str(compiled.BUILD_DIR)).values())
    assert not any(_probe("").values())          # control: the same check on the plain package fails


@needs_build
def test_routing_tests_pass_on_the_compiled_modules(tmp_path):
    (tmp_path / "compiled_only.py").write_text(PLUGIN)
    # test_call_records: the records' AVPs keep their types (an `int | float` once made them floats);
    # its replay test replaces a method on an instance, which a compiled class does not allow
    tests = [str(PROJECT_ROOT / "tests" / "unit" / f) for f in ("test_routes.py", "test_sbc_routes.py",
                                                                "test_call_records.py")]
    tests += ["-k", "not test_the_router_replays_from_its_timer_callback"]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "compiled_only",
                          "--rootdir", str(PROJECT_ROOT), *tests], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{compiled.BUILD_DIR}:{tmp_path}:{PROJECT_ROOT}"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


def test_the_build_completes_each_compiled_subpackage_with_its_plain_modules(tmp_path):
    """A regular package is looked for in one folder only: build/compiled/kemi/routing/ must
    hold routing's __init__.py too, topology's its uncompiled part.py; never a .py of a
    compiled module (it would be what loads)."""
    from kemi_tools.compile import complete_packages, copy_sources
    work, out = tmp_path / "work", tmp_path / "out"
    hashes = copy_sources(work)
    assert hashes == compiled.source_hashes()             # what the manifest will record
    for name in compiled.COMPILED_MODULES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
    copied = complete_packages(work, out)
    for name in ("kemi/routing/__init__.py", "kemi/topology/part.py", "kemi/cluster/part.py",
                 "kemi/observe/metrics.py", "kemi/sbc/settings.py"):
        assert name in copied and (out / name).is_file(), name
    assert not set(copied) & set(compiled.COMPILED_MODULES)
    assert not (out / "kemi" / "settings").exists() and not (out / "kemi" / "message.py").exists()


def test_the_compiled_router_refuses_the_memory_probe_naming_both_keys(monkeypatch):
    """The probe replaces Router.ksr_request_route on the instance; a compiled Router's
    methods are read-only (AttributeError at start): refused at settings time instead."""
    monkeypatch.setattr(compiled, "staleness", lambda: None)
    with pytest.raises(SettingsError) as err:
        parse_settings({"python": {"compiled": True}, "metrics": {"python_memory_interval": 60}})
    assert "python.compiled" in str(err.value) and "metrics.python_memory_interval" in str(err.value)
    # control: either one alone starts
    assert parse_settings({"python": {"compiled": True}}).python.compiled
    assert parse_settings({"metrics": {"python_memory_interval": 60}}).metrics.python_memory_interval == 60


def test_media_figures_keep_their_type_for_the_records_avps():
    """Integers stay integers (set with pv.seti), MOS a float: compiled, an `int | float`
    annotation made every value a float (the AVP then read "148.0"; the compiled run of
    test_call_records above checks it there)."""
    from kemi.records.media import PartyMedia
    columns = PartyMedia(rtp_packets=148, lost=5, jitter_ms=10, mos=4.1).columns("a")
    assert columns == {"a_rtp_packets": 148, "a_lost": 5, "a_jitter_ms": 10, "a_mos": 4.1}
    assert [type(v) for v in columns.values()] == [int, int, int, float]
