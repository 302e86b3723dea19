"""Another Python 3.X first on the caller's PATH (pyenv, conda, self-built): `make run` still
starts a Kamailio whose embedded Python is the system one, and routes.

Extensions 6400-6409 belong to this file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

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
    # a file, not a pipe: make run's Kamailio logs to its terminal, and an unread pipe fills up
    # and stops it
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen(["make", "--no-print-directory", "run", f"SETTINGS={inst.settings_file}"],
                                  cwd=stack.project_file(), env=trapped_env(tmp_path, HOME=str(home)),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: sip_options_ok("127.0.0.1", port) or runner.poll() is not None, 90, "make run's Kamailio")
        assert runner.poll() is None, log.read_text(errors="replace")[-3000:]
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
        stop_make_run(runner, inst.settings.pid_file, log)
    assert not sip_options_ok("127.0.0.1", port), log.read_text(errors="replace")[-3000:]
    assert "kemi: stopping" in log.read_text(errors="replace")


def _alive(pid: int, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_make_run(runner: subprocess.Popen, pid_file: str, log, timeout: float = 30) -> None:
    """SIGTERM to make's process group (make and the runner); wait for every member, then for
    the Kamailio the runner stops by PID (it has a session of its own)."""
    kamailio_pid = int(open(pid_file).read()) if os.path.exists(pid_file) else None
    if _alive(runner.pid, group=True):
        os.killpg(runner.pid, signal.SIGTERM)
    runner.wait(timeout)                              # make itself (reaped: no zombie in the group)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (_alive(runner.pid, group=True) or
                                           (kamailio_pid and _alive(kamailio_pid))):
        time.sleep(0.2)
    if kamailio_pid and _alive(kamailio_pid):
        os.killpg(kamailio_pid, signal.SIGKILL)       # never leave it behind; and say so
        raise AssertionError(f"make run left Kamailio (pid {kamailio_pid}) running:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
