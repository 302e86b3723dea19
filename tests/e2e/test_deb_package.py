"""The Debian package (`make deb`), installed, started, upgraded, removed and purged the way a
Kamailio admin does it, on a fresh Debian machine booted with systemd as PID 1.

The machine (tests/harness/sysroot.py) is a throwaway copy of the server root of
scripts/debroot.py for this machine's Debian release (12 here, 13 under make test-debian13):
Debian's own packages, systemd, MariaDB, and the .debs of kemi's dependencies downloaded but not
installed, so `apt-get install ./kemi_VERSION_all.deb` resolves and installs Kamailio, its
modules, python3-mysqldb, python3-cachetools and the Recommends (rtpengine-daemon, ...) itself.
systemd starts Debian's kamailio.service with the package's drop-in, exactly as on a server
(Type=forking, User=kamailio, /etc/default/kamailio, PIDFile); MariaDB and Debian's rtpengine run
as the machine's own services. The machine's network is loopback plus one veth address
(192.0.2.1, rtpengine's `interface = any` needs a non-loopback one); SIPp enters it with
`ip netns exec`.

Each step has its control: without the drop-in Kamailio runs Debian's own kamailio.cfg (an
unauthenticated REGISTER gets 200 instead of kemi's 401), CFGFILE alone does not start, without
the drop-in's PYTHONHOME a python3 in /usr/local/bin stops it; bad settings stop the start and
say the key and the fix; the upgrade with --force-confnew instead of the site's answer loses the
site's edit; after remove (not purge) the settings are still there.

Extensions 6600-6619 belong to this file.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import netns, stack
from harness.sipp import Sipp, auth_row
from harness.sysroot import Machine

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import deb  # noqa: E402
import debroot  # noqa: E402
import release  # noqa: E402

from kemi.version import VERSION  # noqa: E402

PROJECT = stack.project_file()
DOMAIN, PASSWORD = "127.0.0.1", "123456"
SIP_PORT, SITE_PORT = 5060, 5070              # the package's default listen; the site's edit
RTP_MIN, RTP_MAX = 30000, 40000               # Debian's rtpengine.conf port range
SERVER_ADDRESS = "192.0.2.1/24"               # the machine's "NIC" (documentation range)
SETTINGS = "/etc/kemi/settings.toml"
DROP_IN = "/usr/lib/systemd/system/kamailio.service.d/kemi.conf"
UPGRADE_NOTE = "# (this line is new in the upgrade test's package: dpkg sees the conffile changed)"
TESTS = Path(__file__).resolve().parents[1]


def suite() -> str:
    return re.search(r"^VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text(), re.M).group(1)


def next_version(version: str) -> str:
    """A version above `version` that is both PEP 440 and a Debian native version."""
    return f"{version}.1" if "+" in version else f"{version}+upgradetest1"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(this checkout's package, a rebuilt higher version whose default settings changed)."""
    out = tmp_path_factory.mktemp("debs")
    src = tmp_path_factory.mktemp("upgrade-src")
    for rel in deb.source_files(PROJECT):            # git's files; all but caches without git
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (PROJECT / rel).is_file():
            shutil.copy2(PROJECT / rel, dest)
    release.release(src, next_version(VERSION), ["A rebuild for tests/e2e/test_deb_package.py's upgrade."])
    (src / "settings.toml").write_text((src / "settings.toml").read_text() + UPGRADE_NOTE + "\n")
    # both at once: each build is mostly one process (2 cores)
    with ThreadPoolExecutor(2) as pool:
        old, new = pool.map(lambda tree: deb.build(tree, out), (PROJECT, src))
    return old, new


@pytest.fixture(scope="module")
def server_root():
    given = os.environ.get("KEMI_SERVER_ROOT")
    if given:
        return Path(given)
    if os.environ.get("KEMI_DEBROOT"):
        pytest.fail("$KEMI_SERVER_ROOT is not set: in a Debian root the tests have no network to build the "
                    "server root; scripts/debroot.py test|run prepares it and binds it in")
    return debroot.checkout_server_root(suite(), PROJECT)


def status_of(ns: str, port: int, method: str = "REGISTER", user: str = "6619") -> int | None:
    """The final reply's code to one request without credentials, sent inside the machine."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from harness.rawsip import exchange, status
        ruri = "sip:{DOMAIN}" if "{method}" == "REGISTER" else "sip:{user}@{DOMAIN}"
        replies = exchange(("127.0.0.1", {port}), "{method}", ruri, from_uri="sip:{user}@{DOMAIN}",
                           headers={{"Contact": "<sip:{user}@127.0.0.1:5999>", "Expires": "60"}}, wait=3)
        finals = [status(r) for r in replies if r.startswith("SIP/2.0 ")]
        print(finals[-1] if finals else "none")
    """)
    done = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    answer = done.stdout.strip()
    return None if answer == "none" else int(answer)


