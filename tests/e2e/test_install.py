"""`make install` into an existing Kamailio folder (a fake root via PREFIX), Kamailio started from
the installed folder, `make uninstall` putting the site's files back; and the refusals.

Extensions 6000-6099 belong to this file.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from harness import stack
from harness.fakepython import fake_python
from harness.sipp import Sipp, auth_row
from harness.stack import free_port
from kemi.settings import load_settings, toml_dump
from kemi_tools.stack.process import Daemon, sip_options_ok, wait_for

# bytes a site's own kamailio.cfg might hold (no trailing newline, a non-ASCII byte): restored exactly
DUMMY_CFG = b"#!KAMAILIO\n# the site's own configuration \xc3\xa9\nloadmodule \"sl.so\"\r\nrequest_route { sl_send_reply(\"404\", \"x\"); }"
UNRELATED = b"# tls.cfg the package shipped: kemi does not touch it\n"
MODULE_DIR = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def make(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=stack.project_file(),
                          capture_output=True, text=True, timeout=timeout)


def site_root(tmp_path: Path) -> tuple[Path, Path]:
    """A fake root whose etc/kamailio holds a site's own kamailio.cfg and one other file."""
    prefix = tmp_path / "root"
    kamdir = prefix / "etc" / "kamailio"
    kamdir.mkdir(parents=True)
    (kamdir / "kamailio.cfg").write_bytes(DUMMY_CFG)
    (kamdir / "tls.cfg").write_bytes(UNRELATED)
    return prefix, kamdir


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def site_settings(tmp_path: Path, port: int, media: dict | None = None) -> Path:
    """The settings the site installs; the database URLs come from DB_URL/DB_RO_URL instead."""
    f = tmp_path / "site.toml"
    f.write_text(toml_dump({
        "sip": {"domain": stack.DOMAIN, "listen": [f"udp:127.0.0.1:{port}"], "children": 2},
        "database": {"url": "mysql://nobody:wrong@localhost/not_this_one",
                     "ro_url": "mysql://nobody_ro:wrong@localhost/not_this_one"},
        "runtime": {"dir": str(tmp_path / "run"), "log_level": 2},
        "media": media or {"enabled": False},
    }))
    return f


def register(workdir: Path, port: int, user: str, password: str = stack.PASSWORD):
    return Sipp("register.xml", workdir, target=f"127.0.0.1:{port}",
                rows=[auth_row(user, password, stack.DOMAIN)],
                keys={"contact_port": free_port(), "expires": 3600}).run()


def test_install_starts_from_the_installed_folder_and_uninstall_restores(db, tmp_path):
    prefix, kamdir = site_root(tmp_path)
    port = stack.kamailio_port()
    done = make("install", f"PREFIX={prefix}", f"SETTINGS={site_settings(tmp_path, port)}",
                f"DB_URL={stack.TEST_DB_URL}", f"DB_RO_URL={stack.TEST_DB_RO_URL}")
    assert done.returncode == 0, done.stdout + done.stderr

    # the site's file was moved aside byte for byte; ours took its place; the rest untouched
    assert (kamdir / "kemi-backup" / "kamailio.cfg").read_bytes() == DUMMY_CFG
    assert (kamdir / "kamailio.cfg").read_bytes() == stack.project_file("kamailio.cfg").read_bytes()
    assert (kamdir / "tls.cfg").read_bytes() == UNRELATED
    for name in ("kamailio-common.cfg", "settings.toml", "kemi/kamailio_entry.py", "kemi/testing/ksr_api_5_6.json",
                 "kemi-install.json"):
        assert (kamdir / name).is_file(), name
    # DB_URL went into the installed settings; the defines name the installed package
    installed = load_settings(kamdir / "settings.toml")
    assert installed.database.url == stack.TEST_DB_URL
    rendered = (kamdir / "kamailio-settings.cfg").read_text()
    assert f'#!define KEMI_ROOT "{kamdir}"' in rendered
    assert f'#!define KEMI_ENTRY "{kamdir}/kemi/kamailio_entry.py"' in rendered
    assert str(stack.project_file()) not in rendered

    # Kamailio as a site starts it: the start command make install printed, from a shell whose
    # PATH has another Python 3.X first (pyenv, conda): nothing of the source tree is used
    db.add_subscriber("6001")
    start = re.search(r"start it from that folder:\s+(.+)", done.stdout).group(1)
    assert start.startswith(f"cd {kamdir} && ")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME")}
    env["PATH"] = f"{fake_python(tmp_path / 'pyenv-like')}:{env['PATH']}"
    Path(installed.runtime.dir).mkdir(parents=True, exist_ok=True)
    kam = Daemon("kamailio", ["bash", "-c", f"{start} -P {installed.pid_file}"], tmp_path / "kamailio.log", env=env)
    try:
        wait_for(lambda: sip_options_ok("127.0.0.1", port), 60, "the installed Kamailio", kam, interval=0.2)
        wrong = register(tmp_path / "sipp", port, "6001", password="not-the-password")
        assert wrong.finals == [401], wrong.stdout[-2000:]        # control: the digest is really checked
        reg = register(tmp_path / "sipp", port, "6001")
        assert reg.rc == 0 and reg.finals == [200], reg.stdout[-2000:]
        assert len(db.locations("6001")) == 1
        # the routing Python ran from the installed package (its byte code is written there)
        assert (kamdir / "kemi" / "__pycache__").is_dir()
    finally:
        kam.stop()
    assert not sip_options_ok("127.0.0.1", port)

    done = make("uninstall", f"PREFIX={prefix}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(prefix) == {"etc": b"<dir>", "etc/kamailio": b"<dir>",
                                "etc/kamailio/kamailio.cfg": DUMMY_CFG, "etc/kamailio/tls.cfg": UNRELATED}
    again = make("uninstall", f"PREFIX={prefix}")
    assert again.returncode != 0 and "nothing was installed" in again.stderr


