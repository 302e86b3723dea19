"""Settings: validated once, errors name the key and the fix, rendered for kamailio.cfg."""
import pytest

from kemi.settings import (DEFAULT_SETTINGS_FILE, SettingsError, load_settings, parse_settings,
                           render_kamailio_defines)


def test_the_shipped_settings_file_is_valid():
    s = load_settings(DEFAULT_SETTINGS_FILE)
    assert s.sip.listen[0].socket == "udp:127.0.0.1:5060"
    assert s.database.usrloc_db_mode == 1


def test_defaults_are_the_loopback_demo():
    s = parse_settings({})
    assert s.sip.domain == "127.0.0.1" and s.registrar.max_expires == 3600
    assert s.python.router == "kemi.routing:Router"


@pytest.mark.parametrize("raw, key, words", [
    ({"sip": {"lissten": []}}, "sip.lissten", "accepted keys here"),
    ({"sipp": {}}, "sipp", "accepted keys here"),
    ({"sip": {"listen": ["udp:127.0.0.1"]}}, "sip.listen", "proto:address:port"),
    ({"sip": {"listen": ["sctp:127.0.0.1:5060"]}}, "sip.listen", "proto udp, tcp or tls"),
    ({"sip": {"listen": ["udp:127.0.0.1:70000"]}}, "sip.listen", "1 to 65535"),
    ({"sip": {"listen": ["udp:999.0.0.1:5060"]}}, "sip.listen", "IP address"),
    ({"sip": {"listen": []}}, "sip.listen", "non-empty"),
    ({"sip": {"domain": "bad domain!"}}, "sip.domain", "hostname or IP"),
    ({"sip": {"children": "4"}}, "sip.children", "whole number"),
    ({"sip": {"children": 0}}, "sip.children", "1 to 64"),
    ({"database": {"url": "postgres://x@y/z"}}, "database.url", "MySQL URL"),
    ({"database": {"usrloc_db_mode": 0}}, "database.usrloc_db_mode", "1 (write-through)"),
    ({"database": {"ro_url": "mysql://ro:ro@localhost/other"}}, "database.ro_url", "same database"),
    ({"registrar": {"max_expires": 30}}, "registrar", "min"),
    ({"python": {"router": "no-colon"}}, "python.router", "module:Class"),
    ({"runtime": {"dir": "relative/dir"}}, "runtime.dir", "absolute"),
    ({"runtime": {"log_level": 9}}, "runtime.log_level", "-3 (alert) to 3"),
])
def test_bad_values_name_the_key_and_the_fix(raw, key, words):
    with pytest.raises(SettingsError) as err:
        parse_settings(raw, source="site.toml")
    assert err.value.key == key
    assert f"setting '{key}' in site.toml" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_usrloc_db_modes_are_selectable(mode):
    s = parse_settings({"database": {"usrloc_db_mode": mode}})
    text = render_kamailio_defines(s)
    assert f"#!define USRLOC_DB_MODE {mode}" in text
    # db_mode 3 only: usrloc's db_insert_update (kamailio-common.cfg)
    assert ("#!define USRLOC_DB_ONLY" in text) == (mode == 3)


def test_ipv6_listen_is_accepted():
    s = parse_settings({"sip": {"listen": ["udp:[::1]:5060", "tcp:127.0.0.1:5060"]}})
    assert [l.host for l in s.sip.listen] == ["::1", "127.0.0.1"]


def test_render_has_listen_aliases_with_ports_and_shared_flags():
    s = parse_settings({"sip": {"domain": "pbx.example.com", "listen": ["udp:192.0.2.1:5060", "tcp:192.0.2.1:5080"]}})
    cfg = render_kamailio_defines(s)
    assert "listen=udp:192.0.2.1:5060" in cfg and "listen=tcp:192.0.2.1:5080" in cfg
    assert "alias=pbx.example.com:5060" in cfg and "alias=pbx.example.com:5080" in cfg
    assert "\nalias=pbx.example.com\n" not in cfg            # a bare alias would swallow every port
    assert '#!define SIP_DOMAIN "pbx.example.com"' in cfg and "#!define WITH_TCP" in cfg
    assert "#!define FLB_NATB 6" in cfg


def test_domain_equal_to_the_listen_address_needs_no_alias():
    cfg = render_kamailio_defines(parse_settings({}))
    assert "alias=" not in cfg


def test_missing_file_error_says_how_to_fix(tmp_path):
    with pytest.raises(SettingsError, match="KEMI_SETTINGS"):
        load_settings(tmp_path / "nope.toml")


def test_toml_syntax_error_is_reported(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("[sip\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(f)


def test_db_url_becomes_mysqlclient_arguments():
    s = parse_settings({"database": {"url": "mysql://u%40x:p%3Aw@db.example.com:3307/kam",
                                     "ro_url": "mysql://r:r@db.example.com/kam"}})
    assert s.database.connect_args() == {"host": "db.example.com", "user": "u@x", "passwd": "p:w",
                                         "db": "kam", "charset": "utf8mb4", "connect_timeout": 2,
                                         "port": 3307}


def test_toml_dump_round_trips_through_the_parser():
    import tomllib
    from kemi.settings import toml_dump
    tables = {"sip": {"domain": 'pbx"x', "listen": ["udp:127.0.0.1:5060"], "children": 2},
              "media": {"enabled": False, "rtpengine": {"port_min": 20000, "start": True}}}
    assert tomllib.loads(toml_dump(tables)) == tables
