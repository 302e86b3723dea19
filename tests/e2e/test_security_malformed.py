"""Malformed input: every RFC 4475 torture message, then a bounded mutation run.

Each message goes to the running server as ONE UDP datagram, bytes exact, from 127.0.0.1
(the server's own address here, so pike and the bans stay out of the way and every message
reaches the parser and the routes). After the run Kamailio must still be up with the same
worker processes, have written no Python traceback and no "raised" line, have relayed
nothing (core/tm statistics), and a legitimate REGISTER + call must complete.

    make test   mutation run of KEMI_FUZZ_COUNT messages (default 2,000)
    make fuzz   the full run: 10,000 messages, figures printed
"""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from harness import mutate, stack
from harness.sipclient import status_line
from harness.stack import free_port

TORTURE_DIR = Path(os.environ.get("KEMI_TORTURE_DIR", stack.PROJECT_ROOT / "fixtures" / "torture" / "rfc4475"))
FUZZ_COUNT = int(os.environ.get("KEMI_FUZZ_COUNT", "2000"))
DROP = None      # no answer at all

# What a careful authenticating proxy/registrar answers to each RFC 4475 message, and why.
# Every initial request from an unknown source is challenged (407, 401 for REGISTER) once it
# is well-formed; "RFC:" notes where RFC 4475 asks for more than we do, and why we differ.
EXPECTED = {
    # 3.1.1 valid messages
    "wsinv.dat": (DROP, "valid (3.1.1.1), but Kamailio 5.6's CSeq parser rejects the folded "
                        "'CSeq: 0009\\r\\n\\t INVITE' and drops it before any route runs: a known core limitation"),
    "intmeth.dat": (DROP, "valid (3.1.1.2), but Kamailio's parser rejects '%' and other token characters "
                          "in header names ('extensionHeader-!.%*+_`'~') and drops it: core limitation"),
    "esc01.dat": (407, "valid (3.1.1.3), %-escapes in the R-URI user: challenged"),
    "escnull.dat": (401, "valid (3.1.1.4) REGISTER with %00 in To/Contact user: challenged"),
    "esc02.dat": (DROP, "valid (3.1.1.5) unknown method 'RE%47IST%45R', but 'C%6Fntact' as a header name "
                        "is refused by Kamailio's parser: core limitation, dropped"),
    "lwsdisp.dat": (407, "valid (3.1.1.6), no LWS between display name and '<': challenged"),
    "longreq.dat": (407, "valid (3.1.1.7), long values: challenged"),
    "dblreq.dat": (400, "RFC 3.1.1.8 says discard the extra octets after Content-Length: 0 and process the "
                        "REGISTER; sanity refuses the mismatch with 400 instead, deliberately: Kamailio "
                        "would forward the trailing octets with a relayed request (smuggling)"),
    "semiuri.dat": (407, "valid (3.1.1.9), ';' inside the R-URI user: challenged"),
    "transports.dat": (407, "valid (3.1.1.10), unusual Via transports: challenged"),
    "mpart01.dat": (407, "valid (3.1.1.11), multipart body: challenged"),
    "unreason.dat": (DROP, "valid 200 reply (3.1.1.12) matching no transaction of ours: dropped, never forwarded"),
    "noreason.dat": (DROP, "valid 100 reply without reason (3.1.1.13), no transaction: dropped"),
    # 3.1.2 invalid messages
    "badinv01.dat": (DROP, "invalid (3.1.2.1) ';;,;,,' in Via; RFC: 400. The core parser drops it (no reply can "
                           "be built without a Via)"),
    "clerr.dat": (400, "invalid (3.1.2.2), Content-Length larger than the datagram: 400 (sanity)"),
    "ncl.dat": (DROP, "invalid (3.1.2.3) negative Content-Length; RFC: 400. Headers do not parse, so sanity "
                      "cannot build the 400 and the request is dropped"),
    "scalar02.dat": (400, "invalid (3.1.2.4), CSeq number beyond 2**32: 400 (sanity)"),
    "scalarlg.dat": (DROP, "invalid reply (3.1.2.5), overlarge scalars: dropped"),
    "quotbal.dat": (DROP, "invalid (3.1.2.6) unterminated quote in To; RFC: 400. The core parser drops it"),
    "ltgtruri.dat": (400, "invalid (3.1.2.7), R-URI in '<>': 400 Bad Request URI (sanity)"),
    "lwsruri.dat": (DROP, "invalid (3.1.2.8), LWS inside the R-URI; RFC: 400. The core parser drops it"),
    "lwsstart.dat": (DROP, "invalid (3.1.2.9), several SP in the request line; RFC: 400. Core parser drops it"),
    "trws.dat": (407, "invalid (3.1.2.10) trailing SP after SIP/2.0, which RFC 4475 lets an element accept: "
                      "challenged"),
    "escruri.dat": (407, "(3.1.2.11) headers component in the R-URI; an element may ignore it: challenged, and "
                         "it is never honoured as a Route (preloaded Route headers are removed)"),
    "baddate.dat": (407, "(3.1.2.12) bad Date time zone; a proxy does not interpret Date: challenged"),
    "regbadct.dat": (401, "(3.1.2.13) Contact with params but without '<>': the registrar authenticates first, "
                          "401"),
    "badaspec.dat": (407, "(3.1.2.14) spaces inside the To addr-spec; the proxy does not parse To beyond what "
                          "routing needs and authenticates first: challenged"),
    "baddn.dat": (407, "(3.1.2.15) non-token display name in From/To; same as badaspec: challenged"),
    "badvers.dat": (DROP, "(3.1.2.16) SIP/7.0; RFC: 505. Kamailio's parser drops other versions"),
    "mismatch01.dat": (400, "invalid (3.1.2.17), CSeq method differs from the request method: 400 (sanity)"),
    "mismatch02.dat": (400, "invalid (3.1.2.18), unknown method with CSeq mismatch: 400 (sanity)"),
    "bigcode.dat": (DROP, "invalid reply (3.1.2.19), status code beyond 699: dropped"),
    # 3.2 transaction layer
    "badbranch.dat": (407, "valid (3.2.1) RFC 2543 branch without the magic cookie: challenged"),
    # 3.3 application layer
    "insuf.dat": (DROP, "invalid (3.3.1) without Call-ID/From/To; RFC: 400. Kamailio's core refuses messages "
                        "without the required headers before any route"),
    "unkscm.dat": (416, "(3.3.2) unknown R-URI scheme: 416 Unsupported URI Scheme (route_validate)"),
    "novelsc.dat": (416, "(3.3.3) 'soap.beep:' R-URI: 416 (route_validate)"),
    "unksm2.dat": (400, "(3.3.4) REGISTER with non-SIP From/To URIs: 400 Invalid From Header (sanity)"),
    "bext01.dat": (420, "(3.3.5) Proxy-Require with unknown options: 420 Bad Extension with Unsupported "
                        "(route_validate)"),
    "invut.dat": (407, "(3.3.6) unknown Content-Type is the UAS's business: challenged"),
    "regaut01.dat": (401, "(3.3.7) unknown Authorization scheme: challenged with Digest"),
    "multi01.dat": (DROP, "invalid (3.3.8) two CSeq (and more); RFC: 400. The core drops it while parsing the "
                          "headers it needs"),
    "mcl01.dat": (DROP, "invalid (3.3.9) two Content-Length values; RFC: 400. Headers do not parse, sanity "
                        "cannot build the 400: dropped"),
    "bcast.dat": (DROP, "(3.3.10) 200 OK with a broadcast second Via: no transaction, dropped (a stateless "
                        "proxy would send it to 255.255.255.255)"),
    "zeromf.dat": (483, "(3.3.11) Max-Forwards 0 for another domain: 483"),
    "cparam01.dat": (401, "valid (3.3.12) REGISTER with Contact parameters: challenged"),
    "cparam02.dat": (401, "valid (3.3.13) REGISTER with a URI parameter: challenged"),
    "regescrt.dat": (401, "(3.3.14) REGISTER with an escaped header in the Contact: challenged first"),
    "sdp01.dat": (407, "valid (3.3.15) with an unacceptable Accept: that is for the UAS; challenged"),
    # 3.4 backward compatibility
    "inv2543.dat": (407, "valid (3.4.1) RFC 2543 INVITE: challenged"),
}


