"""Direction detection: which side a request belongs to (socket name, then source CIDR)."""
import ipaddress

import pytest

from kemi.sbc.direction import Side, Sides, parse_ip


def side(name, networks, sockets, gwset):
    return Side(name, tuple(ipaddress.ip_network(n) for n in networks), tuple(sockets), gwset, 4)


# public: the documentation net, an IPv6 net, and a /16 with a more specific private /26 inside
PUBLIC = side("public", ["203.0.113.0/24", "2001:db8:1::/48", "100.64.0.0/16", "0.0.0.0/0"],
              ["public", "public-2"], 1)
# private: its own net, a more specific /26 inside the public /16, a /64 inside the public /48
PRIVATE = side("private", ["198.51.100.0/24", "100.64.7.0/26", "2001:db8:1:5::/64", "fd00::/8"],
               ["private"], 2)
SIDES = Sides(PUBLIC, PRIVATE)

CASES = [
    # socket name,  source,                 expected side, why
    ("public",   "203.0.113.10",          "public",  "socket and source agree"),
    ("public-2", "203.0.113.10",          "public",  "second socket of the side"),
    ("private",  "198.51.100.20",         "private", "socket and source agree"),
    ("",         "203.0.113.77",          "public",  "unnamed socket: by source"),
    ("",         "198.51.100.77",         "private", "unnamed socket: by source"),
    ("",         "100.64.7.5",            "private", "overlap: /26 (private) beats /16 (public)"),
    ("",         "100.64.7.70",           "public",  "overlap: outside the /26, the /16 wins"),
    ("",         "100.64.200.1",          "public",  "only the /16 matches"),
    ("",         "192.0.2.99",            "public",  "only the public default route matches"),
    ("private",  "100.64.7.5",            "private", "overlap resolved to the socket's side"),
    ("public",   "100.64.7.5",            None,      "private-side source on the public NIC: spoofed"),
    ("private",  "203.0.113.10",          None,      "public source on the private NIC"),
    ("private",  "192.0.2.99",            None,      "0.0.0.0/0 is public: refused on private NIC"),
    ("",         "2001:db8:1::99",        "public",  "IPv6 in the public /48"),
    ("",         "2001:db8:1:5::99",      "private", "IPv6 overlap: /64 beats /48"),
    ("private",  "[2001:db8:1:5::99]",    "private", "bracketed IPv6 as $si may print it"),
    ("public",   "2001:db8:1:5::99",      None,      "IPv6 private /64 on the public NIC"),
    ("",         "fd12::1",               "private", "IPv6 ULA"),
    ("",         "2001:db8:2::1",         None,      "IPv6 on no side (no ::/0 configured)"),
    ("",         "::ffff:203.0.113.10",   "public",  "IPv4-mapped IPv6 is the IPv4 address"),
    ("public",   "not-an-ip",             None,      "garbage source"),
    ("unknown",  "203.0.113.10",          "public",  "a socket name of no side: by source"),
]


@pytest.mark.parametrize("socket_name,source,expected,why", CASES, ids=[c[3] for c in CASES])
def test_detect(socket_name, source, expected, why):
    detection = SIDES.detect(socket_name, source)
    assert (detection.side.name if detection.side else None) == expected, detection.reason
    assert detection.reason                                # always something to log


def test_unknown_source_without_catch_all():
    sides = Sides(side("public", ["203.0.113.0/24"], ["public"], 1),
                  side("private", ["198.51.100.0/24"], ["private"], 2))
    detection = sides.detect("public", "192.0.2.66")
    assert detection.side is None
    assert "192.0.2.66" in detection.reason and "no side" in detection.reason


def test_most_specific_wins_whatever_the_order_of_networks():
    a = side("public", ["10.0.0.0/8", "10.1.2.0/24"], ["public"], 1)
    b = side("private", ["10.1.0.0/16"], ["private"], 2)
    sides = Sides(a, b)
    assert sides.by_address("10.1.2.3")[0] is a          # /24 (public) inside /16 (private)
    assert sides.by_address("10.1.9.9")[0] is b          # /16 (private) inside /8 (public)
    assert sides.by_address("10.9.9.9")[0] is a


def test_other_and_lookups():
    assert SIDES.other(PUBLIC) is PRIVATE and SIDES.other(PRIVATE) is PUBLIC
    assert SIDES.by_socket("public-2") is PUBLIC
    assert SIDES.by_socket("") is None
    assert SIDES.by_name("private") is PRIVATE


@pytest.mark.parametrize("text,expected", [
    ("203.0.113.5", "203.0.113.5"), ("[2001:db8::5]", "2001:db8::5"), ("2001:db8::5", "2001:db8::5"),
    (" 198.51.100.1 ", "198.51.100.1"), ("", None), ("example.com", None)])
def test_parse_ip(text, expected):
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == expected
