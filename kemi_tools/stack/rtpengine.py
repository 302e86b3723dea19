"""rtpengine-daemon for `make run` and the tests: userspace forwarding, foreground, by PID.

Everything comes from the settings' [media.rtpengine] table: the ng control socket (on
loopback), the named media interfaces, the port range. Debian's /etc/rtpengine/rtpengine.conf
is not ours and is not read (--config-file=none).
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from kemi.media.learning import DAEMON_LEARNING
from kemi.settings import RtpengineDaemon
from kemi_tools.stack.ng import NgClient
from kemi_tools.stack.process import Daemon, StartError, wait_for

# userspace forwarding: no kernel module, no iptables rules
NO_KERNEL_TABLE = -1
# packets rtpengine reads from one media socket before it gives up on it for that round.
# Its default, 50, and the 5 give-ups in a row after which it never reads that socket again
# (media_socket.c), are what lets a 1 s flood end a call's audio for good; with this many a
# flooded socket is read until it is empty and the call recovers when the flood ends
# (measured on 12.5, docs/security.md). rtpengine 10.5 has no such option: there the
# packet limit in front of the relay ports (relay_guard.py) is what protects a call.
RECV_ITERS = 1_000_000
RECV_ITERS_OPTION = "--max-recv-iters"


def argv(d: RtpengineDaemon) -> list[str]:
    """rtpengine's command line for these settings (see `rtpengine --help`)."""
    return [
        "rtpengine", "--config-file=none", "--foreground", "--log-stderr",
        f"--table={NO_KERNEL_TABLE}",
        f"--listen-ng={d.listen_ng}",
        *(f"--interface={itf.option}" for itf in d.interfaces),
        f"--port-min={d.port_min}", f"--port-max={d.port_max}",
        f"--delete-delay={d.delete_delay}",
        f"--timeout={d.media_timeout}",
        f"--log-level={d.log_level}",
        # what a session gets without kemi's flags; kemi's offers and answers say it per party
        f"--endpoint-learning={DAEMON_LEARNING[d.endpoint_learning]}",
        *([f"{RECV_ITERS_OPTION}={RECV_ITERS}"] if supports(RECV_ITERS_OPTION) else []),
    ]


@functools.cache
def supports(option: str) -> bool:
    """Does the installed rtpengine know `option` (12.5 does, 10.5 not all of them)?"""
    try:
        done = subprocess.run(["rtpengine", "--help"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return f"{option}=" in done.stdout + done.stderr


def start(d: RtpengineDaemon, logdir: Path, timeout: float = 15, log_name: str = "rtpengine.log") -> Daemon:
    """Start rtpengine and wait until its ng socket answers `ping`."""
    daemon = Daemon("rtpengine", argv(d), logdir / log_name)
    ng = NgClient(d.ng_address, timeout=0.3)
    try:
        wait_for(ng.ping, timeout, f"rtpengine to answer ping on {d.listen_ng}", daemon, interval=0.1)
    except StartError:
        daemon.stop()
        raise
    return daemon
