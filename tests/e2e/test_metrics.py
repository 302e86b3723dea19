"""Observability end to end: Prometheus metrics from a real Kamailio, and the decision log.

Real Kamailio (xhttp + xhttp_prom, our kamailio.cfg + kemi), MariaDB and SIPp phones. The
endpoint is scraped with urllib, parsed as Prometheus text, and the package's counters are
checked to move by exactly the right amounts for registrations and calls. Extensions
6200-6299 belong to this file.
"""
from __future__ import annotations

import hashlib
import re
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest

from harness import rawsip, stack
from harness.stack import free_port
from kemi.observe import metrics as m
from kemi.observe.decisions import LINE_PREFIX, parse_line

# name{label="value", ...} value [timestamp]   (xhttp_prom writes ", " between labels)
SAMPLE_RE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>[^}]*)\})?\s+'
                       r'(?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))(?:\s+(?P<ts>-?\d+))?$')
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """The samples of a Prometheus text exposition; raises on any line that is not one."""
    samples = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = SAMPLE_RE.match(line)
        if not match:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels_text = match.group("labels") or ""
        labels = dict(LABEL_RE.findall(labels_text))
        if labels_text.strip() and LABEL_RE.sub("", labels_text).strip():
            raise AssertionError(f"bad labels in {line!r}")
        samples[(match.group("name"), frozenset(labels.items()))] = float(match.group("value"))
    return samples


def test_parser_refuses_what_is_not_prometheus():
    """Control for the format checks below: the parser does fail on garbage."""
    assert parse_prometheus('a_total{x="1", y="2"} 3 1700000000000\nb 4\n') == {
        ("a_total", frozenset({("x", "1"), ("y", "2")})): 3.0, ("b", frozenset()): 4.0}
    for bad in ("<html>Not Found</html>", 'a{x=1} 2', "a_total 3 4 5"):
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


class Endpoint:
    def __init__(self, host: str, port: int):
        self.base = f"http://{host}:{port}"

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def samples(self) -> dict:
        code, _ctype, body = self.get(m.METRICS_PATH)
        assert code == 200, body
        return parse_prometheus(body)

    def value(self, counter: m.Counter, *labels: str) -> float:
        """A counter's value (0 when the series does not exist yet)."""
        key = (m.full_name(counter), frozenset(zip(counter.labels, labels)))
        return self.samples().get(key, 0.0)


@pytest.fixture
def metered(kamailio_factory):
    """A proxy with metrics on its own port, and a SIP TCP socket beside the UDP one."""
    sip_port, metrics_port = stack.kamailio_port(), stack.kamailio_port()
    proxy = kamailio_factory({
        "sip": {"listen": [f"udp:127.0.0.1:{sip_port}", f"tcp:127.0.0.1:{sip_port}"]},
        "metrics": {"enabled": True, "listen": f"127.0.0.1:{metrics_port}"},
    })
    proxy.port, proxy.address = sip_port, ("127.0.0.1", sip_port)   # phones call the SIP port
    return proxy, Endpoint("127.0.0.1", metrics_port), sip_port, metrics_port


@pytest.fixture
def metered_phones(metered, db, tmp_path):
    from conftest import Phones

    proxy, endpoint, _sip_port, _ = metered
    phones = Phones(proxy, db, tmp_path / "sipp")
    yield phones, endpoint, proxy
    phones.stop()


