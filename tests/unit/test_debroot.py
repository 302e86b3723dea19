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


# the classic one-line /etc/apt/sources.list of a machine upgraded from an older release
SOURCES_LIST = """# deb cdrom:[Debian GNU/Linux 11.0.0 _Bullseye_]/ bullseye main
deb cdrom:[Debian GNU/Linux 12.0.0 _Bookworm_]/ bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.example.org/debian/ bookworm main contrib
deb-src http://src.example.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main   # security
deb http://ftp.example.org/debian/ bookworm-updates main
"""


def test_the_one_line_format_gives_the_same_mirrors():
    assert debroot.one_line_mirrors(SOURCES_LIST) == {"debian": "http://ftp.example.org/debian/",
                                                      "security": "http://security.debian.org/debian-security"}
    assert debroot.one_line_mirrors("deb http://old.example/debian-security buster/updates main\n") == {
        "security": "http://old.example/debian-security"}
    assert debroot.one_line_mirrors("# deb http://x/debian bookworm main\ndeb-src http://x/debian bookworm main\n") == {}


def test_deb822_files_come_first_then_the_one_line_files():
    both = {"/etc/apt/sources.list": SOURCES_LIST, "/etc/apt/sources.list.d/debian.sources": SOURCES}
    found, origin = debroot.choose_mirrors(both)
    assert found["debian"] == "http://deb.debian.org/debian" and origin == "/etc/apt/sources.list.d/debian.sources"
    # a machine with only the classic file (the new user: "no Debian mirror (URIs: line)")
    found, origin = debroot.choose_mirrors({"/etc/apt/sources.list": SOURCES_LIST})
    assert found == {"debian": "http://ftp.example.org/debian/", "security": "http://security.debian.org/debian-security"}
    assert origin == "/etc/apt/sources.list"
    # a .sources file with only a third-party repository's security-free stanza: the mirror comes from sources.list
    found, origin = debroot.choose_mirrors({"/etc/apt/sources.list.d/x.sources": "Types: deb-src\nURIs: http://x/\n",
                                            "/etc/apt/sources.list": SOURCES_LIST})
    assert origin == "/etc/apt/sources.list"
    with pytest.raises(debroot.RootError, match="no Debian mirror in apt's sources"):
        debroot.choose_mirrors({"/etc/apt/sources.list": "deb-src http://x/debian bookworm main\n"})


def test_the_machines_files_are_read_in_both_formats(tmp_path, monkeypatch):
    """What machine_mirrors() reads: the folder's .sources and .list files and sources.list."""
    (tmp_path / "sources.list.d").mkdir()
    monkeypatch.setattr(debroot, "SOURCES_DIR", tmp_path / "sources.list.d")
    monkeypatch.setattr(debroot, "SOURCES_LIST", tmp_path / "sources.list")
    with pytest.raises(debroot.RootError, match="no Debian mirror"):
        debroot.machine_mirrors()
    (tmp_path / "sources.list").write_text(SOURCES_LIST)
    assert debroot.machine_mirrors()["debian"] == "http://ftp.example.org/debian/"
    assert debroot.mirror_note().endswith(f"(from {tmp_path / 'sources.list'})")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(SOURCES)
    assert debroot.machine_mirrors()["debian"] == "http://deb.debian.org/debian"
    assert "apt mirror http://deb.debian.org/debian, security http://deb.debian.org/debian-security" in debroot.mirror_note()


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
    # a package's own file (appstream's) stays out: in the root, that package's install would
    # stop at a conffile prompt
    confs["50appstream"] = 'Acquire::IndexTargets { deb::DEP-11 { MetaKey "x"; }; };\n'
    assert list(debroot.acquire_options(confs)) == ["99artifact-registry", "50appstream"]
    assert list(debroot.acquire_options(confs, frozenset({"50appstream"}))) == ["99artifact-registry"]
    assert debroot.packaged_files(debroot.Path("/etc/apt/apt.conf.d"), ["70debconf", "no-such-file"]) == \
        frozenset({"70debconf"})
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


def test_the_server_root_prefetches_what_the_package_depends_on_and_recommends():
    control = (ROOT / "debian" / "control").read_text()
    names = debroot.package_names(control)
    assert names[:5] == ["kamailio", "kamailio-python3-modules", "kamailio-mysql-modules", "python3-mysqldb",
                         "python3-cachetools"]
    assert "rtpengine-daemon" in names and "mariadb-server" in names         # first of "mariadb-server | ..."
    assert not [n for n in names if n.startswith("$") or "(" in n or n in ("debhelper-compat", "dh-python")]
    assert "mariadb-client" not in names                                     # Suggests: not installed by apt
    text = "Source: x\nBuild-Depends: debhelper\n\nPackage: x\nDepends: a (>= 1), b:any | c,\n ${misc:Depends}, d [amd64]\n"
    assert debroot.package_names(text) == ["a", "b", "d"]
