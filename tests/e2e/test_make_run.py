"""`make run`'s runner (python3 -m kemi_tools.stack): starts what is missing, SIGTERM stops it all."""
import os
import signal
import subprocess
import sys
import time

from harness import stack
from kemi_tools.stack import kamailio
from kemi_tools.stack.process import sip_options_ok, wait_for


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True).stdout
    return {int(p) for p, g in (line.split() for line in out.splitlines()) if int(g) == pid}


def test_runner_serves_sip_and_sigterm_stops_everything(db, tmp_path):
    port = stack.kamailio_port()
    inst = stack.KamailioInstance(tmp_path / "run", port)      # only for its settings file
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    runner = subprocess.Popen([sys.executable, "-m", "kemi_tools.stack", str(inst.settings_file)],
                              cwd=stack.project_file(), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: sip_options_ok("127.0.0.1", port), 30, "the runner's Kamailio")
        kamailio_pid = int(open(inst.settings.pid_file).read())
        kamailio_group = _children(kamailio_pid)
        assert len(kamailio_group) >= 4                      # main + workers + timers
        assert f'SIP_DOMAIN="{stack.DOMAIN}"' in (home / ".kamctlrc").read_text()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(20) == 0
        time.sleep(0.5)
        assert _children(kamailio_pid) == set(), "Kamailio processes left behind"
        assert not sip_options_ok("127.0.0.1", port)
        assert "kemi: stopping" in runner.stdout.read()
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            # the runner's Kamailio has its own process group: never leave it behind
            if os.path.exists(inst.settings.pid_file):
                os.killpg(int(open(inst.settings.pid_file).read()), signal.SIGKILL)


def test_bad_settings_stop_the_start_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nusrloc_db_mode = 7\n')
    done = subprocess.run([sys.executable, "-m", "kemi_tools.stack", str(bad)], cwd=stack.project_file(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "setting 'database.usrloc_db_mode'" in done.stderr and "write-through" in done.stderr


def test_kamailio_itself_refuses_to_start_with_bad_settings(db, tmp_path):
    """Even started by hand, Kamailio's mod_init validates the settings and names the key."""
    inst = stack.KamailioInstance(tmp_path / "k", stack.kamailio_port())
    cfg = kamailio.prepare(inst.settings, inst.workdir)
    inst.settings_file.write_text(inst.settings_file.read_text().replace("children = 2", "children = 2\nbogus = 1"))
    proc = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(cfg)], stdout=subprocess.PIPE, cwd=cfg.parent,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "kemi: cannot start: setting 'sip.bogus'" in out


def test_a_second_sigterm_while_stopping_still_stops_everything(db, tmp_path):
    """make forwards the SIGTERM (or Ctrl-C's SIGINT) it gets to the runner, which gets the
    group's own too: the second one must not cut the stopping short and leave Kamailio."""
    port = stack.kamailio_port()
    inst = stack.KamailioInstance(tmp_path / "run", port)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "runner.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen([sys.executable, "-m", "kemi_tools.stack", str(inst.settings_file)],
                                  cwd=stack.project_file(), env=dict(os.environ, HOME=str(home)), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    kamailio_pid = None
    try:
        wait_for(lambda: sip_options_ok("127.0.0.1", port), 30, "the runner's Kamailio")
        kamailio_pid = int(open(inst.settings.pid_file).read())
        runner.send_signal(signal.SIGTERM)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(20) == 0, log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
        assert _children(kamailio_pid) == set(), "Kamailio processes left behind"
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(10)
        if kamailio_pid and _children(kamailio_pid):
            os.killpg(kamailio_pid, signal.SIGKILL)


def test_with_media_the_runner_loads_the_relay_packet_limit_and_removes_it(db, tmp_path):
    """`make run` with rtpengine (docs/security.md, "Media attacks"): the nftables table that
    limits each source per relay port is there while it runs, and gone after SIGTERM. Run in a
    network namespace of its own, so the table never touches this machine's ruleset."""
    from harness import media, netns
    from harness.sbc import probe

    topo = netns.Topology()
    ns = topo.namespace("mkrun")
    port = stack.kamailio_port()
    ng_port = stack.PORT_BASE + 78
    inst = stack.KamailioInstance(tmp_path / "run", port, {"media": {"enabled": True, "rtpengine": {
        "listen_ng": f"127.0.0.1:{ng_port}", "port_min": media.RTPENGINE_PORT_MIN,
        "port_max": media.RTPENGINE_PORT_MAX, "interfaces": [{"name": "default", "address": "127.0.0.1"}]}}})
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "runner.log"
    table = lambda: ns.run(["nft", "list", "table", "inet", "kemi_relay"], check=False)
    with open(log, "wb") as out:
        runner = ns.popen([sys.executable, "-m", "kemi_tools.stack", str(inst.settings_file)],
                          cwd=stack.project_file(), env=dict(os.environ, HOME=str(home)), stdout=out,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: probe(ns, "127.0.0.1", "127.0.0.1", port) or runner.poll() is not None, 40,
                 "the runner's Kamailio in its namespace")
        assert runner.poll() is None, log.read_text()[-3000:]
        listed = table()
        assert listed.returncode == 0, listed.stderr
        assert (f"ip daddr 127.0.0.1 udp dport {media.RTPENGINE_PORT_MIN}-{media.RTPENGINE_PORT_MAX} "
                f"update @flows4 {{ ip saddr . udp dport limit rate over 1000/second burst 100 packets }}") in listed.stdout
        assert "kemi: loaded nftables table inet kemi_relay" in log.read_text()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0, log.read_text()[-3000:]
        assert table().returncode != 0, "the runner left its nftables table behind"
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            if os.path.exists(inst.settings.pid_file):
                os.killpg(int(open(inst.settings.pid_file).read()), signal.SIGKILL)
        problems = topo.teardown()
    assert problems == []