def tcp_exchange(port: int, data: bytes, wait: float = 2.0) -> bytes:
    """Send `data` on a TCP connection to 127.0.0.1:port; what came back within `wait` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        got, deadline = b"", time.monotonic() + wait
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = s.recv(65535)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                break
        return got


def tcp_options(port: int) -> bytes:
    local = "127.0.0.1"
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {local}:5999;branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@test\r\nCSeq: 1 OPTIONS\r\nUser-Agent: kemi-test\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def digest_invite(server, user: str, password: str, callee: str) -> int:
    """INVITE, 407, the same INVITE with qop=auth credentials for `password`: its final code."""
    ruri = f"sip:{callee}@{stack.DOMAIN}"
    call_id, tag = f"{uuid.uuid4().hex}@test", uuid.uuid4().hex[:8]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]

        def send(cseq: int, extra: str = "") -> str:
            s.sendto((f"INVITE {ruri} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
                      f"Max-Forwards: 70\r\nFrom: <sip:{user}@{stack.DOMAIN}>;tag={tag}\r\nTo: <{ruri}>\r\n"
                      f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
                      f"Contact: <sip:{user}@127.0.0.1:{port}>\r\n{extra}Content-Length: 0\r\n\r\n").encode(),
                     server)
            while True:
                reply = s.recv(65535).decode()
                if rawsip.status(reply) >= 200:
                    return reply

        challenge = send(1)
        assert rawsip.status(challenge) == 407, challenge
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge.split("Proxy-Authenticate:", 1)[1].split("\r\n")[0]))
        md5 = lambda text: hashlib.md5(text.encode()).hexdigest()
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        ha1, ha2 = md5(f"{user}:{params['realm']}:{password}"), md5(f"INVITE:{ruri}")
        response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        creds = (f'Proxy-Authorization: Digest username="{user}", realm="{params["realm"]}", '
                 f'nonce="{params["nonce"]}", uri="{ruri}", response="{response}", algorithm=MD5, '
                 f'qop=auth, cnonce="{cnonce}", nc={nc}\r\n')
        return rawsip.status(send(2, creds))


# --- the endpoint ---------------------------------------------------------------------------


def test_metrics_are_prometheus_text_with_core_stats_and_our_counters(metered):
    _proxy, endpoint, _sip, _mport = metered
    code, ctype, body = endpoint.get("/metrics")
    assert code == 200 and ctype.startswith("text/plain"), (code, ctype)
    samples = parse_prometheus(body)
    names = {name for name, _ in samples}
    # Kamailio's own statistics (xhttp_prom_stats "all")
    for core in ("kamailio_core_rcv_requests", "kamailio_sl_sent_replies", "kamailio_tmx_UAS_transactions",
                 "kamailio_shmem_used_size", "kamailio_usrloc_registered_users"):
        assert core in names, f"{core} missing from {sorted(names)[:20]}..."
    # the package's series created at start, at 0
    for counter, labels in m.INITIAL_SERIES:
        key = (m.full_name(counter), frozenset(zip(counter.labels, labels)))
        assert samples.get(key) == 0.0, f"{key} not at 0 in {body[:1500]}"


def test_other_urls_get_404_and_sip_sockets_do_not_serve_metrics(metered):
    proxy, endpoint, sip_port, _mport = metered
    assert endpoint.get("/metrics")[0] == 200                       # control
    code, _ctype, body = endpoint.get("/")
    assert code == 404 and "kamailio_" not in body
    code, _ctype, body = endpoint.get("/metricsX")
    assert code == 404 and "kamailio_" not in body
    # the SIP TCP socket: HTTP is answered (xhttp sees it first) but never with the metrics
    sip_http = Endpoint("127.0.0.1", sip_port)
    code, _ctype, body = sip_http.get("/metrics")
    assert code == 404 and "kamailio_core" not in body, body[:300]
    assert proxy.alive()


def test_sip_on_the_metrics_socket_is_dropped_not_routed(metered):
    proxy, endpoint, sip_port, metrics_port = metered
    before = endpoint.value(m.DROPPED, m.DROP_METRICS_SOCKET)
    # control: the same OPTIONS over TCP to the SIP socket is answered 200 by route_reqinit
    assert tcp_exchange(sip_port, tcp_options(sip_port)).startswith(b"SIP/2.0 200"), "control failed"
    assert tcp_exchange(metrics_port, tcp_options(metrics_port)) == b""
    assert endpoint.value(m.DROPPED, m.DROP_METRICS_SOCKET) == before + 1
    assert "request on the metrics socket dropped" in proxy.log()


# --- counters move by the right amounts -------------------------------------------------------


def test_registration_counters(db, metered_phones):
    phones, endpoint, _proxy = metered_phones
    db.add_subscriber("6201")
    db.add_subscriber("6202")
    ok0, failed0 = endpoint.value(m.REGISTRATIONS, m.REG_OK), endpoint.value(m.REGISTRATIONS, m.REG_AUTH_FAILED)
    assert phones.register("6201", free_port()).finals == [200]
    assert phones.register("6201", free_port()).finals == [200]
    # wrong password: the first REGISTER (no credentials) is challenged and not counted,
    # the second (wrong credentials) is a failure
    assert phones.register("6202", free_port(), password="wrong-password").finals == [401]
    assert endpoint.value(m.REGISTRATIONS, m.REG_OK) == ok0 + 2
    assert endpoint.value(m.REGISTRATIONS, m.REG_AUTH_FAILED) == failed0 + 1


def test_call_decision_counters(db, metered_phones):
    phones, endpoint, _proxy = metered_phones
    for user in ("6211", "6212", "6213"):
        db.add_subscriber(user)
    calls = lambda decision: endpoint.value(m.CALLS, decision, m.SIDE_NONE, m.SIDE_NONE)
    decisions = (m.CALL_CONTACT, m.CALL_NOT_FOUND, m.CALL_UNAVAILABLE, m.CALL_AUTH_FAILED)
    before = {d: calls(d) for d in decisions}

    callee_port = free_port()
    assert phones.register("6211", callee_port).finals == [200]
    phones.callee(callee_port)
    call = phones.call("6212", "6211")
    assert call.finals == [200], call.stdout[-2000:]
    assert phones.call("6212", "6298").finals == [404]            # nobody
    assert phones.call("6212", "6213").finals == [480]            # a subscriber, not registered
    assert phones.call("6212", "6213").finals == [480]
    # wrong password: one INVITE with digest credentials that do not match (one datagram, so
    # no retransmission is counted twice), challenged again
    assert digest_invite(phones.proxy.address, "6212", "wrong-password", "6211") == 407
    assert digest_invite(phones.proxy.address, "6212", stack.PASSWORD, "6298") == 404     # control
    before[m.CALL_NOT_FOUND] += 1

    after = {d: calls(d) for d in decisions}
    assert {d: after[d] - before[d] for d in decisions} == {
        m.CALL_CONTACT: 1, m.CALL_NOT_FOUND: 1, m.CALL_UNAVAILABLE: 2, m.CALL_AUTH_FAILED: 1}


# --- the decision log -----------------------------------------------------------------------


def decision_lines(proxy, call_id: str) -> list[dict]:
    return [parse_line(line) for line in proxy.log().splitlines()
            if LINE_PREFIX in line and f"call_id={call_id}" in line]


def test_decision_log_switches_at_runtime(db, metered_phones):
    phones, _endpoint, proxy = metered_phones
    db.add_subscriber("6221")

    def call_404() -> str:
        call = phones.call("6221", "6297")
        assert call.finals == [404]
        return re.search(r"final=404 call-id=(\S+)", "\n".join(call.log)).group(1)

    def switch(value: str) -> None:
        out = proxy.kamcmd("cfg.seti", "kemi_log", "decisions", value)
        assert "error" not in out.lower(), out

    quiet = call_404()                          # off by default (settings logging.decisions)
    switch("1")
    loud = call_404()
    switch("0")
    quiet_again = call_404()
    time.sleep(0.5)                             # Kamailio's stderr reaches the log file

    assert decision_lines(proxy, quiet) == []
    lines = decision_lines(proxy, loud)
    assert len(lines) == 1, proxy.log()[-3000:]
    line = lines[0]
    assert (line["event"], line["decision"], line["code"], line["method"]) == ("call", "not_found", "404", "INVITE")
    assert line["source"].startswith("127.0.0.1:") and line["target"].startswith("sip:6297@")
    assert decision_lines(proxy, quiet_again) == []
    assert proxy.kamcmd("cfg.get", "kemi_log", "decisions").strip() == "0"


# --- security and media counters -----------------------------------------------------------------


def test_scanner_drop_is_counted(metered):
    proxy, endpoint, _sip_port, _mport = metered
    before = endpoint.value(m.DROPPED, m.DROP_SCANNER)
    ruri = f"sip:127.0.0.1:{proxy.port}"
    assert rawsip.status(rawsip.exchange(proxy.address, "OPTIONS", ruri)[-1]) == 200      # control
    assert rawsip.exchange(proxy.address, "OPTIONS", ruri, headers={"User-Agent": "friendly-scanner"}) == []
    assert endpoint.value(m.DROPPED, m.DROP_SCANNER) == before + 1
    # from the server's own address: dropped, never banned
    assert endpoint.value(m.BANS, m.BAN_SCANNER) == 0


def test_rtpengine_not_answering_counts_the_error_and_the_503(db, kamailio_factory, tmp_path):
    """Media on, but nothing listens on the ng port: the call is decided (contact), then 503."""
    from conftest import Phones

    metrics_port, dead_ng_port = stack.kamailio_port(), stack.kamailio_port()
    proxy = kamailio_factory({
        "metrics": {"enabled": True, "listen": f"127.0.0.1:{metrics_port}"},
        "media": {"enabled": True, "timeout_ms": 200, "retries": 1,
                  "instances": [{"ng": f"udp:127.0.0.1:{dead_ng_port}"}], "rtpengine": {"start": False}},
    })
    endpoint = Endpoint("127.0.0.1", metrics_port)
    phones = Phones(proxy, db, tmp_path / "sipp")
    db.add_subscriber("6231")
    db.add_subscriber("6232")
    assert phones.register("6231", free_port()).finals == [200]
    errors0 = endpoint.value(m.RTPENGINE_ERRORS, m.RTP_OFFER, m.RTP_NO_ANSWER)
    unavailable0 = endpoint.value(m.REPLIES_503, m.UNAVAILABLE_RTPENGINE)
    assert phones.call("6232", "6231").finals == [503]
    assert endpoint.value(m.RTPENGINE_ERRORS, m.RTP_OFFER, m.RTP_NO_ANSWER) == errors0 + 1
    assert endpoint.value(m.REPLIES_503, m.UNAVAILABLE_RTPENGINE) == unavailable0 + 1
    assert endpoint.value(m.CALLS, m.CALL_CONTACT, m.SIDE_NONE, m.SIDE_NONE) == 1


# --- the SBC: directions, gateways, failovers, 503s ---------------------------------------------

_SCRAPE = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
"""