class Server:
    """The booted machine, with the admin's commands."""

    def __init__(self, machine: Machine, workdir: Path):
        self.m, self.workdir = machine, workdir
        self.files: list[str] = []          # what the package installed (dpkg -L)
        self.debian_cfg = ""                # md5sum of Debian's own kamailio.cfg

    def sh(self, script: str, **kw):
        return self.m.sh(script, **kw)

    def restart(self) -> tuple[bool, str]:
        """systemctl restart kamailio; (started?, what the journal says since)."""
        cursor = self.sh("journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'").out.strip()
        # a failed start is retried by Debian's Restart=on-failure until systemd's start limit;
        # an admin restarting within its 10 s after fixing the cause must reset it first
        self.sh("systemctl reset-failed kamailio", check=False)
        done = self.sh("systemctl restart kamailio", check=False, timeout=120)
        return done.rc == 0, self.journal(cursor)

    def journal(self, cursor: str = "") -> str:
        after = f"--after-cursor='{cursor}'" if cursor else ""
        return self.sh(f"journalctl -u kamailio --no-pager -o short {after}", check=False).out

    def main_pid(self) -> int:
        return int(self.sh("systemctl show -p MainPID --value kamailio").out.strip())

    def register(self, user: str, port: int = SIP_PORT, password: str = PASSWORD, contact_port: int = 15600):
        return Sipp("register.xml", self.workdir, target=f"127.0.0.1:{port}", netns=self.m.netns,
                    rows=[auth_row(user, password, DOMAIN)], keys={"contact_port": contact_port, "expires": 600}).run()

    def call(self, caller: str, callee: str, port: int = SIP_PORT, contact_port: int = 15600):
        """caller calls callee (registered at contact_port, answered there by SIPp): (call, callee's run)."""
        uas = Sipp("uas_callee.xml", self.workdir, local_port=contact_port, netns=self.m.netns).start()
        try:
            uac = Sipp("uac_call.xml", self.workdir, target=f"127.0.0.1:{port}", netns=self.m.netns,
                       sets={"hold_ms": 300}, rows=[auth_row(caller, PASSWORD, DOMAIN, callee)]).run()
            took = uas.wait()
        finally:
            uas.stop()
        return uac, took

    def install(self, package: Path, *options: str):
        self.m.put(f"/root/{package.name}", package.read_bytes())
        return self.sh(f"apt-get install -y {' '.join(options)} ./root/{package.name} 2>&1", check=False, timeout=900)


def anchored(took) -> tuple[str, int]:
    """(c= address, m=audio port) of the INVITE the callee received."""
    invite = took.received_requests("INVITE")[0]
    return (re.search(r"^c=IN IP4 (\S+)", invite, re.M).group(1),
            int(re.search(r"^m=audio (\d+) ", invite, re.M).group(1)))


def test_make_deb_builds_a_lintian_clean_package_of_the_project_version(packages):
    old, new = packages
    assert old.name == f"kemi_{VERSION}_all.deb"
    def field(name: str, pkg: Path = old) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(pkg), name], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert field("Version") == VERSION and field("Version", new) == next_version(VERSION)
    depends = field("Depends")
    for needed in ("kamailio (>= 5.6)", "kamailio-python3-modules", "kamailio-mysql-modules", "python3-mysqldb",
                   "python3-cachetools"):
        assert needed in depends, depends
    assert "rtpengine-daemon" in field("Recommends") and "mariadb-server" in field("Recommends")
    files = subprocess.run(["dpkg-deb", "-c", str(old)], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/lib/python3/dist-packages/kemi/kamailio_entry.py", "./usr/share/kemi/kamailio.cfg",
                 "./usr/share/kemi/kamailio-common.cfg", f".{SETTINGS}", f".{DROP_IN}",
                 "./usr/lib/python3/dist-packages/kemi/testing/ksr_api_5_8.json"):
        assert path in files, path
    conffiles = subprocess.run(["dpkg-deb", "-I", str(old), "conffiles"], capture_output=True, text=True).stdout
    assert conffiles.split() == [SETTINGS]
    checked = deb.lintian(old)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not [t for t in deb.tags(checked.stdout) if t[:2] in ("E:", "W:")], checked.stdout
    # control: lintian does fail this package when the overrides' explanations are ignored
    unexplained = subprocess.run(["lintian", "--fail-on", "error,warning", "--no-override", str(old)],
                                 capture_output=True, text=True, timeout=600)
    assert unexplained.returncode != 0 and "command-with-path-in-maintainer-script" in unexplained.stdout


