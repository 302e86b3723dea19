"""[sbc] settings: defaults (off), validation naming key + fix, rendering for kamailio.cfg."""
import pytest

from kemi.settings import (SettingsError, dispatcher_list_path, parse_settings, render_dispatcher_list,
                           render_kamailio_defines, write_kamailio_defines)

SBC = {
    "enabled": True,
    "public": {"listen": ["udp:203.0.113.1:5060"], "networks": ["203.0.113.0/24", "2001:db8:1::/48"],
               "gateways": ["sip:203.0.113.10:5060", "sip:203.0.113.11:5060"]},
    "private": {"listen": ["udp:198.51.100.1:5060", "tcp:198.51.100.1:5060"], "networks": ["198.51.100.0/24"],
                "gateways": ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060;transport=tcp"],
                "algorithm": 6},
}


# media anchoring is on by default: an SBC then needs an rtpengine interface per side
SBC_MEDIA = {"rtpengine": {"interfaces": [{"name": "public", "address": "203.0.113.1"},
                                          {"name": "private", "address": "198.51.100.1"}]}}


def sbc(**changes):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SBC.items()}
    for key, value in changes.items():
        table, _, name = key.rpartition("__")
        (out[table] if table else out)[name] = value
    return {"sbc": out, "media": SBC_MEDIA}


def test_off_by_default_and_render_unchanged():
    s = parse_settings({})
    assert s.sbc.enabled is False
    text = render_kamailio_defines(s)
    assert "WITH_SBC" not in text and "dispatcher" not in text
    assert "listen=udp:127.0.0.1:5060\n" in text and " name " not in text
    assert "#!define TM_FR_TIMER 30000" in text


def test_enabled_settings_parse():
    s = parse_settings(sbc())
    pub, priv = s.sbc.public, s.sbc.private
    assert (pub.name, pub.gateway_set, pub.algorithm) == ("public", 1, 4)
    assert (priv.name, priv.gateway_set, priv.algorithm) == ("private", 2, 6)
    assert priv.socket_names() == ("private", "private-2")
    assert [name for _, name in s.listens] == ["", "public", "private", "private-2"]


def test_render_named_sockets_and_dispatcher(tmp_path):
    s = parse_settings(sbc(failover_timeout=1500, probing_interval=3, probing_threshold=2))
    text = render_kamailio_defines(s, tmp_path)
    assert 'listen=udp:203.0.113.1:5060 name "public"' in text
    assert 'listen=udp:198.51.100.1:5060 name "private"' in text
    assert 'listen=tcp:198.51.100.1:5060 name "private-2"' in text
    assert "#!define WITH_SBC" in text and "#!define WITH_TCP" in text
    assert "#!define TM_FR_TIMER 1500" in text
    assert "#!define DS_PING_INTERVAL 3" in text and "#!define DS_PROBING_THRESHOLD 2" in text
    assert f'#!define DS_LIST_FILE "{tmp_path.resolve()}/dispatcher.list"' in text
    write_kamailio_defines(s, tmp_path)
    lines = [l for l in (tmp_path / "dispatcher.list").read_text().splitlines() if not l.startswith("#")]
    assert lines == ["1 sip:203.0.113.10:5060 0 0 sockname=public",
                     "1 sip:203.0.113.11:5060 0 0 sockname=public",
                     "2 sip:198.51.100.10:5060 0 0 sockname=private",
                     "2 sip:198.51.100.11:5060;transport=tcp 0 0 sockname=private-2"]


def test_domain_alias_covers_every_port():
    s = parse_settings({**sbc(public__listen=["udp:203.0.113.1:5080"]), "sip": {"domain": "sbc.example.test"}})
    text = render_kamailio_defines(s)
    assert "alias=sbc.example.test:5060" in text and "alias=sbc.example.test:5080" in text


