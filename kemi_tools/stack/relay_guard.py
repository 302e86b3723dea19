"""A per-source packet limit in front of rtpengine's relay ports (nftables): what keeps a
stranger's flood from ending a call's audio (docs/security.md, "Media attacks").

rtpengine in userspace reads each media socket in a loop of at most 50 packets; a socket
that still has packets queued after 50 gets a strike, and after 5 strikes in a row rtpengine
never reads it again (10.5 and 12.5: media_socket.c, MAX_RECV_ITERS / MAX_RECV_LOOP_STRIKES).
One host sending a second of RTP at a call's ports does that, and the call's audio is gone
for good (measured: docs/security.md). No rtpengine 10.5 option changes it, so the kernel
drops a source's packets to one relay port beyond FLOW_RATE before rtpengine sees them:

    table inet kemi_relay {
        set flows4 { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10s; size 65536; }
        chain input {
            type filter hook input priority -10; policy accept;
            ip daddr { RELAY ADDRESSES } udp dport PORT_MIN-PORT_MAX
                update @flows4 { ip saddr . udp dport limit rate over 1000/second burst 100 packets }
                counter drop
        }
    }

Per source address AND relay port: a phone's stream (50 packets/s of voice, a few hundred of
video) is far below the limit, and a trunk's many calls use many relay ports, so no
legitimate sender is limited; an attacker gets at most FLOW_RATE packets/s into one socket,
which rtpengine drains long before 50 queue up. It does not stop many sources at once
(spoofed or a botnet): that is the network edge's job (docs/security.md).

`make run` (kemi_tools/stack/run.py), the image's rtpengine service (docker/entrypoint.py)
and `make cluster` load it into the namespace rtpengine runs in; `nft` is Debian's nftables
package (scripts/install.sh). The table is replaced as a whole, so loading it twice is
harmless, and `remove()` deletes exactly it.
"""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Callable

from kemi.settings import RtpengineDaemon

TABLE = "kemi_relay"
# packets/s one source may send to one relay port, and the burst it may start with: a voice
# stream is 50/s, HD video a few hundred (a keyframe comes as a burst of tens of packets)
FLOW_RATE = 1000
FLOW_BURST = 100
# a (source, port) entry is forgotten after this long without packets
FLOW_TIMEOUT_S = 10
# entries the kernel keeps per address family: one per (source, relay port) pair seen lately
FLOW_ENTRIES = 65536
# before the filter hook's usual priority (0): nothing else in the host's ruleset has to run first
PRIORITY = -10
NFT_TIMEOUT = 15


class GuardError(RuntimeError):
    pass


def ruleset(d: RtpengineDaemon) -> str:
    """The nft script that (re)creates the table for rtpengine's relay addresses and ports."""
    v4 = sorted({i.address for i in d.interfaces if ipaddress.ip_address(i.address).version == 4})
    v6 = sorted({i.address for i in d.interfaces if ipaddress.ip_address(i.address).version == 6})
    limit = f"limit rate over {FLOW_RATE}/second burst {FLOW_BURST} packets"
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    rules = []
    for family, addrs, ip in (("4", v4, "ip"), ("6", v6, "ip6")):
        if not addrs:
            continue
        kind = "ipv4_addr" if family == "4" else "ipv6_addr"
        lines.append(f"    set flows{family} {{ type {kind} . inet_service; flags dynamic,timeout; "
                     f"timeout {FLOW_TIMEOUT_S}s; size {FLOW_ENTRIES}; }}")
        rules.append(f"        {ip} daddr {{ {', '.join(addrs)} }} udp dport {d.port_min}-{d.port_max} "
                     f"update @flows{family} {{ {ip} saddr . udp dport {limit} }} counter drop")
    lines += ["    chain input {",
              f"        type filter hook input priority {PRIORITY}; policy accept;",
              *rules,
              "    }",
              "}"]
    return "\n".join(lines) + "\n"


Runner = Callable[..., subprocess.CompletedProcess]


def _nft(args: list[str], script: str | None, run: Runner | None) -> subprocess.CompletedProcess:
    if run is None:
        if shutil.which("nft") is None:
            raise GuardError("nft is not installed: install Debian's nftables package (scripts/install.sh)")
        run = subprocess.run
    return run(["nft", *args], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT)


def apply(d: RtpengineDaemon, run: Runner | None = None) -> None:
    """Load the table (run: how to run nft, e.g. inside a namespace; default: here)."""
    done = _nft(["-f", "-"], ruleset(d), run)
    if done.returncode != 0:
        raise GuardError(f"nft could not load table inet {TABLE} (the relay's flood limit): "
                         f"{(done.stderr or done.stdout).strip()}; it needs root or CAP_NET_ADMIN "
                         f"and Debian's nftables package")


def remove(run: Runner | None = None) -> None:
    """Delete the table if it is there."""
    _nft(["delete", "table", "inet", TABLE], None, run)


def dropped(run: Runner | None = None) -> int:
    """Packets the limit has dropped so far (the counter of its rules), 0 without the table."""
    done = _nft(["list", "table", "inet", TABLE], None, run)
    total = 0
    for line in done.stdout.splitlines():
        if "counter packets" in line:
            total += int(line.split("counter packets", 1)[1].split()[0])
    return total