def test_sbc_gateway_failover_and_503_counters(db, tmp_path):
    """Both private gateways refuse (503): the first call tries both, fails over, gets 503; the
    second finds none active. Kamailio runs in the SBC's namespace: scraped from inside it."""
    import sys

    from harness import netns
    from harness.sbc import PRIVATE_GATEWAYS, SbcNetwork, gateway_uri

    assert netns.supported(), "this test needs root and `ip netns`"
    net = SbcNetwork(tmp_path / "sbc")
    try:
        metrics_port = stack.PORT_BASE + 61
        # probing slow: gateways marked inactive by the failover stay so for the second call
        k = net.start_kamailio({"sbc": {"probing_interval": 60},
                                "metrics": {"enabled": True, "listen": f"127.0.0.1:{metrics_port}"}})
        for i in range(2):
            net.gateway(net.private, i, scenario="gw_reject.xml")

        def value(counter: m.Counter, *labels: str) -> float:
            body = net.sbc_ns.run([sys.executable, "-c", _SCRAPE, f"http://127.0.0.1:{metrics_port}/metrics"]).stdout
            key = (m.full_name(counter), frozenset(zip(counter.labels, labels)))
            return parse_prometheus(body).get(key, 0.0)

        first = net.trunk_call(net.public, "15550100").wait()
        assert first.finals == [503], first.stdout[-2000:]
        gateways = [gateway_uri(a) for a in PRIVATE_GATEWAYS]
        assert [value(m.GATEWAY_ATTEMPTS, g) for g in gateways] == [1, 1]
        assert [value(m.GATEWAY_FAILOVERS, g) for g in gateways] == [1, 1]
        assert value(m.REPLIES_503, m.UNAVAILABLE_GATEWAYS_FAILED) == 1
        assert value(m.CALLS, m.CALL_GATEWAY, "public", "private") == 1
        assert value(m.CALLS, m.CALL_GATEWAY, "private", "public") == 0      # control: the other way

        second = net.trunk_call(net.public, "15550100").wait()
        assert second.finals == [503]
        assert value(m.CALLS, m.CALL_NO_GATEWAY, "public", "private") == 1
        assert value(m.REPLIES_503, m.UNAVAILABLE_NO_GATEWAY) == 1
        assert [value(m.GATEWAY_ATTEMPTS, g) for g in gateways] == [1, 1]      # nobody tried
        assert "no active gateway in set 2 (private)" in k.log()
    finally:
        problems = net.close()
    assert not problems, problems
