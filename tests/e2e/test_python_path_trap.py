"""Another Python 3.X first on the caller's PATH (pyenv, conda, self-built): `make run` still
starts a Kamailio whose embedded Python is the system one, and routes.

Extensions 6400-6409 belong to this file.
"""
from __future__ import annotations

import os
import signal
import subprocess

from harness import stack
from harness.fakepython import fake_python
from harness.sipp import Sipp, auth_row
from harness.stack import free_port
from kemi import interpreter
from kemi_tools.stack import kamailio
from kemi_tools.stack.process import sip_options_ok, wait_for


def trapped_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(PATH=f"{fake_python(tmp_path / 'selfbuilt-python')}:{os.environ['PATH']}", **extra)
    return env


def test_control_the_fake_python_first_on_path_breaks_a_plain_kamailio_start(db, tmp_path):
    """Without the fix (Kamailio started as-is from that shell) mod_init cannot import Debian's
    packages and Kamailio exits: the trap is real, so the next test can fail."""
    inst = stack.KamailioInstance(tmp_path / "k", stack.kamailio_port())
    cfg = kamailio.prepare(inst.settings, inst.workdir)
    done = subprocess.run(["kamailio", "-DD", "-E", "-f", str(cfg)], cwd=cfg.parent, env=trapped_env(tmp_path),
                          capture_output=True, text=True, timeout=60, start_new_session=True)
    assert done.returncode != 0
    assert "No module named" in done.stdout + done.stderr


def test_make_run_routes_with_another_python_first_on_path(db, tmp_path):
    port = stack.kamailio_port()
    inst = stack.KamailioInstance(tmp_path / "run", port)        # only for its settings file
    db.add_subscriber("6400")
    home = tmp_path / "home"
    home.mkdir()
    runner = subprocess.Popen(["make", "--no-print-directory", "run", f"SETTINGS={inst.settings_file}"],
                              cwd=stack.project_file(), env=trapped_env(tmp_path, HOME=str(home)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: sip_options_ok("127.0.0.1", port) or runner.poll() is not None, 90, "make run's Kamailio")
        assert runner.poll() is None, runner.stdout.read()[-3000:]
        # a digest REGISTER: the Python routing, its DB-backed subscriber check, usrloc in MySQL
        reg = Sipp("register.xml", tmp_path / "sipp", target=f"127.0.0.1:{port}",
                   rows=[auth_row("6400", stack.PASSWORD, stack.DOMAIN)],
                   keys={"contact_port": free_port(), "expires": 600}).run()
        assert reg.rc == 0 and reg.finals == [200], reg.stdout[-2000:]
        assert len(db.locations("6400")) == 1
        kamailio_pid = int(open(inst.settings.pid_file).read())
        environ = open(f"/proc/{kamailio_pid}/environ", "rb").read().split(b"\0")
        assert f"PYTHONHOME={interpreter.system_home()}".encode() in environ
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGTERM)       # make and the runner: it stops Kamailio by PID
            runner.wait(30)
    assert not sip_options_ok("127.0.0.1", port)