def test_gateways_from_database_and_file(tmp_path):
    db = parse_settings(sbc(gateways_from="database", public__gateways=[], private__gateways=[]))
    text = render_kamailio_defines(db)
    assert "#!define DS_FROM_DB" in text and "DS_LIST_FILE" not in text
    own = tmp_path / "my.list"
    own.write_text("1 sip:203.0.113.10:5060 0 0 sockname=public\n")
    f = parse_settings(sbc(gateways_from="file", list_file=str(own), public__gateways=[], private__gateways=[]))
    assert dispatcher_list_path(f, tmp_path / "elsewhere") == own
    assert f'#!define DS_LIST_FILE "{own}"' in render_kamailio_defines(f)
    write_kamailio_defines(f, tmp_path)
    assert not (tmp_path / "dispatcher.list").exists()      # the site's own file is used as is


def test_list_rendering_is_deterministic():
    s = parse_settings(sbc())
    assert render_dispatcher_list(s) == render_dispatcher_list(s)


BAD = [
    (sbc(public__networks=["203.0.113.1/24"]), "sbc.public.networks", "host bits"),
    (sbc(public__networks=["nonsense"]), "sbc.public.networks", "not a network"),
    (sbc(private__networks=[]), "sbc.private.networks", "no network"),
    (sbc(public__listen=[]), "sbc.public.listen", "non-empty"),
    (sbc(private__listen=["udp:203.0.113.1:5060"]), "sbc.private.listen", "also in"),
    (sbc(public__gateways=[]), "sbc.public.gateways", "no gateway"),
    (sbc(public__gateways=["203.0.113.10"]), "sbc.public.gateways", "not a gateway URI"),
    (sbc(public__gateways=["sip:203.0.113.10;transport=tcp"]), "sbc.public.gateways", "no socket"),
    (sbc(public__gateways=["sip:[2001:db8:1::10]:5060"]), "sbc.public.gateways", "address family"),
    (sbc(private__name="public"), "sbc.private.name", "also the name"),
    (sbc(private__name="bad name"), "sbc.private.name", "usable name"),
    (sbc(private__gateway_set=1), "sbc.private.gateway_set", "also"),
    (sbc(public__algorithm=10), "sbc.public.algorithm", "not supported"),
    (sbc(gateways_from="ldap"), "sbc.gateways_from", "not supported"),
    (sbc(gateways_from="file", public__gateways=[], private__gateways=[]), "sbc.list_file", "absolute"),
    (sbc(gateways_from="file", list_file="/nonexistent/ds.list", public__gateways=[], private__gateways=[]),
     "sbc.list_file", "does not exist"),
    (sbc(gateways_from="database"), "sbc.public.gateways", "listed but"),
    (sbc(list_file="/etc/hosts"), "sbc.list_file", "is set but"),
    (sbc(failover_timeout=10), "sbc.failover_timeout", "out of range"),
    (sbc(probing_threshold=0), "sbc.probing_threshold", "out of range"),
    (sbc(did_cache_ttl=-1), "sbc.did_cache_ttl", "out of range"),
    (sbc(enabled="yes"), "sbc.enabled", "true or false"),
    (sbc(surprise=1), "sbc.surprise", "unknown key"),
    ({"sbc": {"enabled": True, "public": {"colour": "red"}}}, "sbc.public.colour", "unknown key"),
    ({"sbc": {"public": "udp:203.0.113.1:5060"}}, "sbc.public", "expected a table"),
]


@pytest.mark.parametrize("raw,key,problem", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_values_name_the_key_and_a_fix(raw, key, problem):
    with pytest.raises(SettingsError) as err:
        parse_settings(raw)
    assert err.value.key == key
    assert problem in str(err.value)
    assert ";" in str(err.value)               # "<problem>; <fix>"


def test_disabled_sbc_is_not_validated_beyond_ranges():
    # a half-written [sbc] that is off does not stop the registrar from starting
    s = parse_settings({"sbc": {"public": {"listen": ["udp:203.0.113.1:5060"]}}})
    assert s.sbc.enabled is False
    assert [name for _, name in s.listens] == [""]