def test_reinstall_keeps_the_first_backup_and_the_edited_settings(tmp_path):
    prefix, kamdir = site_root(tmp_path)
    settings = site_settings(tmp_path, stack.kamailio_port())
    assert make("install", f"PREFIX={prefix}", f"SETTINGS={settings}").returncode == 0
    edited = (kamdir / "settings.toml").read_text().replace("children = 2", "children = 3")
    (kamdir / "settings.toml").write_text(edited)
    second = make("install", f"PREFIX={prefix}")          # an upgrade: no SETTINGS given
    assert second.returncode == 0, second.stdout + second.stderr
    assert (kamdir / "settings.toml").read_text() == edited
    assert (kamdir / "kemi-backup" / "kamailio.cfg").read_bytes() == DUMMY_CFG
    assert make("uninstall", f"PREFIX={prefix}").returncode == 0
    assert (kamdir / "kamailio.cfg").read_bytes() == DUMMY_CFG
    assert sorted(p.name for p in kamdir.iterdir()) == ["kamailio.cfg", "tls.cfg"]


def refused(tmp_path: Path, *variables: str) -> subprocess.CompletedProcess:
    """make install with `variables` into a fresh site root; asserts nothing there changed."""
    prefix, _ = site_root(tmp_path)
    before = snapshot(prefix)
    done = make("install", f"PREFIX={prefix}", *variables)
    assert snapshot(prefix) == before, "a refused install wrote something"
    return done


def test_too_old_kamailio_is_refused(tmp_path):
    old = tmp_path / "kamailio-5.4"
    old.write_text("#!/bin/sh\necho 'version: kamailio 5.4.8 (x86_64/linux) '\n")
    old.chmod(0o755)
    done = refused(tmp_path, f"KAMAILIO={old}")
    assert done.returncode != 0
    assert "Kamailio 5.4.8 is too old" in done.stderr and "5.6 or newer" in done.stderr