def test_install_start_call_upgrade_remove_purge(packages, server_root, tmp_path):
    old, new = packages
    # the machine's NIC: Debian's rtpengine.conf says `interface = any`, which skips loopback
    machine = Machine(server_root, f"kemi{netns.SLOT}-{os.getpid()}-deb", nic=SERVER_ADDRESS)
    problems: list[str] = []
    try:
        started = time.monotonic()
        machine.start()
        server = Server(machine, tmp_path / "sipp")
        print(f"deb test: machine booted in {time.monotonic() - started:.1f} s")
        for step, args in ((installed_and_started, (old,)), (drop_in_controls, ()),
                           (bad_settings_stop_the_start, (old,)), (upgrade_keeps_the_sites_settings, (new,)),
                           (remove_then_purge, ())):
            started = time.monotonic()
            step(server, *args)
            print(f"deb test: {step.__name__} took {time.monotonic() - started:.1f} s")
    finally:
        problems += machine.stop()
    assert problems == []


def installed_and_started(server: Server, package: Path) -> None:
    assert server.sh("dpkg-query -W kamailio", check=False).rc != 0          # a machine without Kamailio
    done = server.install(package)
    assert done.rc == 0, done
    # apt pulled Kamailio, its modules, the Python packages and the Recommends (rtpengine and
    # MariaDB were there already)
    for pkg in ("kamailio", "kamailio-python3-modules", "kamailio-mysql-modules", "python3-mysqldb",
                "python3-cachetools", "kamailio-tls-modules", "kamailio-websocket-modules", "kemi"):
        assert "install ok installed" in server.sh(f"dpkg-query -W -f='${{Status}}' {pkg}").out, pkg
    # Debian's python3 (the interpreter app_python3 embeds) imports the package
    where = server.sh("cd / && python3 -c 'import kemi.app, MySQLdb, cachetools; print(kemi.app.__file__)'").out
    assert where.strip() == "/usr/lib/python3/dist-packages/kemi/app.py"
    assert server.sh("python3 -m kemi --version").out.strip() == f"kemi {VERSION}"
    assert server.sh("kemi check").out.strip() == f"{SETTINGS}: valid"
    assert server.sh(f"stat -c '%U:%G %a' {SETTINGS}").out.strip() == "root:kamailio 640"
    assert "kemi.conf" in server.sh("systemctl cat kamailio").out
    # the unit with the drop-in, as systemd reads it (the machine has no man pages to check)
    verify = server.sh("systemd-analyze verify --man=no kamailio.service 2>&1", check=False)
    assert verify.rc == 0 and verify.out.strip() == "", verify
    server.files = server.sh("dpkg -L kemi").out.split()
    server.debian_cfg = server.sh("md5sum /etc/kamailio/kamailio.cfg").out

    # the database, as the admin makes it, and two subscribers
    provisioned = server.sh("python3 -m kemi_tools.stack.provision")
    assert "ready" in provisioned.out, provisioned
    server.sh(f"kamctl add 6600 {PASSWORD} && kamctl add 6601 {PASSWORD}")

    started, journal = server.restart()
    assert started, journal
    assert f"kemi {VERSION}: /run/kemi/kamailio-settings.cfg rendered from {SETTINGS}" in journal
    pid = server.main_pid()
    assert server.sh(f"ps -o user= -p {pid}").out.strip() == "kamailio"
    cmdline = server.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").out
    assert "-f /usr/share/kemi/kamailio.cfg -m 64 -M 8 -x tlsf" in cmdline, cmdline
    # started from the rendered file's folder (Kamailio chdirs to / once the cfg is read)
    assert server.sh("systemctl show -p WorkingDirectory --value kamailio").out.strip() == "/run/kemi"
    assert "PYTHONHOME=/usr" in server.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ").out
    # Kamailio's own lines reach the journal through syslog
    assert "Listening on" in journal or "listening on" in journal.lower(), journal
    syslog = server.sh("journalctl -u kamailio _TRANSPORT=syslog --no-pager -o cat", check=False).out
    assert syslog.strip(), "no Kamailio syslog line in the journal"

    # register (the digest is checked: a wrong password gets 401 again) and call through it
    wrong = server.register("6600", password="not-the-password")
    assert wrong.finals == [401], wrong.stdout[-3000:]
    reg = server.register("6600")
    assert reg.rc == 0 and reg.finals == [200], reg.stdout[-3000:]
    call, took = server.call("6601", "6600")
    assert call.rc == 0 and call.finals == [200], call.stdout[-3000:]
    assert took.rc == 0, took.stdout[-3000:]
    # anchored by Debian's rtpengine service on the machine's address (the default settings)
    address, port = anchored(took)
    assert address == SERVER_ADDRESS.split("/")[0] and RTP_MIN <= port <= RTP_MAX, (address, port)
    assert status_of(server.m.netns, SIP_PORT) == 401
    assert "Traceback" not in server.journal()


