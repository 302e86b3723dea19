"""The [media] settings: defaults, validation messages (key + fix), rendering, rtpengine argv."""
import pytest

from kemi.settings import SettingsError, parse_settings, render_kamailio_defines
from kemi_tools.stack import rtpengine


def media(**table):
    return parse_settings({"media": table}).media


def test_defaults_are_the_seed_loopback_demo():
    m = media()
    assert m.enabled and m.profile == "default"
    assert m.get_profile().flags == ("replace-origin", "replace-session-connection")
    assert [i.ng for i in m.instances] == ["udp:127.0.0.1:2223"]        # the daemon make run starts
    assert m.rtpengine.start and m.rtpengine.listen_ng == "127.0.0.1:2223"
    assert [i.option for i in m.rtpengine.interfaces] == ["default/127.0.0.1"]


def test_rendered_defines_point_kamailio_at_the_instances():
    s = parse_settings({"media": {"instances": [{"ng": "udp:127.0.0.1:2223", "weight": 2},
                                                {"ng": "udp:192.0.2.7:2223"}],
                                  "timeout_ms": 300, "retries": 1, "disable_seconds": 10}})
    cfg = render_kamailio_defines(s)
    assert "#!define WITH_RTPENGINE\n" in cfg
    assert '#!define RTPENGINE_SOCK "udp:127.0.0.1:2223=2 udp:192.0.2.7:2223=1"' in cfg
    assert "#!define RTPENGINE_TOUT_MS 300\n" in cfg and "#!define RTPENGINE_RETR 1\n" in cfg
    assert "#!define RTPENGINE_DISABLE_TOUT 10\n" in cfg and "#!define RTPENGINE_REDETECT 1\n" in cfg
    assert '#!define RTPENGINE_INSTANCE_PV "$avp(rtpengine_instance)"' in cfg
    assert "#!define FLT_SDP_OFFER 8\n" in cfg


def test_anchoring_off_renders_no_rtpengine():
    cfg = render_kamailio_defines(parse_settings({"media": {"enabled": False}}))
    assert "RTPENGINE" not in cfg


def test_named_interfaces_for_the_sbc():
    m = media(rtpengine={"interfaces": [{"name": "public", "address": "127.0.0.2", "advertised": "203.0.113.5"},
                                        {"name": "private", "address": "127.0.0.3"}]})
    assert [i.option for i in m.rtpengine.interfaces] == ["public/127.0.0.2!203.0.113.5", "private/127.0.0.3"]


def test_profiles_keep_the_default_and_add_named_ones():
    m = media(profile="hd", profiles={"hd": {"codec_mask": ["all"], "codec_transcode": ["opus"],
                                             "rtcp_mux": ["demux"]}})
    assert [p.name for p in m.profiles] == ["default", "hd"]
    hd = m.get_profile()
    assert hd.codec_mask == ("all",) and hd.rtcp_mux == ("demux",)
    assert hd.flags == ("replace-origin", "replace-session-connection")


def test_rtpengine_command_line():
    m = media(rtpengine={"listen_ng": "127.0.0.1:11050", "port_min": 22000, "port_max": 23499, "delete_delay": 0,
                         "interfaces": [{"name": "public", "address": "127.0.0.2"},
                                        {"name": "private", "address": "127.0.0.3"}]})
    argv = rtpengine.argv(m.rtpengine)
    assert argv[:4] == ["rtpengine", "--config-file=none", "--foreground", "--log-stderr"]
    for option in ("--table=-1", "--listen-ng=127.0.0.1:11050", "--interface=public/127.0.0.2",
                   "--interface=private/127.0.0.3", "--port-min=22000", "--port-max=23499", "--delete-delay=0"):
        assert option in argv


