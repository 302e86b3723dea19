"""kemi/stderr.py: C stderr line-buffered, so a log line leaves the process in one write().

Seen from outside: stderr is a datagram socket, where each write() is one datagram. A child
process prints a line in two fprintf calls; unbuffered, the first half arrives on its own."""
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import ctypes, sys
sys.path.insert(0, {root!r})
from kemi import stderr
if {line_buffered}:
    assert stderr.line_buffered()
libc = ctypes.CDLL(None)
err = ctypes.c_void_p.in_dll(libc, "stderr")
libc.fprintf(err, b"first half, ")
libc.fprintf(err, b"%s\\n", b"x" * 300)
"""


def writes(line_buffered: bool) -> list[bytes]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        done = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), line_buffered=line_buffered)],
                              stderr=theirs, timeout=30)
        assert done.returncode == 0
        ours.setblocking(False)
        got = []
        while True:
            try:
                got.append(ours.recv(65536))
            except BlockingIOError:
                return got


def test_a_line_printed_in_pieces_leaves_in_one_write():
    assert writes(line_buffered=True) == [b"first half, " + b"x" * 300 + b"\n"]


def test_control_unbuffered_each_piece_is_a_write_of_its_own():
    got = writes(line_buffered=False)
    assert got[0] == b"first half, " and len(got) >= 2
