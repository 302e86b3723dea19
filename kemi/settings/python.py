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


def validate(s: Settings, source: str) -> None:
    require(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", s.python.router) is not None, "python.router",
            f"{s.python.router!r} is not 'module:Class'", 'write e.g. "kemi.routing:Router"', source)
    require(s.python.engine in PYTHON_ENGINES, "python.engine", f"{s.python.engine!r} is not supported",
            "use " + ", ".join(f'"{e}"' for e in PYTHON_ENGINES) + ' ("app_python3s" needs Kamailio 5.8 or newer)',
            source)


def engine_lines(s: Settings) -> list[str]:
    # "auto": kamailio.cfg picks app_python3s on Kamailio 6+ (KAMAILIO_5 is Kamailio's own define)
    return [f"#!define KEMI_ENGINE_{s.python.engine.upper()}"] if s.python.engine != "auto" else []
