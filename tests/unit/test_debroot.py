"""scripts/debroot.py's decisions (the Debian roots of CI and make test-debian13), and the
compose runner's (tests/harness/compose.py), as plain functions."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("debroot", ROOT / "scripts" / "debroot.py")
debroot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(debroot)

# /etc/apt/sources.list.d/debian.sources as on these machines
SOURCES = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_the_mirror_is_the_first_uris_line_and_security_its_own():
    assert debroot.mirrors(SOURCES) == {"debian": "http://deb.debian.org/debian",
                                        "security": "http://deb.debian.org/debian-security"}
    assert debroot.mirrors(SOURCES.replace("deb.debian.org/debian\n", "mirror.example/debian\n")) == {
        "debian": "http://mirror.example/debian", "security": "http://deb.debian.org/debian-security"}
    with pytest.raises(debroot.RootError, match="no Debian mirror"):
        debroot.mirrors("Types: deb-src\nURIs: http://x/debian\nSuites: bookworm\n")


def test_the_roots_sources_name_the_suite_on_the_same_mirrors():
    text = debroot.sources_for("trixie", debroot.mirrors(SOURCES))
    assert "URIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n" in text
    assert "URIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n" in text
    assert "bookworm" not in text


def test_the_cache_key_changes_with_the_suite_the_mirror_and_the_setup(monkeypatch):
    found = debroot.mirrors(SOURCES)
    key = debroot.root_key("trixie", found)
    assert key == debroot.root_key("trixie", dict(found))
    assert key != debroot.root_key("bookworm", found)
    assert key != debroot.root_key("trixie", dict(found, debian="http://other/debian"))
    monkeypatch.setattr(debroot, "SETUP_VERSION", debroot.SETUP_VERSION + "x")
    assert key != debroot.root_key("trixie", found)


def test_apt_acquire_options_and_local_pip_folders_are_carried_over():
    confs = {"99artifact-registry": 'Acquire::Check-Valid-Until "false";\n', "docker-clean": "DPkg::Post-Invoke {};\n"}
    assert list(debroot.acquire_options(confs)) == ["99artifact-registry"]
    pip = ("[global]\nfind-links = /opt/wheels\n"
           "extra-index-url = file:///opt/pypi/simple file:///opt/pypi-more/simple https://pypi.example/simple\n")
    assert debroot.local_pip_paths(pip) == ["/opt/wheels", "/opt/pypi", "/opt/pypi-more"]


def test_compose_start_order_and_interpolation():
    from harness.compose import interpolate, start_order
    services = {"kamailio": {"depends_on": {"mariadb": {}, "rtpengine": {}}}, "rtpengine": {}, "mariadb": {}}
    order = start_order(services)
    assert order.index("kamailio") > order.index("mariadb") and order.index("kamailio") > order.index("rtpengine")
    with pytest.raises(ValueError, match="cycle"):
        start_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}})
    assert interpolate('["udp:${KEMI_ADDRESS:-127.0.0.1}:5060"]', {}) == '["udp:127.0.0.1:5060"]'
    assert interpolate("${KEMI_ADDRESS:-127.0.0.1}", {"KEMI_ADDRESS": "192.0.2.10"}) == "192.0.2.10"
    with pytest.raises(KeyError):
        interpolate("${NO_DEFAULT}", {})