def drop_in_controls(server: Server) -> None:
    # CONTROL 1: without the drop-in Debian's own kamailio.cfg runs (it accepts any REGISTER)
    server.sh(f"mv {DROP_IN} /root/kemi.conf && systemctl daemon-reload")
    started, journal = server.restart()
    assert started, journal
    assert "rendered from" not in journal, journal                  # no kemi start check ran
    assert "-f /etc/kamailio/kamailio.cfg " in server.sh(f"tr '\\0' ' ' < /proc/{server.main_pid()}/cmdline").out
    assert status_of(server.m.netns, SIP_PORT) == 200
    # CONTROL 2: kemi's CFGFILE alone is not enough (nothing renders kamailio-settings.cfg, the
    # working directory is /): the start fails
    server.sh("mkdir -p /etc/default/kamailio.d && echo CFGFILE=/usr/share/kemi/kamailio.cfg "
              "> /etc/default/kamailio.d/only-cfgfile")
    started, journal = server.restart()
    assert not started
    assert "kamailio-settings.cfg" in journal, journal
    server.sh(f"rm /etc/default/kamailio.d/only-cfgfile && mv /root/kemi.conf {DROP_IN} && systemctl daemon-reload")
    started, journal = server.restart()
    assert started and status_of(server.m.netns, SIP_PORT) == 401, journal

    # CONTROL 3: a self-built Python 3.X in /usr/local (`make install`'s layout: bin/python3 and a
    # stdlib in lib/python3.X; systemd's PATH has /usr/local/bin first) would become the embedded
    # Python's prefix, without Debian's dist-packages; the drop-in's PYTHONHOME keeps Debian's
    version = server.sh("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").out.strip()
    server.sh(f"printf '#!/bin/sh\\nexec /usr/bin/python3 \"$@\"\\n' > /usr/local/bin/python3 && "
              f"chmod 755 /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python{version} && "
              f"mkdir -p /root/local-lib /usr/local/lib/python{version} && "
              f"cp -a /usr/local/lib/python{version} /root/local-lib/ && "
              f"cp -a /usr/lib/python{version}/. /usr/local/lib/python{version}/")
    started, journal = server.restart()
    assert started and status_of(server.m.netns, SIP_PORT) == 401, journal
    admin = "/etc/systemd/system/kamailio.service.d"
    server.sh(f"mkdir -p {admin} && printf '[Service]\\nUnsetEnvironment=PYTHONHOME\\n' > {admin}/zz-control.conf "
              f"&& systemctl daemon-reload")
    started, journal = server.restart()
    assert not started
    assert "would embed the Python at /usr/local" in journal, journal
    server.sh(f"rm -r /etc/systemd/system/kamailio.service.d /usr/local/bin/python3 /usr/local/bin/python{version} "
              f"/usr/local/lib/python{version} && mv /root/local-lib/python{version} /usr/local/lib/ && "
              f"systemctl daemon-reload")
    started, journal = server.restart()
    assert started and status_of(server.m.netns, SIP_PORT) == 401, journal


def bad_settings_stop_the_start(server: Server, package: Path) -> None:
    good = server.sh(f"cat {SETTINGS}").out
    bad = good.replace("usrloc_db_mode = 1", "usrloc_db_mode = 7")
    assert bad != good
    server.m.path(SETTINGS).write_text(bad)
    # the package's scripts do not restart a running Kamailio into settings that would stop it
    pid = server.main_pid()
    reinstalled = server.install(package, "--reinstall")
    assert reinstalled.rc == 0, reinstalled
    assert "keeps running the routing it started with" in reinstalled.out, reinstalled
    assert server.main_pid() == pid and status_of(server.m.netns, SIP_PORT) == 401
    # systemctl restart fails, and the journal says the key and the fix
    started, journal = server.restart()
    assert not started
    assert (f"setting 'database.usrloc_db_mode' in {SETTINGS}: 7 is not supported; use 1 (write-through), "
            f"2 (write-back), 3 (DB only)") in journal, journal
    assert "Kamailio is not started" in journal
    assert status_of(server.m.netns, SIP_PORT) is None
    # control: the same file with the value fixed starts
    server.m.path(SETTINGS).write_text(good)
    started, journal = server.restart()
    assert started and status_of(server.m.netns, SIP_PORT) == 401, journal


