"""Settings from KEMI__SECTION__KEY environment variables, over the settings file."""
import pytest

from kemi.app import check_rendered_environment
from kemi.settings import (SettingsError, environment_digest, environment_overrides, load_settings,
                           parse_env_value, render_kamailio_defines)

SITE = """
[sip]
domain = "file.example.com"
listen = ["udp:127.0.0.1:5060"]
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A settings file, and an environment with no KEMI__ variable of the machine's own."""
    for name in list(__import__("os").environ):
        if name.upper().startswith("KEMI__"):
            monkeypatch.delenv(name)
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    return path


def test_without_variables_the_file_is_used(site):
    s = load_settings(site)
    assert s.sip.domain == "file.example.com" and s.environment == ()


def test_the_convention_examples_override_the_file(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "pbx.example.com")
    monkeypatch.setenv("KEMI__DATABASE__URL", "mysql://kam:secret@db.example.com:3307/kamailio")
    monkeypatch.setenv("KEMI__DATABASE__RO_URL", "mysql://ro:ro@db.example.com/kamailio")
    monkeypatch.setenv("KEMI__MEDIA__RTPENGINE__LISTEN_NG", "127.0.0.1:2299")
    monkeypatch.setenv("KEMI__SIP__LISTEN", '["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]')
    s = load_settings(site)
    assert s.sip.domain == "pbx.example.com"
    assert s.database.url == "mysql://kam:secret@db.example.com:3307/kamailio"
    assert s.media.rtpengine.listen_ng == "127.0.0.1:2299"
    # the default instance follows the daemon's ng socket, as it does from the file
    assert [i.ng for i in s.media.instances] == ["udp:127.0.0.1:2299"]
    assert [l.socket for l in s.sip.listen] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert [v for v, _ in s.environment] == ["KEMI__DATABASE__RO_URL", "KEMI__DATABASE__URL",
                                             "KEMI__MEDIA__RTPENGINE__LISTEN_NG", "KEMI__SIP__DOMAIN",
                                             "KEMI__SIP__LISTEN"]


def test_names_are_case_insensitive_and_values_typed_as_toml(site, monkeypatch):
    monkeypatch.setenv("kemi__Sip__Children", "8")
    monkeypatch.setenv("KEMI__SECURITY__ENABLED", "false")
    monkeypatch.setenv("KEMI__MEDIA__RTPENGINE__INTERFACES", '[{name="default", address="192.0.2.1"}]')
    s = load_settings(site)
    assert s.sip.children == 8 and s.security.enabled is False
    assert [i.option for i in s.media.rtpengine.interfaces] == ["default/192.0.2.1"]


def test_a_named_table_key_can_be_set(site, monkeypatch):
    monkeypatch.setenv("KEMI__MEDIA__PROFILES__WIDE__CODEC_STRIP", '["G729"]')
    monkeypatch.setenv("KEMI__MEDIA__PROFILE", "wide")
    s = load_settings(site)
    assert s.media.get_profile().codec_strip == ("G729",)


@pytest.mark.parametrize("text, value", [
    ("true", True), ("5", 5), ('["a","b"]', ["a", "b"]), ("pbx.example.com", "pbx.example.com"),
    ('[{name="x", address="1.2.3.4"}]', [{"name": "x", "address": "1.2.3.4"}]),
    ("127.0.0.1:2223", "127.0.0.1:2223"), ("mysql://u:p@h/db", "mysql://u:p@h/db"), ("", ""),
    ('"quoted"', "quoted"), ("5\nother = 1", "5\nother = 1"),
])
def test_values_are_toml_when_they_parse_else_strings(text, value):
    assert parse_env_value(text) == value


