"""Live reload end to end: edit a submodule of the kemi package Kamailio runs, `make reload`,
and every worker answers with the new code while a call set up before stays up.

Kamailio runs a COPY of the package (tmp dir), which the test edits; the repository's files
are never touched. Extensions 6100-6199 belong to this file.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import rawsip, stack
from harness.sipclient import SipClient, status
from harness.sipp import Sipp, auth_row
from harness.stack import free_port

CALLEE, CALLER = "6101", "6102"
NOBODY = "6150"                      # the in-dialog probe's R-URI user (nobody registers it)
WORKERS = 3                          # sip.children: UDP workers that must all reload
HOLD_MS = 20_000                     # the held call: its BYE comes after every reload check
# SIPp gives up after 10 s without a message (the tests' -recv_timeout, kemi_tools/sipp.py): not while holding the call
HOLD_ARGS = ["-recv_timeout", f"{HOLD_MS // 1000 + 30}s"]
PROBES = 12                          # requests per burst, sent at once so several workers answer
MAX_BURSTS = 25                      # bounded: until every worker logged the reload
BURST_WAIT = 5.0                     # seconds for a whole burst's replies (a loaded machine)
ORIGINAL = "self.reply(sip.NOT_FOUND)\n        return DONE\n\n    # route[DLGURI]"
LOG_LINE = re.compile(r"^\s*\d+\((\d+)\) \w+: .*?(kemi: .*)$", re.M)


def reply_line(reason: str) -> str:
    return f'self.reply(sip.Reply(404, "{reason}"))\n        return DONE\n\n    # route[DLGURI]'


@pytest.fixture
def project(tmp_path):
    """A copy of the project Kamailio loads the kemi package from (and `make reload` runs in)."""
    root = tmp_path / "project"
    shutil.copytree(stack.project_file("kemi"), root / "kemi",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(stack.project_file("Makefile"), root / "Makefile")
    return root


@pytest.fixture
def proxy(db, tmp_path, project):
    inst = stack.KamailioInstance(tmp_path / "kamailio", stack.kamailio_port(),
                                  {"sip": {"children": WORKERS}}, kemi_root=project)
    yield inst.start()
    inst.stop()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected one {old!r}"
    path.write_text(text.replace(old, new))


def make_reload(project: Path, proxy) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(project), "reload", f"SETTINGS={proxy.settings_file}"],
                          capture_output=True, text=True, timeout=60)


def probe_burst(proxy) -> list[str]:
    """PROBES in-dialog requests nobody knows (To-tag, no Route: route_withindlg's 404), sent
    at once from separate sockets; their reply status lines ('' = no reply)."""
    socks, lines = [], []
    try:
        for _ in range(PROBES):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for s in socks:
            s.sendto(rawsip.build("INFO", f"sip:{NOBODY}@{proxy.target}", "127.0.0.1", s.getsockname()[1],
                                  headers={"To": f"<sip:{NOBODY}@{stack.DOMAIN}>;tag={uuid.uuid4().hex[:8]}"}),
                     proxy.address)
        deadline = time.monotonic() + BURST_WAIT
        for s in socks:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                lines.append(s.recv(65535).decode(errors="replace").split("\r\n", 1)[0])
            except socket.timeout:
                lines.append("")
    finally:
        for s in socks:
            s.close()
    return lines


def udp_workers(proxy) -> set[str]:
    out = proxy.kamcmd("core.psx")
    pids = set(re.findall(r"PID: (\d+)\s+DSC: udp receiver", out))
    assert len(pids) == WORKERS, out
    return pids


def kemi_lines(proxy, since: int) -> list[tuple[str, str]]:
    """(pid, 'kemi: ...') of every kemi log line written after offset `since`."""
    return LOG_LINE.findall(proxy.log()[since:])


def burst_until_logged(proxy, since: int, needle: str, workers: set[str]) -> list[str]:
    """Probe until every worker logged `needle` (bounded); returns the last burst's lines."""
    for _ in range(MAX_BURSTS):
        lines = probe_burst(proxy)
        logged = {pid for pid, text in kemi_lines(proxy, since) if needle in text}
        if workers <= logged:
            return lines
    raise AssertionError(f"after {MAX_BURSTS} bursts only {sorted(logged)} of {sorted(workers)} "
                         f"logged {needle!r}:\n{proxy.log()[since:][-3000:]}")


def wait_for_file_text(path_glob: tuple[Path, str], text: str, timeout: float = 20) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in p.read_text(errors="replace") for p in folder.glob(pattern)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {folder}/{pattern} after {timeout}s")


def test_edit_reload_keeps_calls_and_survives_a_syntax_error(db, proxy, phones, project):
    request_py = project / "kemi" / "routing" / "router.py"
    registrar_py = project / "kemi" / "routing" / "registrar.py"
    workers = udp_workers(proxy)

    # a call between two registered extensions, held through every reload below
    db.add_subscriber(CALLEE)
    db.add_subscriber(CALLER)
    callee_port, caller_port = free_port(), free_port()
    for user, port in ((CALLEE, callee_port), (CALLER, caller_port)):
        assert phones.register(user, port).finals == [200]
    uas = phones.callee(callee_port, timeout=HOLD_MS / 1000 + 60, extra=HOLD_ARGS)
    uac = Sipp("uac_call.xml", phones.workdir, target=proxy.target, local_port=caller_port,
               rows=[auth_row(CALLER, stack.PASSWORD, stack.DOMAIN, CALLEE)],
               sets={"hold_ms": HOLD_MS}, timeout=HOLD_MS / 1000 + 60, extra=HOLD_ARGS).start()
    phones.running.append(uac)
    wait_for_file_text((phones.workdir, f"uas_callee-{callee_port}*.msg"), "ACK sip:")    # its -trace_msg file
    call_up = time.monotonic()

    # before: the stock reason (the control for every check below), and no reload yet
    assert set(probe_burst(proxy)) == {"SIP/2.0 404 Not Found"}
    assert not [t for _, t in kemi_lines(proxy, 0) if "reloaded" in t], "a reload before any make reload"

    # 1. a reason changed in a submodule (kemi/routing/router.py), make reload
    edit(request_py, ORIGINAL, reply_line("No Such Dialog (reloaded)"))
    mark = len(proxy.log())
    done = make_reload(project, proxy)
    assert done.returncode == 0, done.stdout + done.stderr
    # the very first burst after make reload: every worker answers with the new code (the
    # burst's requests arrive at once, so app_python3's own try-locked check would skip some)
    assert set(probe_burst(proxy)) == {"SIP/2.0 404 No Such Dialog (reloaded)"}
    burst_until_logged(proxy, mark, "kemi: reloaded", workers)

    # 2. a syntax error in another submodule: make reload refuses and says where ...
    good_registrar = registrar_py.read_text()
    bad_line = good_registrar.count("\n") + 2
    registrar_py.write_text(good_registrar + "\ndef broken(:\n")
    done = make_reload(project, proxy)
    assert done.returncode != 0 and f"registrar.py:{bad_line}" in done.stderr, done.stdout + done.stderr
    # ... and sent anyway (kamcmd, as an operator may): each worker logs it ONCE, keeps serving
    mark = len(proxy.log())
    assert_reload_sent(proxy)
    needle = f"reload failed, still running the previous code: {registrar_py}:{bad_line}: SyntaxError"
    burst_until_logged(proxy, mark, needle, workers)
    for _ in range(4):       # more messages: no worker tries (and logs) that reload again
        assert set(probe_burst(proxy)) == {"SIP/2.0 404 No Such Dialog (reloaded)"}
    failures = [pid for pid, text in kemi_lines(proxy, mark) if "reload failed" in text]
    assert sorted(failures) == sorted(workers), proxy.log()[mark:][-3000:]
    assert proxy.alive()

    # 3. fixed (and the reason changed once more): make reload, new code again
    registrar_py.write_text(good_registrar)
    edit(request_py, reply_line("No Such Dialog (reloaded)"), reply_line("No Such Dialog (fixed)"))
    mark = len(proxy.log())
    done = make_reload(project, proxy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(probe_burst(proxy)) == {"SIP/2.0 404 No Such Dialog (fixed)"}
    burst_until_logged(proxy, mark, "kemi: reloaded", workers)

    # the call set up before the reloads ends with BYE/200 through the proxy: its signed
    # Record-Route still passes (the route secret outlived three imports of security.py)
    elapsed = time.monotonic() - call_up
    print(f"three reloads checked {elapsed:.1f} s after the call was set up")
    assert elapsed < HOLD_MS / 1000 - 5, "the reload checks outlasted the held call: raise HOLD_MS"
    call, callee = uac.wait(), uas.wait()
    assert call.rc == 0 and call.finals == [200] and call.values("bye") == ["200"], call.stdout[-3000:]
    assert callee.rc == 0, callee.stdout[-3000:]
    bye = callee.received_requests("BYE")
    assert bye and f"127.0.0.1:{proxy.port}" in next(l for l in bye[0].splitlines() if l.startswith("Via:"))
    assert proxy.alive()
    # the repository's own file was never edited
    assert "No Such Dialog" not in stack.project_file("kemi", "routing", "router.py").read_text()


def python_db_connections(db) -> int:
    """Connections to this slot's database as the routing's DB user (C modules' included)."""
    rows = db.query(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    f"WHERE DB = '{stack.TEST_DB}' AND USER = 'kemi_test';")
    return int(rows[0][0])


def unknown_user_invites(proxy, caller: str, count: int) -> list[int]:
    """Authenticated INVITEs to a user nobody has, at once: each worker asks MySQL (404)."""
    results: list[int] = []

    def one():
        with SipClient(proxy.address) as client:
            reply = client.request("INVITE", f"sip:6190@{stack.DOMAIN}", from_uri=f"sip:{caller}@{stack.DOMAIN}",
                                   user=caller, password=stack.PASSWORD)
            results.append(status(reply) if reply else 0)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_reloads_do_not_leak_db_connections(db, proxy, project):
    caller = "6110"
    db.add_subscriber(caller)
    workers = udp_workers(proxy)
    before_python = python_db_connections(db)          # C modules only: Python connects lazily
    assert set(unknown_user_invites(proxy, caller, PROBES)) == {404}
    opened = python_db_connections(db) - before_python
    print(f"C modules: {before_python} connections, Python after the first requests: +{opened}")
    assert 1 <= opened <= WORKERS                        # the control: Python did connect

    for round_ in range(4):
        mark = len(proxy.log())
        done = make_reload(project, proxy)
        assert done.returncode == 0, done.stdout + done.stderr
        burst_until_logged(proxy, mark, "kemi: reloaded", workers)
        # the new routers' caches are empty: every answer below is a fresh MySQL query
        answers = unknown_user_invites(proxy, caller, PROBES)
        assert set(answers) == {404}, (round_, answers, proxy.log()[mark:][-3000:])
    print(f"after 4 reloads: +{python_db_connections(db) - before_python}")
    # at most one connection per worker: each reload closed the old router's connection
    assert python_db_connections(db) - before_python <= WORKERS, db.query(
        "SELECT ID, USER, DB, COMMAND, TIME FROM information_schema.PROCESSLIST;")


def test_a_broken_entry_script_is_logged_once_and_never_stops_a_worker(proxy, project):
    """kamailio_entry.py is the one file app_python3 itself runs again; unguarded, an error
    there made 5.6.3 retry on every message and stop routing after the third."""
    entry = project / "kemi" / "kamailio_entry.py"
    good = entry.read_text()
    workers = udp_workers(proxy)
    entry.write_text(good.replace("def mod_init():", "def mod_init(:", 1))
    bad_line = good[:good.index("def mod_init():")].count("\n") + 1
    edit(project / "kemi" / "routing" / "router.py", ORIGINAL, reply_line("Entry Broken, Package Reloaded"))

    done = make_reload(project, proxy)
    assert done.returncode != 0 and f"kamailio_entry.py:{bad_line}" in done.stderr, done.stdout + done.stderr
    mark = len(proxy.log())
    assert_reload_sent(proxy)
    burst_until_logged(proxy, mark, f"kamailio_entry.py not reloaded, the running one stays: {entry}:{bad_line}",
                       workers)
    for _ in range(4):       # well past the third message per worker: every request answered
        assert set(probe_burst(proxy)) == {"SIP/2.0 404 Entry Broken, Package Reloaded"}
    broken = [pid for pid, text in kemi_lines(proxy, mark) if "not reloaded" in text]
    assert sorted(broken) == sorted(workers), proxy.log()[mark:][-3000:]

    entry.write_text(good)
    mark = len(proxy.log())
    done = make_reload(project, proxy)
    assert done.returncode == 0, done.stdout + done.stderr
    burst_until_logged(proxy, mark, "kemi: reloaded", workers)
    assert not [text for _pid, text in kemi_lines(proxy, mark) if "not reloaded" in text or "failed" in text]
    assert proxy.alive()


def assert_reload_sent(proxy) -> None:
    """The engine's own reload RPC, as an operator may send it: app_python3's
    app_python.reload (5.x), app_python3s's app_python3s.reload (python.engine auto on 6.0)."""
    methods = proxy.kamcmd("system.listMethods").split()
    rpc = "app_python3s.reload" if "app_python3s.reload" in methods else "app_python.reload"
    reply = proxy.kamcmd(rpc)
    assert rpc in methods and not reply.startswith("error"), f"{rpc}: {reply}"
