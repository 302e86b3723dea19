"""rtpengine-daemon for `make run` and the tests: userspace forwarding, foreground, by PID.

Everything comes from the settings' [media.rtpengine] table: the ng control socket (on
loopback), the named media interfaces, the port range. Debian's /etc/rtpengine/rtpengine.conf
is not ours and is not read (--config-file=none).
"""
from __future__ import annotations

from pathlib import Path

from kemi.settings import RtpengineDaemon
from kemi_tools.stack.ng import NgClient
from kemi_tools.stack.process import Daemon, StartError, wait_for

# userspace forwarding: no kernel module, no iptables rules
NO_KERNEL_TABLE = -1


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
    ]


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