def test_missing_module_is_refused_and_the_same_folder_with_it_is_accepted(tmp_path):
    modules = tmp_path / "modules"
    modules.mkdir()
    for so in MODULE_DIR.glob("*.so"):
        if so.name != "app_python3.so":
            (modules / so.name).symlink_to(so)
    done = refused(tmp_path / "a", f"KAMAILIO_MODULES={modules}")
    assert done.returncode != 0
    assert "module(s) missing" in done.stderr and "app_python3.so" in done.stderr
    # control: only that module made the difference
    (modules / "app_python3.so").symlink_to(MODULE_DIR / "app_python3.so")
    prefix = tmp_path / "b" / "root"
    done = make("install", f"PREFIX={prefix}", f"KAMAILIO_MODULES={modules}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert make("uninstall", f"PREFIX={prefix}").returncode == 0


def test_a_configuration_kamailio_rejects_is_rolled_back(tmp_path):
    picky = tmp_path / "kamailio-picky"                 # the real one, except that -c fails
    picky.write_text('#!/bin/sh\nif [ "$1" = -c ]; then echo "cfg parse error" >&2; exit 255; fi\n'
                     'exec kamailio "$@"\n')
    picky.chmod(0o755)
    done = refused(tmp_path, f"KAMAILIO={picky}")
    assert done.returncode != 0
    assert "`kamailio -c` rejected" in done.stderr and "cfg parse error" in done.stderr


def test_settings_with_problems_are_refused_with_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nchildren = 0\n[database]\nusrloc_db_mode = 7\n')
    done = refused(tmp_path, f"SETTINGS={bad}")
    assert done.returncode != 0
    assert "setting 'sip.children'" in done.stderr and "setting 'database.usrloc_db_mode'" in done.stderr


def test_pip_install_gives_an_importable_package_with_the_api_list(tmp_path):
    """`pip install .` (here --target, offline with Debian's setuptools) for Debian's python3."""
    src = tmp_path / "src"                      # a copy: the build leaves build/ behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes(stack.project_file(name).read_bytes())
    subprocess.run(["cp", "-r", str(stack.project_file("kemi")), str(src)], check=True)
    target = tmp_path / "site"
    done = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = ("import importlib.resources as r, kemi, kemi.testing, kemi.routing, kemi.app\n"
             "print(kemi.app.__file__)\n"
             "print(r.files('kemi.testing').joinpath('ksr_api_5_6.json').read_text()[:1])\n"
             "from kemi.testing import make_router\n")
    ran = subprocess.run(["/usr/bin/python3", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    where, json_start = ran.stdout.split()
    assert where == f"{target}/kemi/app.py"                 # not the source tree
    assert json_start in "{["
    # the console script
    check = subprocess.run([str(target / "bin" / "kemi"), "check", str(stack.project_file("settings.toml"))],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip().endswith(": valid"), check.stdout + check.stderr


def test_the_docker_entrypoint_runs_rtpengine_and_kamailio_from_an_install(db, tmp_path):
    """docker/entrypoint.py as the containers run it, on an installed folder (no container engine
    here): rtpengine and Kamailio start from the settings, their healthchecks tell up from down."""
    from harness.media import TestRtpengine
    from kemi_tools.stack import relay_guard

    prefix, kamdir = site_root(tmp_path)
    port = stack.kamailio_port()
    rtpe = TestRtpengine(tmp_path / "rtpe")               # only for this slot's ports and address
    settings = site_settings(tmp_path, port, media={"enabled": True, "rtpengine": rtpe.table})
    done = make("install", f"PREFIX={prefix}", f"SETTINGS={settings}",
                f"DB_URL={stack.TEST_DB_URL}", f"DB_RO_URL={stack.TEST_DB_RO_URL}")
    assert done.returncode == 0, done.stdout + done.stderr
    entry = ["/usr/bin/python3", str(stack.project_file("docker", "entrypoint.py"))]   # as in the image
    # the output is a file, not a terminal (as under a container engine); another Python first on PATH
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KEMI_SETTINGS", "PYTHONUNBUFFERED")}
    env.update(KAMAILIO_DIR=str(kamdir), KEMI_PROVISION_DB="1",
               PATH=f"{fake_python(tmp_path / 'conda-like')}:{env['PATH']}")
    health = lambda what: subprocess.run([*entry, f"health-{what}"], env=env, timeout=30).returncode
    assert health("rtpengine") == 1 and health("kamailio") == 1         # control: nothing runs yet
    started = []
    try:
        started.append(Daemon("rtpengine", [*entry, "rtpengine"], tmp_path / "rtpengine.log", env=env))
        wait_for(lambda: health("rtpengine") == 0, 30, "entrypoint.py rtpengine", started[-1], interval=0.5)
        # as in the image, it loaded the relay's packet limit into its network (here: the host's)
        listed = subprocess.run(["nft", "list", "table", "inet", relay_guard.TABLE], capture_output=True, text=True)
        assert listed.returncode == 0 and f"udp dport {rtpe.table['port_min']}-" in listed.stdout, listed.stderr
        started.append(Daemon("kamailio", [*entry, "kamailio"], tmp_path / "kamailio.log", env=env))
        wait_for(lambda: health("kamailio") == 0, 60, "entrypoint.py kamailio", started[-1], interval=0.5)
        assert "database ready" in (tmp_path / "kamailio.log").read_text()
    finally:
        for daemon in reversed(started):
            daemon.stop()
        relay_guard.remove()        # the image leaves it for its next start; a test leaves nothing
    assert health("kamailio") == 1
    assert make("uninstall", f"PREFIX={prefix}").returncode == 0