def settled_child_pids(pid: int, timeout: float = 10.0) -> set[int]:
    """child_pids() once Kamailio has finished forking (answering OPTIONS comes first)."""
    deadline, last = time.monotonic() + timeout, child_pids(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = child_pids(pid)
        if now == last:
            return now
        last = now
    return last


def child_pids(pid: int) -> set[int]:
    """Every process under Kamailio's main process (its workers, timers, ctl...)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            for c in task.read_text().split():
                out.add(int(c))
                todo.append(int(c))
    return out


def stats(proxy, *names: str) -> dict[str, int]:
    text = proxy.kamcmd("stats.get_statistics", "all")
    values = dict(re.findall(r"^(\S+) = (\d+)$", text, flags=re.M))
    return {n: int(values[n]) for n in names}


def relay_counters(proxy) -> dict[str, int]:
    """Stateless forwards (requests, replies) and tm transactions: a relay needs one of them.
    No request in these runs is authenticated, so no transaction has any reason to exist."""
    counters = stats(proxy, "core:fwd_requests", "core:fwd_replies")
    counters["tm:transactions"] = int(re.search(r"\btotal: (\d+)", proxy.kamcmd("tm.stats")).group(1))
    return counters


def send_one(proxy, data: bytes, wait: float) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(data, proxy.address)
        got, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                got.append(s.recv(65535))
            except socket.timeout:
                break
            if not got[-1].startswith(b"SIP/2.0 1"):
                break
        return got


def server_healthy(db, proxy, phones, tmp_path, caller: str, callee: str, pids_before: set[int]) -> dict:
    """Same processes, nothing relayed, clean log, and a real REGISTER + call completes."""
    assert proxy.alive()
    assert child_pids(proxy.daemon.pid) == pids_before, "a Kamailio process died or was replaced"
    # every worker still answers: a burst of OPTIONS from separate sockets, all answered
    answered = sum(1 for _ in range(20) if send_one(proxy, _options(proxy), 2.0))
    assert answered == 20
    relays = relay_counters(proxy)
    assert set(relays.values()) == {0}, relays
    log = proxy.log()
    assert "Traceback" not in log
    assert " raised " not in log, [l for l in log.splitlines() if " raised " in l][:3]
    assert not re.search(r"exited by a signal|core dumped|out of memory", log)
    db.add_subscriber(caller)
    db.add_subscriber(callee)
    port = free_port()
    assert phones.register(callee, port).finals == [200]
    uas = phones.callee(port)
    call = phones.call(caller, callee)
    assert call.rc == 0 and call.finals == [200], call.stdout[-2000:]
    assert uas.wait().rc == 0
    assert relay_counters(proxy)["tm:transactions"] > 0     # CONTROL: the counters do count relays
    return {"options_answered": answered, **relays}


def _options(proxy) -> bytes:
    return (f"OPTIONS sip:{proxy.target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{time.monotonic_ns()}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:health@127.0.0.1>;tag=h\r\nTo: <sip:{proxy.target}>\r\n"
            f"Call-ID: health-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def test_every_torture_file_has_an_expectation():
    files = sorted(p.name for p in TORTURE_DIR.glob("*.dat"))
    assert files, f"no torture messages in {TORTURE_DIR}"
    assert files == sorted(EXPECTED)


def test_rfc4475_torture_messages(db, proxy, phones, tmp_path):
    pids = settled_child_pids(proxy.daemon.pid)
    got = {}
    for path in sorted(TORTURE_DIR.glob("*.dat")):
        expected, _why = EXPECTED[path.name]
        replies = send_one(proxy, path.read_bytes(), wait=2.0 if expected else 0.5)
        finals = [r for r in replies if not r.startswith(b"SIP/2.0 1")]
        got[path.name] = int(status_line(finals[0]).split()[1]) if finals else DROP
    wrong = {name: (code, EXPECTED[name][0]) for name, code in got.items() if code != EXPECTED[name][0]}
    assert not wrong, f"(got, expected): {wrong}"
    figures = server_healthy(db, proxy, phones, tmp_path, "3601", "3602", pids)
    print(f"\ntorture: {len(got)} RFC 4475 messages sent, "
          f"{sum(1 for c in got.values() if c)} answered, {sum(1 for c in got.values() if not c)} dropped; "
          f"crashes 0; {figures}; legitimate call after: completed")


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped for full receive buffers (whole machine; for the figures)."""
    lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])


