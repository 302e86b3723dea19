"""keepalived (Debian's package) for a cluster node: VRRP moves cluster.floating_address to
a live node. Rendered from the node's settings; started in the foreground, tracked by PID.

Each node runs one: the lowest cluster.node that is alive and whose Kamailio answers holds
the address (priority 200 - 10 x (node - 1)); VRRP adverts go unicast to the other nodes'
cluster addresses only (no multicast). When a node's Kamailio stops answering its control
socket, its keepalived gives the address up; when the node dies, the next one takes it after
about 3 x advert interval and sends gratuitous ARPs, so phones reach the survivor at once.
`nopreempt`: a node that comes back does not take the address back (no second outage).

    python3 -m kemi_tools.stack.keepalived SETTINGS     # print a node's keepalived.conf
"""
from __future__ import annotations

import sys
from pathlib import Path

from kemi.settings import Settings, load_settings
from kemi_tools.stack.process import Daemon


def priority(node: int) -> int:
    return max(200 - 10 * (node - 1), 1)


def render(s: Settings, kamcmd: str = "/usr/sbin/kamcmd") -> str:
    c = s.cluster
    advert = c.floating_advert_ms / 1000
    peers = "\n".join(f"        {p}" for p in c.peers)
    return f"""# Generated from {s.source or 'defaults'} (kemi_tools.stack.keepalived); docs/cluster.md
global_defs {{
    router_id kemi_node{c.node}
    enable_script_security
    script_user root
    vrrp_garp_master_repeat 3
    vrrp_garp_master_refresh 10
}}

# this node's Kamailio answers on its control socket
vrrp_script kamailio_alive {{
    script "{kamcmd} -s unix:{s.ctl_socket} core.uptime"
    interval 1
    timeout 1
    fall 2
    rise 1
}}

vrrp_instance kemi_sip {{
    state BACKUP
    nopreempt
    interface {c.floating_interface}
    virtual_router_id {c.floating_router_id}
    version 3
    priority {priority(c.node)}
    advert_int {advert:g}
    unicast_src_ip {c.address}
    unicast_peer {{
{peers}
    }}
    virtual_ipaddress {{
        {c.floating_address}/{c.floating_prefix} dev {c.floating_interface}
    }}
    track_script {{
        kamailio_alive
    }}
}}
"""


def write(s: Settings, path: Path) -> Path:
    path.write_text(render(s))
    return path


def argv(conf: Path, rundir: Path) -> list[str]:
    """keepalived in the foreground, VRRP only, its own pid files (several run on one host).
    Every child's pid file, not only the VRRP one: keepalived 2.3 (Debian 13) checks the BFD
    and checkers pid files at start even with --vrrp, and a node started while another held
    the default /run/bfd.pid exited at once ("Another process has pid file /run/bfd.pid
    locked ... daemon is already running"), leaving its node without VRRP."""
    return ["keepalived", "--dont-fork", "--log-console", "--no-syslog", "--vrrp", "--log-detail",
            f"--use-file={conf}", f"--pid={rundir / 'keepalived.pid'}", f"--vrrp_pid={rundir / 'vrrp.pid'}",
            f"--checkers_pid={rundir / 'checkers.pid'}", f"--bfd_pid={rundir / 'bfd.pid'}"]


def start(s: Settings, workdir: Path, spawn=None) -> Daemon:
    """Start keepalived for the node `s` describes; `spawn(argv, log, name)` runs it elsewhere
    (a network namespace)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = write(s, workdir / "keepalived.conf")
    command = argv(conf, workdir)
    log = workdir / "keepalived.log"
    if spawn is not None:
        return spawn(command, log, f"keepalived-node{s.cluster.node}")
    return Daemon(f"keepalived-node{s.cluster.node}", command, log)


if __name__ == "__main__":
    print(render(load_settings(sys.argv[1] if len(sys.argv) > 1 else None)), end="")
