"""The settings corpus: every shipped and documented example rendered, described and checked,
and a bad value for every key with the error it gets. tests/unit/test_settings_golden.py
compares it with tests/unit/golden/settings.json, written before the settings were split per
table (issue 18): the error messages, `kemi check` output and the rendered cfg stay byte for
byte the same. `python3 tests/unit/settings_corpus.py --write` rewrites the golden file (only
for a deliberate change of an output, reviewed in the diff).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kemi.settings import (Settings, SettingsError, describe, parse_settings,  # noqa: E402
                           render_dispatcher_list, render_kamailio_defines)

GOLDEN = Path(__file__).resolve().parent / "golden" / "settings.json"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIXED_ROOT = Path("/opt/kemi-golden")       # kemi_root and outdir: the same on every machine
TOML_BLOCK = re.compile(r"^\s*```toml\n(.*?)^\s*```", re.M | re.S)
# values that are wrong for any key of a type (each key gets each of its type's)
BAD = {bool: ["yes", 1], int: ["7", True, -99999999, 99999999], str: [5, "", 'a"b', "x y\nz"],
       tuple: ["one", [1, 2], ["", "bad value"]]}


def examples() -> dict[str, dict]:
    """{name: parsed TOML} for settings.toml and every ```toml block of the docs (a block that
    is not TOML on its own, or whose lines are indented in a list, is dedented first)."""
    out = {"settings.toml": tomllib.loads((ROOT / "settings.toml").read_text())}
    for doc in DOCS:
        for i, m in enumerate(TOML_BLOCK.finditer(doc.read_text())):
            text = "\n".join(line.strip() if line.startswith("   ") else line for line in m.group(1).splitlines())
            try:
                out[f"{doc.name}#{i}"] = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                out[f"{doc.name}#{i}"] = {"__unparsable__": str(exc)}
    return out


def outcome(raw: dict, source: str) -> dict:
    """What the settings machinery makes of `raw`: the error text, or the rendered files."""
    if "__unparsable__" in raw:
        return {"unparsable": raw["__unparsable__"]}
    try:
        s = parse_settings(raw, source=source)
    except SettingsError as exc:
        return {"error": str(exc), "keys": [p.key for p in exc.problems]}
    out = {"describe": describe(s), "cfg": render_kamailio_defines(s, FIXED_ROOT, FIXED_ROOT)}
    if s.sbc.enabled and s.sbc.gateways_from == "settings":
        out["dispatcher"] = render_dispatcher_list(s)
    return out


ENVIRONMENTS = {
    "domain": {"KEMI__SIP__DOMAIN": "pbx.example.com", "KEMI__SIP__LISTEN": '["udp:192.0.2.10:5060"]'},
    "nested": {"KEMI__MEDIA__RTPENGINE__LISTEN_NG": "127.0.0.1:2299", "KEMI__METRICS__ENABLED": "true"},
    "profile": {"KEMI__MEDIA__PROFILES__WEB__RTCP_MUX": '["require"]', "KEMI__MEDIA__PROFILE": "web"},
    "bad value": {"KEMI__SECURITY__BAN_TIME": "soon"},
    "unknown key": {"KEMI__SIP__NOPE": "1"},
    "unknown table": {"KEMI__NOPE__X": "1"},
    "bad rendered": {"KEMI__DATABASE__USRLOC_DB_MODE": "7", "KEMI__SIP__CHILDREN": "0"},
}


def environment_cases() -> dict[str, dict]:
    """settings.toml loaded with KEMI__ variables over it: what they change, or the error
    naming the variable."""
    import os
    import tempfile

    from kemi.settings import load_settings
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "site.toml"
        file.write_text((ROOT / "settings.toml").read_text())
        for name, env in ENVIRONMENTS.items():
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                s = load_settings(file)
                out[f"env:{name}"] = {"describe": describe(s), "environment": [list(e) for e in s.environment],
                                      "cfg": render_kamailio_defines(s, FIXED_ROOT, FIXED_ROOT).replace(tmp, "TMP")}
            except SettingsError as exc:
                out[f"env:{name}"] = {"error": str(exc).replace(tmp, "TMP"), "keys": [p.key for p in exc.problems]}
            finally:
                os.environ.clear()
                os.environ.update(saved)
    return out


def digest(result: dict) -> dict:
    """A mutated case that was accepted: its outputs as one sha256 (the corpus stays small)."""
    if "error" in result:
        return result
    return {"sha256": hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()}


def keys(default, prefix: str = "") -> list[tuple[str, type]]:
    """Every scalar key of the schema (nested dataclass tables flattened), with its type."""
    out = []
    for f in fields(default):
        if f.name in ("source", "environment"):
            continue
        value = getattr(default, f.name)
        if is_dataclass(value) and not isinstance(value, tuple):
            out += keys(value, f"{prefix}{f.name}.")
        elif isinstance(value, (bool, int, str, tuple)):
            out.append((prefix + f.name, bool if isinstance(value, bool) else type(value)))
    return out


def nested(key: str, value) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def corpus() -> dict[str, dict]:
    out = {name: outcome(raw, name) for name, raw in examples().items()}
    sbc_on = {"sbc": {"enabled": True,
                      "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24"],
                                 "gateways": ["sip:203.0.113.10:5060"]},
                      "private": {"listen": ["udp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                                  "gateways": ["sip:198.51.100.10:5060"]}},
              "media": {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                                     {"name": "private", "address": "198.51.100.1"}]}}}
    cluster_on = {"cluster": {"enabled": True, "nodes": ["192.0.2.11", "192.0.2.12"], "secret": "s" * 32}}
    bases = {"defaults": {}, "sbc": sbc_on, "cluster": cluster_on,
             "all": {**sbc_on, **cluster_on, "metrics": {"enabled": True}, "websocket": {"enabled": True},
                     "logging": {"decisions": True}, "database": {"failover": ["192.0.2.22:3306"],
                                                                 "url": "mysql://k:pw@192.0.2.21/kamailio"}}}
    for base_name, base in bases.items():
        out[f"base:{base_name}"] = outcome(json.loads(json.dumps(base)), base_name)
        for key, typ in keys(Settings()):
            for bad in BAD[typ]:
                raw = json.loads(json.dumps(base))
                table = raw
                parts = key.split(".")
                for p in parts[:-1]:
                    table = table.setdefault(p, {})
                table[parts[-1]] = bad
                out[f"{base_name}:{key}={bad!r}"] = digest(outcome(raw, "site.toml"))
    out.update(environment_cases())
    out["unknown keys"] = outcome({"sip": {"nope": 1}, "nope": {}, "media": {"rtpengine": {"x": 1}}}, "s.toml")
    return out


if __name__ == "__main__":
    data = corpus()
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(data)} cases to {GOLDEN}")
    else:
        print(f"{len(data)} cases")
