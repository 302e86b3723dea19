"""make install's decisions as plain functions: modules the cfg loads, versions, the settings edit."""
import tomllib

import pytest

from kemi.settings import PROJECT_ROOT, parse_settings, render_kamailio_defines
from kemi_tools.stack.install import (Refused, defined_names, loaded_modules, missing_modules, package_files,
                                parse_version, set_toml_key)

CFG = """
loadmodule "tm.so"
#!ifdef WITH_TLS
loadmodule "tls.so"
#!else
loadmodule "nothing_tls.so"
#!endif
#!ifndef WITH_SBC
loadmodule "plain"
#!ifdef WITH_TLS
loadmodule "nested.so"
#!endif
#!endif
"""


@pytest.mark.parametrize("defines, expected", [
    (set(), ["tm.so", "nothing_tls.so", "plain.so"]),
    ({"WITH_TLS"}, ["tm.so", "tls.so", "plain.so", "nested.so"]),
    ({"WITH_TLS", "WITH_SBC"}, ["tm.so", "tls.so"]),
])
def test_loadmodule_lines_follow_the_ifdefs(defines, expected):
    assert loaded_modules(CFG, defines) == expected


def _needed(raw: dict) -> list[str]:
    defines = defined_names(render_kamailio_defines(parse_settings(raw)))
    return [m for name in ("kamailio.cfg", "kamailio-common.cfg")
            for m in loaded_modules((PROJECT_ROOT / name).read_text(), defines)]


def test_the_real_configuration_needs_what_the_settings_turn_on():
    plain = _needed({"media": {"enabled": False}})
    for module in ("app_python3.so", "kemix.so", "auth_db.so", "usrloc.so", "registrar.so", "tm.so", "sl.so",
                   "rr.so", "pike.so", "htable.so", "db_mysql.so"):
        assert module in plain
    assert "rtpengine.so" not in plain and "dispatcher.so" not in plain and "tls.so" not in plain
    assert "rtpengine.so" in _needed({})          # the shipped default: media on


def test_records_and_capture_need_their_modules():
    """db_cluster comes with records alone, as with database.failover."""
    needed = _needed({"records": {"enabled": True}, "capture": {"enabled": True}})
    for module in ("acc.so", "db_cluster.so", "db_flatstore.so", "rtimer.so", "siptrace.so"):
        assert module in needed
    plain = _needed({})
    assert not {"acc.so", "db_cluster.so", "db_flatstore.so", "rtimer.so", "siptrace.so"} & set(plain)


def test_missing_modules_are_named(tmp_path):
    (tmp_path / "tm.so").write_bytes(b"")
    assert missing_modules(["tm.so", "sl.so", "sl.so"], [tmp_path]) == ["sl.so"]
    assert missing_modules(["tm.so"], [tmp_path / "elsewhere", tmp_path]) == []


@pytest.mark.parametrize("text, version", [
    ("version: kamailio 5.6.3 (x86_64/linux) \nflags: ...", (5, 6, 3)),
    ("version: kamailio 6.0.1 (aarch64/linux)", (6, 0, 1)),
    ("bash: command not found", None),
])
def test_version_is_read_from_kamailio_v(text, version):
    assert parse_version(text) == version


def test_db_url_replaces_the_line_and_keeps_comments():
    text = '# site\n[sip]\ndomain = "x"\n\n[database]   # the DB\nurl = "mysql://a:b@h/d"  # old\nusrloc_db_mode = 2\n'
    out = set_toml_key(text, "database", "url", 'mysql://k:p"w@db/kam')
    assert tomllib.loads(out)["database"] == {"url": 'mysql://k:p"w@db/kam', "usrloc_db_mode": 2}
    assert out.startswith("# site\n") and "[database]   # the DB" in out


def test_db_url_is_added_where_missing():
    assert tomllib.loads(set_toml_key('[sip]\ndomain = "x"\n', "database", "url", "u"))["database"] == {"url": "u"}
    assert tomllib.loads(set_toml_key("[database]\nusrloc_db_mode = 1\n", "database", "url", "u"))["database"] == {
        "url": "u", "usrloc_db_mode": 1}


def test_db_url_in_a_dotted_key_cannot_be_edited_safely():
    with pytest.raises(Refused, match="by hand"):
        set_toml_key('database.url = "old"\n', "database", "url", "new")


def test_the_package_files_include_the_api_list_and_no_caches():
    files = package_files()
    assert "kemi/testing/ksr_api_5_6.json" in files and "kemi/kamailio_entry.py" in files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
