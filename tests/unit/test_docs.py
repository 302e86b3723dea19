"""Every setting is documented: a key added to a settings table without docs fails here."""
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from kemi.settings import META_FIELDS, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC_OF_TABLE = {"sip": "settings.md", "database": "settings.md", "registrar": "settings.md", "nat": "settings.md",
                "python": "settings.md", "runtime": "settings.md", "media": "media.md",
                "sbc": "sbc.md", "security": "security.md", "tls": "security.md",
                "metrics": "observability.md", "logging": "observability.md",
                "websocket": "media.md", "cluster": "cluster.md", "records": "records.md", "capture": "records.md",
                "topology": "sbc.md", "limits": "sbc.md", "overload": "reliability.md"}


def test_every_table_has_a_doc():
    tables = {f.name for f in fields(Settings) if f.name not in META_FIELDS}
    assert tables == set(DOC_OF_TABLE)


def _keys(cls, prefix=""):
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        yield prefix + f.name
        if is_dataclass(default):
            yield from _keys(type(default), prefix + f.name + ".")


@pytest.mark.parametrize("table", sorted(DOC_OF_TABLE))
def test_every_key_is_documented(table):
    cls = type(getattr(Settings(), table))
    text = (DOCS / DOC_OF_TABLE[table]).read_text()
    missing = [key for key in _keys(cls)
               if not re.search(rf"(?<![\w-]){re.escape(key.rsplit('.', 1)[-1])}(?![\w-])", text)]
    assert not missing, f"document these [{table}] keys in docs/{DOC_OF_TABLE[table]}: {missing}"
