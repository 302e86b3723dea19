"""The package's shape: one folder per feature, decisions apart from KSR, no import circle, parts
chosen once, names shared with the cfg in one place."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from kemi import names
from kemi.media.part import NoMedia, Rtpengine
from kemi.message import Message
from kemi.observe.part import MeteredObserver, Observer
from kemi.routing import Router
from kemi.routing.sides import OneSide
from kemi.sbc.part import SbcSides
from kemi.security.part import NoScreen, Screen
from kemi.settings import PROJECT_ROOT, parse_settings, render_kamailio_defines
from kemi.testing import FakeKSR, SipMessage, make_router

PACKAGE = PROJECT_ROOT / "kemi"
# one folder per feature: its plain decisions, its KSR part (part.py), its settings table (settings.py)
FEATURES = ("cluster", "limits", "media", "nat", "observe", "overload", "records", "sbc", "security", "topology",
            "websocket")
# what stays in kemi/routing/: the request path and what every route shares
ROUTING = {"__init__.py", "router.py", "guard.py", "registrar.py", "sides.py"}
CREDS = {"Proxy-Authorization": 'Digest username="2002", realm="127.0.0.1"'}
SBC_TABLES = {
    "sbc": {"enabled": True,
            "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                       "gateways": ["sip:203.0.113.10:5060"]},
            "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                        "gateways": ["sip:198.51.100.10:5060"]}},
    "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                           {"name": "private", "address": "198.51.100.1"}]}},
}


def runtime_nodes(tree: ast.AST):
    """Every node of `tree` except what is under `if TYPE_CHECKING:` (imports for annotations
    only: they never run, so they make no circle; mypy reads them)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def module_imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the kemi modules it imports at run time (anywhere in it, function-local
    imports too).

    Importing a.b.c imports the package a.b as well, unless the importer is inside a.b."""
    modules = {}
    for file in root.rglob("*.py"):
        name = ".".join(file.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in runtime_nodes(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found.update(t for t in targets if t.split(".")[0] in ("kemi", "kemi_tools"))
        modules[name] = found
    graph = {}
    for name, targets in modules.items():
        edges = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                ancestor = ".".join(parts[:i])
                if ancestor == target or not (name + ".").startswith(ancestor + "."):
                    edges.add(ancestor)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle():
    assert cycles(module_imports()) == []


def test_the_circle_finder_finds_a_circle():
    """Control: the finder is not blind (a -> b -> c -> a)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_type_checking_imports_are_left_out(tmp_path):
    """Control: an import under TYPE_CHECKING draws no arrow, the same import outside does."""
    pkg = tmp_path / "kemi"
    pkg.mkdir()
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kemi.b import X\n")
    (pkg / "b.py").write_text("from kemi.a import Y\n")
    assert cycles(module_imports(pkg)) == []
    (pkg / "a.py").write_text("from kemi.b import X\n")
    assert cycles(module_imports(pkg)) == [["kemi.a", "kemi.b"]]


def touches_ksr(source: str) -> list[str]:
    """Where a module's code uses KSR: a name, attribute or argument called ksr / KSR, or an
    import of the message or a part (what a decision module must never need)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in ("ksr", "KSR"):
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in ("ksr", "KSR"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.arg) and node.arg in ("ksr", "KSR"):
            found.append(f"line {node.lineno}: argument {node.arg}")
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module in ("kemi.message", "kemi.routing") or node.module.endswith(".part")):
            found.append(f"line {node.lineno}: imports {node.module}")
    return found


def decision_modules() -> list[Path]:
    """Every module of a feature folder but its KSR part: the decisions and the settings table."""
    return [file for feature in FEATURES for file in sorted((PACKAGE / feature).glob("*.py"))
            if file.name != "part.py"]


def test_each_feature_is_one_folder_with_its_part_and_its_settings():
    for feature in FEATURES:
        folder = PACKAGE / feature
        assert (folder / "part.py").is_file(), feature
        assert (folder / "settings.py").is_file(), feature
        assert (folder / "__init__.py").read_text().startswith('"""'), f"{feature}: say what is where"
    assert {f.name for f in (PACKAGE / "routing").glob("*.py")} == ROUTING


