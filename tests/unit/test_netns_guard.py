"""The namespace helper refuses addresses outside the documentation ranges (no root needed)."""
import pytest

from harness.netns import NetnsError, Topology, check_documentation_address


@pytest.mark.parametrize("cidr", ["192.0.2.66/32", "198.51.100.1/24", "203.0.113.0/24", "203.0.113.255/32",
                                  "2001:db8::1/64", "2001:db8:ffff::1/128"])
def test_documentation_ranges_are_allowed(cidr):
    check_documentation_address(cidr)


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "8.8.8.8/32", "127.0.0.2/8", "198.51.101.1/24",
                                  "203.0.112.255/32", "2001:db9::1/64",
                                  "fd00::1/64", "::1/128"])
def test_other_addresses_are_refused(cidr):
    with pytest.raises(NetnsError):
        check_documentation_address(cidr)


def test_names_are_unique_to_this_run():
    a, b = Topology(), Topology(prefix="kemi-other")
    assert a.prefix != b.prefix and str(__import__("os").getpid()) in a.prefix
    assert a.teardown() == []                     # nothing created, nothing removed
