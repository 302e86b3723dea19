"""Kamailio's log lines stay whole on stderr (`kamailio -E`: make run, the image, the tests).

Kamailio logs with fprintf(stderr), and its daemonize() makes stderr unbuffered (setbuf(stderr,
0)) even in the foreground, so `stdbuf -eL` cannot help. glibc 2.37 and newer (Debian 13) write
an unbuffered stream in 128-byte pieces: with several workers logging at once, their lines
interleave mid-line in the one log file or journal, and whatever reads them (a log shipper,
grep for a Call-ID, our tests) loses or misattributes lines. Line-buffered, each line is one
write() (up to BUFFER_SIZE), appended whole. Each process sets it once, from
child_init; syslog logging (no -E) is not affected either way.

tests/e2e/test_log_lines.py shows it, and its control the 128-byte pieces without it.
"""
from __future__ import annotations

import ctypes

_IOLBF = 1          # glibc's <stdio.h>: line buffered
# the longest line written whole; a longer one (a SIP message dumped at debug level) leaves in
# pieces of this size. Allocated with malloc and never freed: stderr keeps using it until exit
BUFFER_SIZE = 16384


def line_buffered() -> bool:
    """Make this process's C stderr line-buffered; False when the C library would not."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = (ctypes.c_size_t,)
        setvbuf = libc.setvbuf
        setvbuf.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
        # a buffer of our own: with NULL, glibc keeps the 1-byte one an unbuffered stream has
        buffer = libc.malloc(BUFFER_SIZE)
        if not buffer:
            return False
        return setvbuf(ctypes.c_void_p.in_dll(libc, "stderr"), buffer, _IOLBF, BUFFER_SIZE) == 0
    except Exception:       # never stop a Kamailio process from starting over how it logs
        return False