@pytest.mark.parametrize("module", decision_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_decision_modules_never_touch_ksr(module):
    assert touches_ksr(module.read_text()) == []


def test_control_the_ksr_finder_sees_a_part():
    """Control: the finder flags a real part (the media part reads KSR) and each kind of use."""
    assert touches_ksr((PACKAGE / "media" / "part.py").read_text())
    assert touches_ksr("def f(ksr):\n    pass\n") == ["line 1: argument ksr"]
    assert touches_ksr("x = self.ksr.pv\n") == ["line 1: .ksr"]
    assert touches_ksr("from kemi.message import Message\n") == ["line 1: imports kemi.message"]


def test_a_registrar_message_carries_no_sbc_or_media_state():
    assert Message.__slots__ == ("ksr", "cache", "__dict__")     # __dict__: the PVs read (kemi/message.py)
    assert make_router(FakeKSR(), {}).sides.message_class is Message


def test_what_kamailio_loads_never_imports_the_tools_beside_it():
    graph = module_imports()
    assert not [m for m, deps in graph.items() if any(d.startswith("kemi_tools") for d in deps)]
    assert not (PACKAGE / "stack").exists() and not (PACKAGE / "kit").exists()


def test_names_is_a_leaf():
    assert module_imports()["kemi.names"] == set()


def test_the_entry_script_spells_the_reload_generation_as_names_does():
    tree = ast.parse((PACKAGE / "kamailio_entry.py").read_text())
    spelled = [n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and any(getattr(t, "id", "") == "GENERATION_PV" for t in n.targets)]
    assert spelled == [names.RELOAD_GENERATION_PV]


def test_every_callback_name_is_a_router_method_and_the_cfg_uses_the_rendered_name():
    for name in (names.BRANCH_ROUTE, names.ONREPLY_ROUTE, names.FAILURE_ROUTE,
                 names.ON_SL_REPLY_CALLBACK, names.XHTTP_CALLBACK):
        assert callable(getattr(Router, name)), name
    cfg = (PROJECT_ROOT / "kamailio.cfg").read_text()
    assert f'"{names.ON_SL_REPLY_CALLBACK}"' not in cfg and "KEMI_ON_SL_REPLY" in cfg
    assert f'"{names.XHTTP_CALLBACK}"' not in cfg and "KEMI_XHTTP_EVENT" in cfg
    rendered = render_kamailio_defines(parse_settings({}))
    assert f'#!define KEMI_ON_SL_REPLY "{names.ON_SL_REPLY_CALLBACK}"' in rendered
    assert f'#!define KEMI_XHTTP_EVENT "{names.XHTTP_CALLBACK}"' in rendered
    for flag, number in names.FLAGS.items():
        assert f"#!define {flag} {number}" in rendered


@pytest.mark.parametrize("tables, sides, media, screen, observe", [
    ({}, OneSide, Rtpengine, Screen, Observer),
    ({"media": {"enabled": False}}, OneSide, NoMedia, Screen, Observer),
    ({"security": {"enabled": False}}, OneSide, Rtpengine, NoScreen, Observer),
    ({"metrics": {"enabled": True}}, OneSide, Rtpengine, Screen, MeteredObserver),
    (SBC_TABLES, SbcSides, Rtpengine, Screen, Observer),
])
def test_the_parts_are_chosen_once_from_the_settings(tables, sides, media, screen, observe):
    router = make_router(FakeKSR(), tables)
    assert type(router.sides) is sides and type(router.media) is media and type(router.screen) is screen
    assert type(router.observe) is observe
    assert router.guard.message_class is sides.message_class


def classes_run(router, ksr) -> set[str]:
    """The classes whose methods ran while the router routed ksr's request."""
    seen = set()

    def profile(frame, event, _arg):
        if event == "call":
            seen.add(frame.f_code.co_qualname.split(".")[0])

    sys.setprofile(profile)
    try:
        router.ksr_request_route(None)
    finally:
        sys.setprofile(None)
    return seen


def relayed_call(tables: dict, message: SipMessage):
    ksr = FakeKSR(message)
    ksr.locations["2001"] = ["sip:2001@192.0.2.20:5060"]
    ksr.gateways = {1: ["sip:203.0.113.10:5060"], 2: ["sip:198.51.100.10:5060"]}
    router = make_router(ksr, tables)
    return classes_run(router, ksr), ksr


SDP_INVITE = dict(headers={**CREDS, "Content-Type": "application/sdp"},
                  body="v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n")


def test_a_registrar_call_runs_no_sbc_code_and_media_off_no_rtpengine_code():
    ran, ksr = relayed_call({"media": {"enabled": False}}, SipMessage(**SDP_INVITE))
    assert ksr.relayed and "SbcSides" not in ran and "Rtpengine" not in ran
    assert "OneSide" in ran and "NoMedia" in ran


def test_control_an_sbc_call_with_media_runs_both():
    """Control: the profiler sees the parts when they are there."""
    gateway_invite = SipMessage(**SDP_INVITE, ruri="sip:15550100@203.0.113.1", source=("203.0.113.10", 5060),
                                socket_name="public", received_on="udp:203.0.113.1:5060")
    ran, ksr = relayed_call(SBC_TABLES, gateway_invite)
    assert ksr.relayed and {"SbcSides", "Rtpengine"} <= ran and "OneSide" not in ran


def test_no_two_test_files_share_a_basename():
    """pytest imports test modules by basename (rootdir mode): two test_x.py in tests/unit
    and tests/e2e stop the whole suite from being collected (it happened twice)."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("test_*.py")):
        if "node_modules" in path.parts:
            continue
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename: rename one"
        seen[path.name] = path
