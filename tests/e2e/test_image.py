"""The kemi image, built and run: Debian 12 (Kamailio 5.6) and Debian 13 (Kamailio 6.0).

scripts/image.py makes the base image from a debootstrap root (no registry here) and builds
docker/Dockerfile on it with podman (runc; docs/docker.md). The three services then run as
docker/compose.yaml describes (tests/harness/compose.py): MariaDB on its socket only, rtpengine
and Kamailio on the host network, which is a network namespace this test made (loopback only),
so the compose file's fixed ports are this test's alone. Two extensions register with digest
through the container and one calls the other; the callee's SDP shows rtpengine's ports, and
the rtpengine service has loaded the relay's packet limit (nftables) into that namespace.

The Debian 13 suite (scripts/debroot.py, a chroot) does not run it: the host's suite builds and
runs both images, and podman's storage would not work on the chroot's overlay.

Extensions 6500-6509 belong to this file.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from harness import netns
from harness.compose import ComposeRun
from harness.sipp import Sipp, auth_row

sys.path.insert(0, str(netns.Path(__file__).resolve().parents[2] / "scripts"))
import image  # noqa: E402

pytestmark = pytest.mark.skipif(bool(os.environ.get("KEMI_DEBROOT")),
                                reason="in the Debian 13 chroot: the host's suite builds and runs both images")
DOMAIN, PASSWORD = "127.0.0.1", "123456"
SIP_PORT, RTP_MIN, RTP_MAX = 5060, 30000, 40000          # compose.yaml's (its namespace only)


@pytest.fixture(scope="module")
def engine():
    subprocess.run([str(image.debroot.PROJECT / "scripts" / "install.sh"), "--image"], check=True, timeout=900)


def host_forwarding() -> str:
    return open("/proc/sys/net/ipv4/ip_forward").read().strip()


@pytest.mark.parametrize("debian", ["12", "13"])
def test_the_image_registers_and_calls(engine, debian, tmp_path):
    # podman's bridge network would switch the host's IPv4 forwarding on (and every new network
    # namespace inherits it: the SBC tests check it is off); the build and the services use
    # none of it (build --network host; services host = our namespace, or none)
    forwarding = host_forwarding()
    # a tag of this slot's: parallel runs (other checkouts) build their own
    tag = image.build(debian, tag=f"kemi-test{netns.SLOT}:debian{debian}")
    topo = netns.Topology()
    ns = topo.namespace(f"img{debian}")
    run = ComposeRun(f"kemi{netns.SLOT}-{os.getpid()}-d{debian}", tag, {
        "KEMI_ADDRESS": "127.0.0.1", "KEMI_DOMAIN": DOMAIN,
        "KEMI_ROUTE_SECRET": hashlib.sha256(os.urandom(16)).hexdigest()}, netns=ns.name)
    try:
        run.up()
        version = run.exec("kamailio", "kamailio", "-v").stdout
        assert f"kamailio {'5.6' if debian == '12' else '6.0'}." in version, version
        for user in ("6500", "6501"):
            sql = (f"INSERT INTO kamailio.subscriber (username, domain, password) "
                   f"VALUES ('{user}', '{DOMAIN}', '{PASSWORD}');")
            done = run.exec("mariadb", "mariadb", "--protocol=socket", "-uroot", input=sql)
            assert done.returncode == 0, done.stderr
        callee = Sipp("uas_callee.xml", tmp_path / "sipp", local_port=15100, netns=ns.name).start()
        try:
            target = f"127.0.0.1:{SIP_PORT}"
            wrong = Sipp("register.xml", tmp_path / "sipp", target=target, netns=ns.name,
                         rows=[auth_row("6500", "not-the-password", DOMAIN)],
                         keys={"contact_port": 15100, "expires": 600}).run()
            assert wrong.finals == [401], wrong.stdout[-3000:]          # control: the digest is checked
            reg = Sipp("register.xml", tmp_path / "sipp", target=target, netns=ns.name,
                       rows=[auth_row("6500", PASSWORD, DOMAIN)], keys={"contact_port": 15100, "expires": 600}).run()
            assert reg.rc == 0 and reg.finals == [200], reg.stdout[-3000:]
            rows = run.exec("mariadb", "mariadb", "--protocol=socket", "-uroot", "-N", "-B",
                            input="SELECT contact FROM kamailio.location WHERE username='6500';").stdout.split()
            assert rows == ["sip:6500@127.0.0.1:15100;transport=UDP"], rows
            call = Sipp("uac_call.xml", tmp_path / "sipp", target=target, netns=ns.name, sets={"hold_ms": 300},
                        rows=[auth_row("6501", PASSWORD, DOMAIN, "6500")]).run()
            assert call.rc == 0 and call.finals == [200], call.stdout[-3000:]
            took = callee.wait()
            assert took.rc == 0, took.stdout[-3000:]
        finally:
            callee.stop()
        # the INVITE's SDP reached the callee anchored on the rtpengine container
        invite = took.received_requests("INVITE")[0]
        port = int(re.search(r"^m=audio (\d+) ", invite, re.M).group(1))
        assert RTP_MIN <= port <= RTP_MAX, invite
        assert "Traceback" not in run.logs("kamailio")
        # the rtpengine service loaded the relay's per-source packet limit into its network
        table = ns.run(["nft", "list", "table", "inet", "kemi_relay"], check=False)
        assert table.returncode == 0 and f"udp dport {RTP_MIN}-{RTP_MAX}" in table.stdout, table.stdout + table.stderr
    finally:
        problems = run.down()
        problems += topo.teardown()
    assert problems == []
    assert host_forwarding() == forwarding, "the host's net.ipv4.ip_forward was changed"
