"""kemi/reload.py with the fake KSR: a copy of the package is loaded, edited and reloaded
in this process, as app_python.reload does in each Kamailio worker.

The fixture puts the test process's own kemi modules back afterwards (other tests compare
classes by identity).
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kemi.settings import PROJECT_ROOT, toml_dump
from kemi.testing import FakeKSR, SipMessage

IN_DIALOG_404 = 'self.reply(sip.NOT_FOUND)\n        return DONE\n\n    # route[DLGURI]'


def _kemi_modules() -> list[str]:
    return [n for n in sys.modules if n == "kemi" or n.startswith("kemi.")]


@dataclass
class Copy:
    root: Path
    settings: Path
    reload: object            # the copy's kemi.reload

    def file(self, *parts: str) -> Path:
        return self.root.joinpath("kemi", *parts)

    def edit(self, parts: tuple[str, ...], old: str, new: str) -> None:
        path = self.file(*parts)
        text = path.read_text()
        assert text.count(old) == 1
        path.write_text(text.replace(old, new))

    def write_settings(self, tables: dict) -> None:
        self.settings.write_text(toml_dump(tables))


@pytest.fixture
def copy(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "kemi", root / "kemi", ignore=shutil.ignore_patterns("__pycache__"))
    settings = tmp_path / "settings.toml"
    settings.write_text(toml_dump({"sip": {"domain": "127.0.0.1"}}))
    saved_modules, saved_path = dict(sys.modules), list(sys.path)
    for name in _kemi_modules():
        del sys.modules[name]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module("kemi.reload")
        assert module.__file__.startswith(str(root))
        yield Copy(root, settings, module)
    finally:
        for name in _kemi_modules():
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        importlib.invalidate_caches()


def in_dialog_reply(ksr: FakeKSR, router) -> tuple[int, str]:
    """What the router answers an in-dialog request nobody knows (route_withindlg's 404)."""
    ksr.message = SipMessage(method="INFO", ruri="sip:6150@127.0.0.1", to_tag="t-1")
    ksr.replies.clear()
    router.ksr_request_route(None)
    return ksr.replies[-1]


def errors(ksr: FakeKSR) -> list[str]:
    return [text for level, text in ksr.logs if level in ("err", "crit")]


def test_reload_runs_the_edited_submodule_and_keeps_the_route_secret(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    assert in_dialog_reply(ksr, first.router) == (404, "Not Found")
    old_module = sys.modules["kemi.routing.router"]

    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace(
        "sip.NOT_FOUND", 'sip.Reply(404, "Edited")'))
    second = first.reloader.load(ksr, str(copy.settings), first)

    assert second.router is not first.router and errors(ksr) == []
    assert sys.modules["kemi.routing.router"] is not old_module       # imported again
    assert in_dialog_reply(ksr, second.router) == (404, "Edited")
    assert in_dialog_reply(ksr, first.router) == (404, "Not Found")     # the old code is untouched
    # dialogs.py ran again and made a new per-run secret; the router kept the running one
    assert sys.modules["kemi.security.part"].RUN_SECRET != first.router.run_secret
    assert second.router.route_secret == first.router.route_secret
    # the next swap is done by the kemi.reload imported with the new code
    assert second.reloader is sys.modules["kemi.reload"] and second.reloader is not copy.reload


class _Connection:
    """Stands in for the MySQL connection a worker's router has opened."""
    closed = False

    def close(self):
        self.closed = True


def test_a_reload_closes_the_replaced_routers_db_connection_at_once(copy):
    """The parts hold the Router's reply hook (a reference cycle): without close() the old
    connection stayed open until the cyclic GC ran (tests/e2e/test_reload.py saw the leak)."""
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    connection = first.router.subscribers._db._conn = _Connection()
    kept = first.reloader.load(ksr, str(copy.settings), first)
    assert kept is not first and connection.closed
    assert first.router.subscribers._db._conn is None


def test_control_a_failed_reload_keeps_the_running_routers_connection(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    connection = first.router.subscribers._db._conn = _Connection()
    copy.file("routing", "registrar.py").write_text("def broken(:\n")
    assert first.reloader.load(ksr, str(copy.settings), first) is first and not connection.closed


def test_a_syntax_error_is_logged_once_with_file_and_line_and_the_old_code_stays(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    before = {name: sys.modules[name] for name in _kemi_modules()}
    registrar = copy.file("routing", "registrar.py")
    good = registrar.read_text()
    registrar.write_text(good + "\ndef broken(:\n")
    bad_line = good.count("\n") + 2

    kept = first.reloader.load(ksr, str(copy.settings), first)

    assert kept is first
    assert len(errors(ksr)) == 1
    assert f"{registrar}:{bad_line}: SyntaxError" in errors(ksr)[0]
    assert {name: sys.modules[name] for name in _kemi_modules()} == before   # old modules back
    assert in_dialog_reply(ksr, kept.router) == (404, "Not Found")

    # fixed, and edited: the next reload loads it
    registrar.write_text(good)
    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace(
        "sip.NOT_FOUND", 'sip.Reply(404, "Fixed")'))
    fixed = kept.reloader.load(ksr, str(copy.settings), kept)
    assert fixed is not first and len(errors(ksr)) == 1
    assert in_dialog_reply(ksr, fixed.router) == (404, "Fixed")


def test_an_error_at_import_names_the_file_and_line_where_it_happened(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    ban = copy.file("security", "ban.py")
    ban.write_text(ban.read_text() + "\nundefined_name + 1\n")
    line = ban.read_text().count("\n")

    assert first.reloader.load(ksr, str(copy.settings), first) is first
    assert f"{ban}:{line}: NameError" in errors(ksr)[0]


def test_an_invalid_setting_keeps_the_previous_router(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    copy.write_settings({"sip": {"domain": "127.0.0.1"}, "security": {"route_secret": "short"}})

    assert first.reloader.load(ksr, str(copy.settings), first) is first
    assert "security.route_secret" in errors(ksr)[0]


def test_a_setting_kamailio_cfg_uses_needs_a_restart_a_python_one_does_not(copy):
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    copy.write_settings({"sip": {"domain": "127.0.0.1", "children": 7}})

    assert first.reloader.load(ksr, str(copy.settings), first) is first
    assert "SIP_CHILDREN" in errors(ksr)[0] and "restart Kamailio" in errors(ksr)[0]

    copy.write_settings({"sip": {"domain": "127.0.0.1"},
                         "security": {"scanner_user_agents": ["evil-scanner"]}})
    second = first.reloader.load(ksr, str(copy.settings), first)
    assert second is not first and len(errors(ksr)) == 1
    assert list(second.router.settings.security.scanner_user_agents) == ["evil-scanner"]


def test_the_first_load_raises(copy):
    copy.write_settings({"security": {"route_secret": "short"}})
    with pytest.raises(Exception) as err:
        copy.reload.load(FakeKSR(), str(copy.settings))
    assert type(err.value).__name__ == "SettingsError"


def test_changed_defines_names_lines_never_values(copy):
    before = '#!define DBURL "mysql://u:secret1@h/db"\n#!define SIP_CHILDREN 8\nlisten=udp:127.0.0.1:5060\n'
    after = '#!define DBURL "mysql://u:secret2@h/db"\n#!define SIP_CHILDREN 8\nlisten=udp:127.0.0.1:5070\n'
    assert copy.reload.changed_defines(before, after) == ["DBURL", "listen"]
    assert copy.reload.changed_defines(before, before) == []


def run_cli(copy, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kemi.reload", str(copy.settings), *args],
                          cwd=copy.root, capture_output=True, text=True, timeout=60)


def test_make_reload_refuses_code_that_would_not_load_and_says_where(copy):
    copy.write_settings({"sip": {"domain": "127.0.0.1"}, "runtime": {"dir": str(copy.root / "run")}})
    registrar = copy.file("routing", "registrar.py")
    registrar.write_text(registrar.read_text() + "\ndef broken(:\n")
    line = registrar.read_text().count("\n")

    done = run_cli(copy)
    assert done.returncode == 1
    assert f"{registrar}:{line}: SyntaxError" in done.stderr and "NOT sent" in done.stderr

    # --force sends it anyway: here there is no Kamailio to send it to, and it says so
    done = run_cli(copy, "--force")
    assert done.returncode == 1 and f"no control socket at {copy.root / 'run'}" in done.stderr


def load_entry(copy: Copy, ksr: FakeKSR):
    """The copy's kamailio_entry.py as app_python3 loads it, with `ksr` as the KSR module."""
    ksr.defines.update(KEMI_ROOT=f'"{copy.root}"', KEMI_SETTINGS=f'"{copy.settings}"')
    saved = sys.modules.get("KSR")
    sys.modules["KSR"] = ksr
    try:
        spec = importlib.util.spec_from_file_location("kamailio_entry", copy.file("kamailio_entry.py"))
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        return entry
    finally:
        if saved is None:
            del sys.modules["KSR"]
        else:
            sys.modules["KSR"] = saved


def reloads(ksr: FakeKSR) -> list[str]:
    return [text for level, text in ksr.logs if "kemi: reloaded" in text]


def test_make_reload_generation_swaps_the_code_before_the_next_message(copy):
    """make reload increments kemi_reload.generation; the handler app_python3 calls loads the
    edited code before the very next message (not when app_python3's try-lock allows)."""
    ksr = FakeKSR()
    entry = load_entry(copy, ksr)
    handler = entry.mod_init()
    assert in_dialog_reply(ksr, handler) == (404, "Not Found")
    assert not reloads(ksr), "no make reload yet: the code loaded at start serves"

    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace(
        "sip.NOT_FOUND", 'sip.Reply(404, "Edited")'))
    assert in_dialog_reply(ksr, handler) == (404, "Not Found")      # control: no reload asked yet
    ksr.cfg_vars["kemi_reload.generation"] = 1                        # make reload
    assert in_dialog_reply(ksr, handler) == (404, "Edited")
    assert errors(ksr) == [] and len(reloads(ksr)) == 1
    in_dialog_reply(ksr, handler)
    assert len(reloads(ksr)) == 1, "one reload per generation, not per message"

    # code that does not load: logged once, the previous code keeps answering
    copy.edit(("routing", "registrar.py"), "def save(", "def save((")
    ksr.cfg_vars["kemi_reload.generation"] = 2
    for _ in range(3):
        assert in_dialog_reply(ksr, handler) == (404, "Edited")
    assert len([e for e in errors(ksr) if "reload failed" in e and "registrar.py" in e]) == 1
    # the same object serves throughout: app_python3 keeps calling what mod_init returned
    assert entry.mod_init() is handler


def test_app_python3s_calls_module_functions_that_route_like_the_handler(copy):
    """app_python3s (Kamailio 6+) calls kamailio_entry's functions by name with no message
    object; they reach the same router as app_python3's handler methods, reload included."""
    ksr = FakeKSR()
    entry = load_entry(copy, ksr)
    assert entry.mod_init() is not None                  # script_init: any object will do
    assert entry.child_init(1) == 0                      # script_child_init(rank)
    ksr.message = SipMessage(method="INFO", ruri="sip:6150@127.0.0.1", to_tag="t-1")
    assert entry.ksr_request_route() == 1 and ksr.replies[-1] == (404, "Not Found")
    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace(
        "sip.NOT_FOUND", 'sip.Reply(404, "Edited")'))
    ksr.cfg_vars["kemi_reload.generation"] = 1
    entry.ksr_request_route()
    assert ksr.replies[-1] == (404, "Edited")
    assert entry.ksr_failure_manage() == 1
    # any other callback name is the router's, found as app_python3 finds it (no argument here)
    assert entry.ksr_reply_route() == 1
    with pytest.raises(AttributeError):
        entry.ksr_no_such_route


def _count_compiles(monkeypatch) -> list[str]:
    """Names of the modules an import compiles from source (not loaded from a .pyc)."""
    from importlib.machinery import SourceFileLoader
    compiled: list[str] = []
    original = SourceFileLoader.source_to_code

    def counting(self, data, path, *args, **kwargs):
        compiled.append(self.name)
        return original(self, data, path, *args, **kwargs)
    monkeypatch.setattr(SourceFileLoader, "source_to_code", counting)
    return compiled


def test_make_reload_compiles_once_for_every_worker_and_an_edit_after_it_is_still_seen(copy, tmp_path, monkeypatch):
    """`python3 -m kemi.reload` writes checked hash-based pycs into <runtime.dir>/reload-pycache;
    a reload then compiles only what changed since (an edit of the same length, in the same
    second, made after the cache was written: its hash differs, so its source is compiled)."""
    copy.write_settings({"sip": {"domain": "127.0.0.1"}, "runtime": {"dir": str(tmp_path / "run")}})
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    written = copy.reload.compile_for_reload(first.router.settings)
    sources = list(copy.root.joinpath("kemi").rglob("*.py"))
    assert written == len(sources) > 50
    pyc = next((tmp_path / "run" / "reload-pycache").rglob("router.*.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b11        # PEP 552 flags: hash-based, checked

    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace(
        "sip.NOT_FOUND", "sip.FORBIDDEN"))                       # the same length on purpose
    compiled = _count_compiles(monkeypatch)
    second = first.reloader.load(ksr, str(copy.settings), first)
    assert errors(ksr) == [] and in_dialog_reply(ksr, second.router) == (403, "Forbidden")
    assert compiled == ["kemi.routing.router"]


def test_control_without_the_cache_a_reload_compiles_every_module(copy, tmp_path, monkeypatch):
    copy.write_settings({"sip": {"domain": "127.0.0.1"}, "runtime": {"dir": str(tmp_path / "run")}})
    ksr = FakeKSR()
    first = copy.reload.load(ksr, str(copy.settings))
    compiled = _count_compiles(monkeypatch)
    second = first.reloader.load(ksr, str(copy.settings), first)
    assert second is not first and errors(ksr) == []
    assert len(compiled) > 50 and "kemi.routing.router" in compiled
    assert not (tmp_path / "run" / "reload-pycache").exists()        # a reload writes nothing


SITE_ROUTER = '''from kemi import sip
from kemi.names import DONE
from kemi.routing import Router


class SiteRouter(Router):
    def route_withindlg(self, msg):
        if msg.to_tag and not self.ksr.rr.loose_route() > 0:
            self.reply(sip.Reply(404, "Site 1"))
            return DONE
        return super().route_withindlg(msg)
'''


@pytest.mark.skipif(__import__("kemi.compiled").compiled.staleness() is not None,
                    reason="no current compiled copy: make compile")
def test_compiled_core_keeps_running_a_site_router_reloads_a_kemi_edit_needs_make_compile(copy, tmp_path):
    """python.compiled: the copy runs the compiled modules of make compile (its build/ is this
    checkout's, built from the same sources); a reload re-imports the site's plain Router
    subclass and keeps the compiled package; an edit of kemi/ is refused until make compile."""
    from kemi.compiled import is_compiled          # (the copy's kemi: its build/ is copy.root's)
    (copy.root / "build").mkdir()
    (copy.root / "build" / "compiled").symlink_to(PROJECT_ROOT / "build" / "compiled")
    site = tmp_path / "site"
    site.mkdir()
    (site / "site_router.py").write_text(SITE_ROUTER)
    copy.write_settings({"sip": {"domain": "127.0.0.1"},
                         "python": {"compiled": True, "path": [str(site)], "router": "site_router:SiteRouter"}})
    ksr = FakeKSR()
    ksr.defines["KEMI_COMPILED"] = f'"{copy.root / "build" / "compiled"}"'
    entry = load_entry(copy, ksr)
    handler = entry.mod_init()
    core = sys.modules["kemi.routing.router"]
    assert is_compiled(core) and is_compiled(sys.modules["kemi.sbc.part"]), core.__file__
    assert not is_compiled(sys.modules["kemi.message"])          # left interpreted (kemi/compiled.py)
    assert in_dialog_reply(ksr, handler) == (404, "Site 1")

    (site / "site_router.py").write_text(SITE_ROUTER.replace("Site 1", "Site 2"))
    ksr.cfg_vars["kemi_reload.generation"] = 1                    # make reload
    assert in_dialog_reply(ksr, handler) == (404, "Site 2")        # the site's Router reloaded
    assert errors(ksr) == [] and len(reloads(ksr)) == 1
    assert sys.modules["kemi.routing.router"] is core             # the compiled core stayed

    copy.edit(("routing", "router.py"), IN_DIALOG_404, IN_DIALOG_404.replace("sip.NOT_FOUND", "sip.NOT_FOUND "))
    ksr.cfg_vars["kemi_reload.generation"] = 2
    assert in_dialog_reply(ksr, handler) == (404, "Site 2")        # the running code keeps answering
    failed = [e for e in errors(ksr) if "reload failed" in e]
    assert len(failed) == 1 and "python.compiled" in failed[0] and "make compile" in failed[0], failed