@pytest.mark.parametrize("variable, words", [
    ("KEMI__SIP__DOMIAN", ["'domian' is not a key of sip", "aliases, children, domain, listen"]),
    ("KEMI__SIPP__DOMAIN", ["'sipp' is not a key of the settings", "database", "sip,"]),
    ("KEMI__SIP__DOMAIN__X", ["sip.domain is a value", "KEMI__SIP__DOMAIN=VALUE"]),
    ("KEMI__SIP", ["sip is a table", "KEMI__SIP__DOMAIN=VALUE"]),
    ("KEMI__MEDIA__RTPENGINE__LISTENNG", ["not a key of media.rtpengine", "listen_ng"]),
    ("KEMI__MEDIA__PROFILES", ["named tables", "KEMI__MEDIA__PROFILES__NAME__FLAGS"]),
    ("KEMI__MEDIA__PROFILES__WIDE__FLAGZ", ["not a key of media.profiles.wide", "codec_strip"]),
    ("KEMI__", ["'' is not a key"]),
])
def test_an_unknown_key_is_an_error_naming_the_variable_and_the_valid_keys(site, monkeypatch, variable, words):
    monkeypatch.setenv(variable, "x")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert f"environment variable ${variable}" in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_a_bad_value_names_the_key_and_the_variable(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__CHILDREN", "100")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert err.value.key == "sip.children"
    assert "setting 'sip.children' (from $KEMI__SIP__CHILDREN)" in str(err.value)
    assert "use 1 to 64" in str(err.value)


def test_a_wrong_type_from_the_environment_is_named(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__LISTEN", "udp:0.0.0.0")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert "(from $KEMI__SIP__LISTEN)" in str(err.value) and "proto:address:port" in str(err.value)


def test_a_cross_key_error_names_the_variable_that_took_part(site, monkeypatch):
    monkeypatch.setenv("KEMI__REGISTRAR__MIN_EXPIRES", "7200")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert err.value.key == "registrar" and "(from $KEMI__REGISTRAR__MIN_EXPIRES)" in str(err.value)


def test_an_error_in_the_file_does_not_blame_the_environment(site, monkeypatch):
    site.write_text(SITE + "\n[registrar]\nmax_contacts = -1\n")
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "pbx.example.com")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert err.value.key == "registrar.max_contacts" and "$KEMI__" not in str(err.value)


def test_other_variables_are_ignored(site, monkeypatch):
    monkeypatch.setenv("KEMI_SETTINGS", str(site))        # single underscore: the file to load
    monkeypatch.setenv("KEMI_TEST_SLOT", "4")
    monkeypatch.setenv("KEMI_SIP_DOMAIN", "not.applied")
    monkeypatch.setenv("XKEMI__SIP__DOMAIN", "not.applied")
    s = load_settings()
    assert s.source == str(site) and s.sip.domain == "file.example.com" and s.environment == ()


def test_a_variable_inside_a_value_of_the_file_is_refused(site, monkeypatch):
    site.write_text('sip = "oops"\n')
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "pbx.example.com")
    with pytest.raises(SettingsError) as err:
        load_settings(site)
    assert "$KEMI__SIP__DOMAIN" in str(err.value)


def test_the_rendered_cfg_sees_the_overrides(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "pbx.example.com")
    cfg = render_kamailio_defines(load_settings(site))
    assert '#!define SIP_DOMAIN "pbx.example.com"' in cfg
    assert "# Environment overrides: KEMI__SIP__DOMAIN" in cfg


def test_python_refuses_to_start_when_its_environment_differs_from_the_rendered_one(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "pbx.example.com")
    rendered = render_kamailio_defines(load_settings(site))
    digest = next(l.split('"')[1] for l in rendered.splitlines() if l.startswith("#!define KEMI_ENVIRONMENT "))
    check_rendered_environment(load_settings(site), f'"{digest}"')     # same environment: fine
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "other.example.com")
    with pytest.raises(SettingsError, match="KEMI__SIP__DOMAIN.*not those kamailio-settings.cfg"):
        check_rendered_environment(load_settings(site), f'"{digest}"')
    monkeypatch.delenv("KEMI__SIP__DOMAIN")
    with pytest.raises(SettingsError, match=r"\(none\)"):
        check_rendered_environment(load_settings(site), f'"{digest}"')


def test_digest_depends_on_names_and_values():
    a = environment_digest((("KEMI__SIP__DOMAIN", "a"),))
    assert a == environment_digest((("KEMI__SIP__DOMAIN", "a"),))
    assert a != environment_digest((("KEMI__SIP__DOMAIN", "b"),)) != environment_digest(())


def test_overrides_are_sorted_by_name():
    env = {"KEMI__SIP__LISTEN": '["udp:127.0.0.1:5060"]', "KEMI__SIP__DOMAIN": "x", "PATH": "/bin"}
    assert [o.variable for o in environment_overrides(env)] == ["KEMI__SIP__DOMAIN", "KEMI__SIP__LISTEN"]


def test_one_key_set_twice_is_an_error(site, monkeypatch):
    monkeypatch.setenv("KEMI__SIP__DOMAIN", "a.example.com")
    monkeypatch.setenv("kemi__sip__domain", "b.example.com")
    with pytest.raises(SettingsError, match=r"is also set by \$KEMI__SIP__DOMAIN"):
        load_settings(site)


class _Problems(SettingsError):
    """Like an error listing several problems (a SettingsError per problem in `problems`)."""

    def __init__(self, problems):
        ValueError.__init__(self, "\n".join(str(p) for p in problems))
        self.key, self.problems = problems[0].key, tuple(problems)


def test_each_of_several_problems_names_its_own_variable():
    from kemi.settings import blame_environment

    overrides = environment_overrides({"KEMI__SIP__CHILDREN": "100", "KEMI__SIP__DOMAIN": "x"})
    several = _Problems([SettingsError("sip.children", "100 is out of range", "use 1 to 64", "f.toml"),
                         SettingsError("registrar.max_contacts", "-1 is out of range", "use 0 to 1000", "f.toml")])
    blamed = blame_environment(several, overrides)
    assert isinstance(blamed, _Problems) and [p.key for p in blamed.problems] == ["sip.children",
                                                                                  "registrar.max_contacts"]
    assert "(from $KEMI__SIP__CHILDREN)" in str(blamed.problems[0])
    assert "$KEMI__" not in str(blamed.problems[1])
    single = blame_environment(several.problems[0], overrides)
    assert single.problems == (single,)          # what `kemi check` prints, one line per problem
