"""A started daemon, tracked by PID, stopped by PID."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class StartError(RuntimeError):
    pass


class Daemon:
    """A child process we started; `stop()` ends it and everything in its process group."""

    def __init__(self, name: str, argv: list[str], log: Path | None, env: dict | None = None,
                 cwd: Path | None = None):
        """Output goes to `log`, or to our own stdout when log is None (make run)."""
        self.name, self.argv, self.log = name, argv, log
        self._logf = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self._logf = open(log, "ab")  # noqa: SIM115 (the daemon's output while it runs; closed in stop())
        self.proc = subprocess.Popen(argv, stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._logf:
            self._logf.close()

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None:
            return "(output above)"
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_for(check, timeout: float, what: str, daemon: Daemon | None = None, interval: float = 0.1):
    """Poll `check()` until it returns truthy; raise StartError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if daemon is not None and not daemon.alive():
            raise StartError(f"{daemon.name} exited while waiting for {what}:\n{daemon.log_tail()}")
        time.sleep(interval)
    tail = f"\n{daemon.log_tail()}" if daemon else ""
    raise StartError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def sip_options_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a SIP server at host:port answers an OPTIONS over UDP."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            local, lport = s.getsockname()[:2]
            hostport = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            via = f"[{local}]:{lport}" if family == socket.AF_INET6 else f"{local}:{lport}"
            tag = time.monotonic_ns()
            msg = (f"OPTIONS sip:{hostport} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {via};branch=z9hG4bK-probe{tag};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:probe@{hostport}>;tag=probe\r\n"
                   f"To: <sip:{hostport}>\r\nCall-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\n"
                   f"Content-Length: 0\r\n\r\n")
            s.send(msg.encode())
            data = s.recv(4096)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 ")
