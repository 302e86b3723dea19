"""`python3 -m kemi check` / `kemi check`: every problem of a settings file, key and fix, exit 1."""
import subprocess
import sys

import pytest

from kemi.__main__ import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, main
from kemi.settings import DEFAULT_SETTINGS_FILE, SettingsError, SettingsProblems, parse_settings

# three independent mistakes, in three tables
THREE_PROBLEMS = """\
[sip]
children = "4"
domain = "not a host!"

[database]
usrloc_db_mode = 7

[security]
ban_tme = 600
"""


def test_every_problem_is_printed_with_key_and_fix(tmp_path, capsys):
    f = tmp_path / "site.toml"
    f.write_text(THREE_PROBLEMS)
    assert main(["check", str(f)]) == EXIT_PROBLEMS
    err = capsys.readouterr().err
    lines = [l.strip() for l in err.splitlines()[1:]]
    assert err.splitlines()[0] == f"{f}: 4 problems"
    assert [l.split("'")[1] for l in lines] == ["sip.children", "security.ban_tme", "sip.domain",
                                                "database.usrloc_db_mode"]
    assert "write a number without quotes" in lines[0]
    assert "accepted keys here:" in lines[1] and "ban_time" in lines[1]
    assert "1 (write-through)" in lines[3]


def test_the_shipped_file_is_valid(capsys):
    assert main(["check", str(DEFAULT_SETTINGS_FILE)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"{DEFAULT_SETTINGS_FILE}: valid"


def test_one_problem_alone_in_the_file_kemi_settings_names(tmp_path, capsys, monkeypatch):
    f = tmp_path / "one.toml"
    f.write_text("[registrar]\nmax_contacts = -1\n")
    monkeypatch.setenv("KEMI_SETTINGS", str(f))
    assert main([]) == EXIT_PROBLEMS                # plain `kemi` is `kemi check`
    err = capsys.readouterr().err
    assert "1 problem\n" in err and "setting 'registrar.max_contacts'" in err


def test_unloadable_router_class_is_a_problem(tmp_path, capsys):
    f = tmp_path / "router.toml"
    f.write_text('[python]\nrouter = "no_such_module_kemi:Router"\n')
    assert main(["check", str(f)]) == EXIT_PROBLEMS
    assert "setting 'python.router'" in capsys.readouterr().err


def test_missing_file_and_bad_toml(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == EXIT_PROBLEMS
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    assert main(["check", str(bad)]) == EXIT_PROBLEMS
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["frobnicate"], ["check", "a.toml", "b.toml"], ["check", "--bogus"]])
def test_usage_errors(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "usage: kemi check" in capsys.readouterr().err


def test_module_entry_point_exit_code(tmp_path):
    f = tmp_path / "site.toml"
    f.write_text(THREE_PROBLEMS)
    done = subprocess.run([sys.executable, "-m", "kemi", "check", str(f)], capture_output=True, text=True)
    assert done.returncode == EXIT_PROBLEMS and done.stderr.count("setting '") == 4


def test_kemi_settings_check_prints_every_problem_too(tmp_path):
    f = tmp_path / "site.toml"
    f.write_text(THREE_PROBLEMS)
    done = subprocess.run([sys.executable, "-m", "kemi.settings", "check", str(f)], capture_output=True, text=True)
    assert done.returncode == 1
    assert [l.split("'")[1] for l in done.stderr.splitlines()] == [
        "sip.children", "security.ban_tme", "sip.domain", "database.usrloc_db_mode"]


def test_a_single_problem_raises_as_before_several_raise_all():
    with pytest.raises(SettingsError) as one:
        parse_settings({"sip": {"children": 0}}, source="s.toml")
    assert type(one.value) is SettingsError and one.value.problems == (one.value,)
    with pytest.raises(SettingsProblems) as many:
        parse_settings({"sip": {"children": 0}, "runtime": {"log_level": 9}}, source="s.toml")
    assert many.value.key == "sip.children"                 # Kamailio's start names the first
    assert [p.key for p in many.value.problems] == ["sip.children", "runtime.log_level"]
    assert str(many.value).splitlines() == [str(p) for p in many.value.problems]


def test_a_value_that_cannot_be_read_is_reported_once():
    # sbc.public.listen unreadable: its default () must not add "no socket for this side"
    with pytest.raises(SettingsError) as err:
        parse_settings({"sbc": {"enabled": True, "public": {"listen": ["bogus"]}}}, source="s.toml")
    keys = [p.key for p in err.value.problems]
    assert keys.count("sbc.public.listen") == 1
    assert "sbc.private.listen" in keys                       # the other side's problem stays