@pytest.mark.parametrize("table, key, fix", [
    ({"bogus": 1}, "media.bogus", "accepted keys here"),
    ({"rtpengine": {"bogus": 1}}, "media.rtpengine.bogus", "accepted keys here"),
    ({"profiles": {"x": {"bogus": 1}}}, "media.profiles.x.bogus", "accepted keys here"),
    ({"enabled": "yes"}, "media.enabled", "write true or false"),
    ({"profile": "nope"}, "media.profile", "define [media.profiles.nope]"),
    ({"profiles": {"x": {"flags": ["trust-address"]}}}, "media.profiles.x.flags", "kemi adds trust-address"),
    ({"profiles": {"x": {"flags": ["direction=pub"]}}}, "media.profiles.x.flags", "direction="),
    ({"profiles": {"x": {"flags": ["replace-origin trust-address"]}}}, "media.profiles.x.flags", "one flag per list item"),
    ({"profiles": {"x": {"rtcp_mux": ["maybe"]}}}, "media.profiles.x.rtcp_mux", "accept, offer, demux, reject"),
    ({"profiles": {"x": {"codec_strip": ["PC MU"]}}}, "media.profiles.x.codec_strip", "encoding names"),
    ({"profiles": {"9x": {}}}, "media.profiles.9x", "starting with a letter"),
    ({"instances": []}, "media.instances", "list at least one"),
    ({"instances": "udp:127.0.0.1:2223"}, "media.instances", "[[media.instances]]"),
    ({"instances": [{"ng": "tcp:127.0.0.1:2223"}]}, "media.instances[0].ng", '"udp:HOST:PORT"'),
    ({"instances": [{"weight": 2}]}, "media.instances[0].ng", "add ng"),
    ({"instances": [{"ng": "udp:127.0.0.1:2223", "weight": 0}]}, "media.instances[0].weight", "1 to 1000"),
    ({"instances": [{"ng": "udp:127.0.0.1:2223"}, {"ng": "udp:127.0.0.1:2223"}]}, "media.instances", "each rtpengine once"),
    ({"instances": [{"ng": "udp:192.0.2.7:2223"}]}, "media.instances", "media.rtpengine.start = false"),
    ({"timeout_ms": 5000, "retries": 2}, "media.timeout_ms", "lower timeout_ms or retries"),
    ({"retries": 0}, "media.retries", "1 to 10"),
    ({"rtpengine": {"listen_ng": "0.0.0.0:2223"}}, "media.rtpengine.listen_ng", "loopback"),
    ({"rtpengine": {"listen_ng": "localhost"}}, "media.rtpengine.listen_ng", "loopback"),
    ({"rtpengine": {"port_min": 40000, "port_max": 30000}}, "media.rtpengine", "port_min < port_max"),
    ({"rtpengine": {"listen_ng": "127.0.0.1:30000"}, "instances": [{"ng": "udp:127.0.0.1:30000"}]},
     "media.rtpengine.listen_ng", "apart"),
    ({"rtpengine": {"interfaces": []}}, "media.rtpengine.interfaces", "list at least one"),
    ({"rtpengine": {"interfaces": [{"name": "default", "address": "any"}]}},
     "media.rtpengine.interfaces[0].address", "skips loopback"),
    ({"rtpengine": {"interfaces": [{"name": "pub", "address": "127.0.0.2", "advertised": "nat.example"}]}},
     "media.rtpengine.interfaces[0].advertised", "literal IPv4/IPv6"),
    ({"rtpengine": {"interfaces": [{"address": "127.0.0.2"}]}}, "media.rtpengine.interfaces[0].name", "add name"),
    ({"rtpengine": {"interfaces": [{"name": "a", "address": "127.0.0.2"}, {"name": "a", "address": "127.0.0.3"}]}},
     "media.rtpengine.interfaces[1].name", "its own name"),
    ({"rtpengine": {"delete_delay": -1}}, "media.rtpengine.delete_delay", "0 to 3600"),
    ({"rtpengine": {"endpoint_learning": "heuristic"}}, "media.rtpengine.endpoint_learning", '"nat"'),
    ({"rtpengine": {"endpoint_learning": True}}, "media.rtpengine.endpoint_learning", "string"),
    ({"profiles": {"x": {"flags": ["endpoint-learning-delayed"]}}}, "media.profiles.x.flags",
     "media.rtpengine.endpoint_learning"),
    ({"profiles": {"x": {"flags": ["endpoint-learning=off"]}}}, "media.profiles.x.flags", "endpoint-learning-"),
])
def test_bad_media_settings_name_the_key_and_the_fix(table, key, fix):
    with pytest.raises(SettingsError) as err:
        parse_settings({"media": table})
    assert err.value.key == key
    assert fix in str(err.value)


def test_remote_rtpengine_only_needs_start_false():
    m = media(instances=[{"ng": "udp:192.0.2.7:2223"}], rtpengine={"start": False})
    assert m.rtpengine_sock == "udp:192.0.2.7:2223=1"


def test_ipv6_loopback_control_socket():
    m = media(rtpengine={"listen_ng": "[::1]:2223"})
    assert [i.ng for i in m.instances] == ["udp6:[::1]:2223"]


def test_disabled_media_skips_the_local_daemon_check():
    assert media(enabled=False, instances=[{"ng": "udp:192.0.2.7:2223"}]).enabled is False