def test_mutation_run(db, proxy, phones, tmp_path):
    pids = settled_child_pids(proxy.daemon.pid)
    buffer_errors = udp_receive_buffer_errors()
    started, answered, kinds = time.monotonic(), 0, {}
    deadline = started + max(120, FUZZ_COUNT / 50)            # bounded in time as well as count
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        local = f"127.0.0.1:{s.getsockname()[1]}"
        sent = 0
        for names, data in mutate.mutants(FUZZ_COUNT, proxy.target, local):
            s.sendto(data, proxy.address)
            sent += 1
            for n in names:
                kinds[n] = kinds.get(n, 0) + 1
            if sent % 50 == 0:                               # let the workers keep up: drain replies
                time.sleep(0.01)
            answered += _drain(s)
            assert time.monotonic() < deadline, f"mutation run over its time bound after {sent} messages"
        time.sleep(0.5)
        answered += _drain(s)
    assert sent == FUZZ_COUNT
    seen = stats(proxy, "core:rcv_requests", "core:bad_msg_hdr", "core:err_requests", "core:drop_requests")
    seen["kernel:udp_rcvbuf_errors"] = udp_receive_buffer_errors() - buffer_errors
    figures = server_healthy(db, proxy, phones, tmp_path, "3611", "3612", pids)
    print(f"\nmutation run: {sent} messages sent in {time.monotonic() - started:.1f}s ({kinds}), "
          f"{answered} replies received; Kamailio counted {seen}; crashes 0, hung processes 0; {figures}; "
          f"legitimate call after: completed")


def _drain(s) -> int:
    n = 0
    while True:
        try:
            s.recv(65535)
            n += 1
        except BlockingIOError:
            return n
