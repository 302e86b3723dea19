"""[python]: the routing class Kamailio runs, where a site keeps its modules, the engine module."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

PYTHON_ENGINES = ("auto", "app_python3", "app_python3s")


@dataclass(frozen=True)
class PythonSettings:
    # "module:Class" of the routing class Kamailio runs; a subclass of kemi.routing.Router
    router: str = "kemi.routing:Router"
    # folders added to sys.path first, where a site keeps its own routing modules
    path: tuple[str, ...] = ()
    # the Kamailio module that runs the routing: "auto" (app_python3s on Kamailio 6+, where it
    # exists and enters Python cheaper, app_python3 on 5.x), "app_python3" or "app_python3s"
    engine: str = "auto"
    # the routing's hot path compiled with mypyc (`make compile` builds build/compiled/, which
    # must be current: checked at start); false: the plain Python package (docs/benchmark.md)
    compiled: bool = False


def validate(s: Settings, source: str) -> None:
    require(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", s.python.router) is not None, "python.router",
            f"{s.python.router!r} is not 'module:Class'", 'write e.g. "kemi.routing:Router"', source)
    require(s.python.engine in PYTHON_ENGINES, "python.engine", f"{s.python.engine!r} is not supported",
            "use " + ", ".join(f'"{e}"' for e in PYTHON_ENGINES) + ' ("app_python3s" needs Kamailio 5.8 or newer)',
            source)
    if s.python.compiled:
        from kemi import compiled
        problem = compiled.staleness()
        require(problem is None, "python.compiled", f"true, but {problem}", compiled.FIX, source)
        # the probe wraps Router.ksr_request_route on the instance: a compiled Router's methods
        # cannot be replaced ("attribute 'ksr_request_route' is read-only" at start)
        require(s.metrics.python_memory_interval == 0, "python.compiled",
                "true, with metrics.python_memory_interval on: the memory probe wraps a Router method, "
                "which the compiled Router cannot have replaced",
                "turn one of them off (the probe is a soak's debug hook)", source)


def engine_lines(s: Settings) -> list[str]:
    # "auto": kamailio.cfg picks app_python3s on Kamailio 6+ (KAMAILIO_5 is Kamailio's own define)
    lines = [f"#!define KEMI_ENGINE_{s.python.engine.upper()}"] if s.python.engine != "auto" else []
    if s.python.compiled:       # kemi/kamailio_entry.py puts it first on sys.path
        from kemi import compiled
        lines.append(f'#!define KEMI_COMPILED "{compiled.BUILD_DIR}"')
    return lines
