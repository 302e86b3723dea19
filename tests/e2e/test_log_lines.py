"""Kamailio's log lines stay whole when its processes log at the same time (kemi/stderr.py).

Kamailio logs with fprintf(stderr) and makes stderr unbuffered; glibc 2.37 and newer (Debian
13) write an unbuffered stream in 128-byte pieces, so with several workers logging at once
their lines interleave mid-line in the one log file (a full CI run on Debian 13 lost a reload
line that way). Each process sets its stderr line-buffered in child_init: one write() per line.

How this is seen without strace: Kamailio's stderr is one end of a datagram socket pair, so
each write() arrives as one datagram, and a datagram that does not end a line is a torn line.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import rawsip, stack
from kemi_tools.stack import kamailio
from kemi_tools.stack.process import sip_options_ok

REQUESTS = 60                      # each one logs a line of ~230 bytes (the 416 refusal)
SENDERS = 6
START_TIMEOUT = 30.0
LOG_LINE_START = re.compile(rb"^\s*\d+\(\d+\) [A-Z]+: ")
LONG_LINE = b"unsupported URI scheme, answered 416"


def glibc_version() -> tuple[int, ...]:
    _, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0").partition(" ")
    return tuple(int(p) for p in version.split(".")[:2])


class Writes:
    """Kamailio's stderr: every write() it makes there, as the datagram it became."""

    def __init__(self):
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.settimeout(0.2)
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.ours.recv(65536))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop.set()
        self._reader.join(5)
        self.ours.close()
        self.theirs.close()


def package_without_line_buffering(tmp_path) -> Path:
    """A copy of the kemi package whose stderr.line_buffered() does nothing (the control)."""
    root = tmp_path / "project"
    shutil.copytree(stack.project_file("kemi"), root / "kemi", ignore=shutil.ignore_patterns("__pycache__"))
    module = root / "kemi" / "stderr.py"
    text = module.read_text()
    body = '    """Make this process\'s C stderr line-buffered; False when the C library would not."""\n'
    assert text.count(body) == 1
    module.write_text(text.replace(body, body + "    return False\n"))
    return root


def run_kamailio(tmp_path, kemi_root: Path = stack.PROJECT_ROOT) -> list[bytes]:
    """Start Kamailio with the kemi package in `kemi_root`, send REQUESTS that each log a long
    line, from every worker at once, stop it; the writes it made to stderr once it answered."""
    inst = stack.KamailioInstance(tmp_path / "kamailio", stack.kamailio_port(), {"sip": {"children": 4}},
                                  kemi_root=kemi_root)
    cfg = kamailio.prepare(inst.settings, inst.workdir, kemi_root=kemi_root)
    writes = Writes()
    proc = subprocess.Popen(kamailio.command(cfg, inst.settings.pid_file),
                            # stdout has only the main process's "Listening on" block, once at start
                            stdout=subprocess.DEVNULL, stderr=writes.theirs, stdin=subprocess.DEVNULL,
                            cwd=cfg.parent, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not sip_options_ok(*inst.address):
            assert proc.poll() is None and time.monotonic() < deadline, b"".join(writes.datagrams)[-3000:]
            time.sleep(0.2)
        # what the main process logged alone, before it forked, cannot interleave
        started = len(writes.datagrams)
        answered = []

        def send(count: int):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.settimeout(5)
                for _ in range(count):      # no waiting between them: the workers log at once
                    s.sendto(rawsip.build("OPTIONS", "mailto:someone@example.com", "127.0.0.1", s.getsockname()[1]),
                             inst.address)
                for _ in range(count):
                    try:
                        answered.append(s.recv(65536).split(b"\r\n", 1)[0])
                    except socket.timeout:
                        break

        senders = [threading.Thread(target=send, args=(REQUESTS // SENDERS,)) for _ in range(SENDERS)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(30)
        assert answered.count(b"SIP/2.0 416 Unsupported URI Scheme") == REQUESTS, answered[:5]
        time.sleep(0.3)                     # the last lines reach the socket
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        writes.close()
    return writes.datagrams[started:]


def torn(datagrams: list[bytes]) -> list[bytes]:
    """Writes that are not whole lines: no newline at the end, or no log header at the start."""
    return [d for d in datagrams if not d.endswith(b"\n") or not LOG_LINE_START.match(d)]


def test_every_log_line_is_one_write_when_the_workers_log_at_once(db, tmp_path):
    datagrams = run_kamailio(tmp_path)
    long_lines = [d for d in datagrams if LONG_LINE in d]
    assert len(long_lines) == REQUESTS and all(len(d) > 128 for d in long_lines), datagrams[-8:]
    assert torn(datagrams) == [], torn(datagrams)[:5]


@pytest.mark.skipif(glibc_version() < (2, 37),
                    reason="glibc before 2.37 writes a whole unbuffered fprintf at once: nothing to tear")
def test_control_without_line_buffering_the_same_lines_are_written_in_pieces(db, tmp_path):
    """The mechanism switched off (Debian 13's glibc): the same run, lines torn into writes."""
    datagrams = run_kamailio(tmp_path, package_without_line_buffering(tmp_path))
    pieces = torn(datagrams)
    assert any(len(d) == 128 for d in pieces), datagrams[:5]
    assert not any(LONG_LINE in d and d.endswith(b"\n") and LOG_LINE_START.match(d) for d in datagrams)
