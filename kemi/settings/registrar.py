"""[registrar]: the expiry limits and contacts per AOR registrar's save() applies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings


@dataclass(frozen=True)
class RegistrarSettings:
    max_expires: int = 3600
    min_expires: int = 60
    default_expires: int = 3600
    # contacts kept per AOR (0 = unlimited)
    max_contacts: int = 10


def validate(s: Settings, source: str) -> None:
    reg = s.registrar
    require(1 <= reg.min_expires <= reg.default_expires <= reg.max_expires <= 86400, "registrar",
            f"expires must satisfy 1 <= min ({reg.min_expires}) <= default ({reg.default_expires}) "
            f"<= max ({reg.max_expires}) <= 86400", "adjust registrar.min_expires/default_expires/max_expires", source)
    require(0 <= reg.max_contacts <= 1000, "registrar.max_contacts", f"{reg.max_contacts} is out of range",
            "use 0 (unlimited) to 1000", source)


def cfg_lines(s: Settings) -> list[str]:
    reg = s.registrar
    return [
        f"#!define REG_MAX_EXPIRES {reg.max_expires}",
        f"#!define REG_MIN_EXPIRES {reg.min_expires}",
        f"#!define REG_DEFAULT_EXPIRES {reg.default_expires}",
        f"#!define REG_MAX_CONTACTS {reg.max_contacts}",
    ]