def upgrade_keeps_the_sites_settings(server: Server, package: Path) -> None:
    new_version = next_version(VERSION)
    # the site's edit: another port; rendered at the next start, the cfg and the Python see it
    edited = server.sh(f"cat {SETTINGS}").out.replace(f'"udp:127.0.0.1:{SIP_PORT}"', f'"udp:127.0.0.1:{SITE_PORT}"')
    assert f":{SITE_PORT}" in edited
    server.m.path(SETTINGS).write_text(edited)
    started, journal = server.restart()
    assert started, journal
    assert f"listen=udp:127.0.0.1:{SITE_PORT}" in server.sh("cat /run/kemi/kamailio-settings.cfg").out
    assert status_of(server.m.netns, SITE_PORT) == 401 and status_of(server.m.netns, SIP_PORT) is None
    pid = server.main_pid()

    # the upgrade; the package's own settings changed too, the admin keeps theirs (as the
    # conffile prompt's default answer does; unattended: --force-confold)
    done = server.install(package, "-o", "Dpkg::Options::=--force-confold")
    assert done.rc == 0, done
    assert server.sh("python3 -m kemi --version").out.strip() == f"kemi {new_version}"
    assert server.sh(f"cat {SETTINGS}").out == edited
    assert UPGRADE_NOTE in server.sh(f"cat {SETTINGS}.dpkg-dist").out       # the package's version, beside it
    assert server.main_pid() != pid, "the upgrade did not restart Kamailio"
    assert f"kemi {new_version}: /run/kemi/kamailio-settings.cfg rendered" in server.journal()
    reg = server.register("6600", port=SITE_PORT, contact_port=15602)
    assert reg.rc == 0 and reg.finals == [200], reg.stdout[-3000:]
    call, took = server.call("6601", "6600", port=SITE_PORT, contact_port=15602)
    assert call.rc == 0 and call.finals == [200], call.stdout[-3000:]

    # CONTROL: had the upgrade taken the package's file, the site's edit would be gone
    done = server.sh(f"dpkg -i --force-confask --force-confnew /root/{package.name} 2>&1", check=False, timeout=600)
    assert done.rc == 0, done
    assert UPGRADE_NOTE in server.sh(f"cat {SETTINGS}").out
    assert status_of(server.m.netns, SITE_PORT) is None and status_of(server.m.netns, SIP_PORT) == 401


def remove_then_purge(server: Server) -> None:
    assert status_of(server.m.netns, SIP_PORT) == 401                       # control: kemi's routing
    done = server.sh("apt-get remove -y kemi 2>&1", check=False, timeout=600)
    assert done.rc == 0, done
    # Kamailio runs its own configuration again, untouched
    assert server.sh("systemctl is-active kamailio", check=False).out.strip() == "active"
    assert status_of(server.m.netns, SIP_PORT) == 200
    assert server.sh("md5sum /etc/kamailio/kamailio.cfg").out == server.debian_cfg
    assert "kemi" not in server.sh("systemctl cat kamailio").out
    assert server.sh("cd / && python3 -c 'import kemi'", check=False).rc != 0
    assert not server.m.path("/run/kemi").exists()
    # remove keeps the site's settings (a conffile) ...
    assert server.m.path(SETTINGS).is_file()
    done = server.sh("apt-get purge -y kemi 2>&1", check=False, timeout=600)
    assert done.rc == 0, done
    # ... purge removes them, and nothing of kemi's is left
    assert not server.m.path("/etc/kemi").exists()
    ours = ("/etc/kemi", "/usr/share/kemi", "/usr/lib/python3/dist-packages/kemi", "/usr/share/doc/kemi",
            "/usr/lib/systemd/system/kamailio.service.d")
    left = [f for f in server.files if f.startswith(ours) and server.m.path(f).exists()]
    assert left == [], left
    known = server.sh("dpkg-query -W -f='${Status}' kemi", check=False)
    assert "no packages found matching kemi" in known.out or "not-installed" in known.out, known
    started, journal = server.restart()
    assert started and status_of(server.m.netns, SIP_PORT) == 200, journal
