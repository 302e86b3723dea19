"""The one SIPp runner (kemi_tools/sipp.py) and the shared scenarios against a real Kamailio.

The benchmark runs the same scenario files as the tests and the kit, with -set fail_refused 1:
a refused registration or call must then count as a failed call in SIPp's own counters (the
bench reads only those), while the tests and the kit see it as a logged final answer.
Extensions 6700-6709 belong to this file.
"""
import socket
import threading
import time

from harness import stack
from harness.sipp import SCENARIOS, Sipp, auth_row
from harness.stack import free_port

from bench.load import client

REGISTERING, CALLER, CONTACT, NOBODY = "6701", "6702", "6703", "6709"
RE_ACK = {"uac_call.xml": ("6704", "6705"), "control": ("6706", "6707")}     # caller, callee


def bench_load(proxy, tmp_path, scenario: str, row: str, **kw):
    """One call of the bench's load (bench/load.py client) against the test's Kamailio."""
    inf = tmp_path / f"{scenario}.csv"
    inf.write_text(f"SEQUENTIAL\n{row}\n")
    return client(scenario, proxy.target, inf, tmp_path / "bench", free_port(), 1, 5, "0-1", "127.0.0.1",
                  **kw).start().wait()


def counts(result) -> tuple:
    return result.rc, result.sipp_count("SuccessfulCall"), result.sipp_count("FailedCall")


def test_a_refused_registration_fails_only_with_fail_refused(db, proxy, tmp_path):
    db.add_subscriber(REGISTERING)
    keys = {"contact_port": free_port(), "expires": 60}
    wrong = auth_row(REGISTERING, "wrong-password", stack.DOMAIN)
    refused = bench_load(proxy, tmp_path, "register.xml", wrong, keys=keys)
    assert counts(refused) == (1, 0, 1), refused.stdout[-2000:]
    assert refused.rtts_ms and refused.cpu_s > 0          # response time kept, rusage read (wait4)
    # control: the same refusal without fail_refused (the tests, the kit) is a logged answer
    logged = Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=[wrong], keys=keys).run()
    assert logged.finals == [401] and counts(logged) == (0, 1, 0), logged.stdout[-2000:]
    # and the bench's load with the right password succeeds
    ok = bench_load(proxy, tmp_path, "register.xml", auth_row(REGISTERING, stack.PASSWORD, stack.DOMAIN), keys=keys)
    assert counts(ok) == (0, 1, 0), ok.stdout[-2000:]


def test_a_refused_call_fails_only_with_fail_refused(db, proxy, tmp_path):
    db.add_subscriber(CALLER)
    row = auth_row(CALLER, stack.PASSWORD, stack.DOMAIN, NOBODY)            # not a subscriber: 404
    refused = bench_load(proxy, tmp_path, "uac_call.xml", row, sets={"hold_ms": 0})
    assert counts(refused) == (1, 0, 1), refused.stdout[-2000:]
    logged = Sipp("uac_call.xml", tmp_path / "sipp", target=proxy.target, rows=[row], sets={"hold_ms": 0}).run()
    assert logged.finals == [404] and counts(logged) == (0, 1, 0), logged.stdout[-2000:]


def test_the_contact_host_is_the_sipps_address_unless_given(db, proxy, tmp_path):
    db.add_subscriber(CONTACT)
    port = free_port()
    row = [auth_row(CONTACT, stack.PASSWORD, stack.DOMAIN)]
    Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
         keys={"contact_port": port, "expires": 60}).run()
    assert db.locations(CONTACT) == [f"sip:{CONTACT}@127.0.0.1:{port};transport=UDP"]
    Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
         keys={"contact_port": port, "expires": 0}).run()
    elsewhere = Sipp("register.xml", tmp_path / "sipp", target=proxy.target, rows=row,
                     keys={"contact_port": port, "expires": 60, "contact_host": "192.0.2.7"}).run()
    assert elsewhere.finals == [200]
    assert db.locations(CONTACT) == [f"sip:{CONTACT}@192.0.2.7:{port};transport=UDP"]


class RetransmittingCallee:
    """A callee (plain sockets) whose 200 is retransmitted late: it answers the INVITE with
    200, and when the BYE comes it sends that 200 once more before answering the BYE, as a
    phone whose ACK was held up in a stalled proxy would (its timer fires 0.5, 1.5, 3.5 s
    after the 200). SIPp no longer takes it for a retransmission of its last received message
    (the BYE went out since), so only the scenario can say what to do. Bounded: 15 s."""

    def __init__(self, extension: str):
        self.extension = extension
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []          # request methods, in order
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _answer(self, request: str, tag: str = ";tag=callee1") -> bytes:
        lines = request.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower()
                in ("via", "record-route", "from", "call-id", "cseq")]
        to = next(line for line in lines[1:] if line.lower().startswith("to:"))
        if ";tag=" not in to:
            to += tag
        return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + f"\r\n{to}\r\n"
                f"Contact: <sip:{self.extension}@127.0.0.1:{self.port}>\r\nContent-Length: 0\r\n\r\n").encode()

    def _run(self) -> None:
        ok, deadline = b"", time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                continue
            text = data.decode(errors="replace")
            method = text.split(" ", 1)[0]
            self.received.append(method)
            if method == "INVITE":
                ok = self._answer(text)
                self.sock.sendto(ok, peer)
            elif method == "BYE" and self.received.count("BYE") == 1:
                self.sock.sendto(ok, peer)          # the INVITE's 200 once more, late
                time.sleep(0.3)                     # a re-ACK comes before the BYE is answered
                self.sock.sendto(self._answer(text, tag=""), peer)
                deadline = min(deadline, time.monotonic() + 1.0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(16)
        self.sock.close()


def _call_with_a_retransmitted_200(db, proxy, tmp_path, scenario: str, extensions: tuple[str, str]):
    caller, called = extensions
    for ext in extensions:
        db.add_subscriber(ext)
    with RetransmittingCallee(called) as callee:
        Sipp("register.xml", tmp_path / "reg", target=proxy.target,
             rows=[auth_row(called, stack.PASSWORD, stack.DOMAIN)],
             keys={"contact_port": callee.port, "expires": 60}).run()
        result = Sipp(scenario, tmp_path / "call", target=proxy.target,
                      rows=[auth_row(caller, stack.PASSWORD, stack.DOMAIN, called)],
                      sets={"hold_ms": 1000}, timeout=12).run()
    return result, callee.received


def test_a_200_retransmitted_after_the_ack_is_acknowledged_again(db, proxy, tmp_path):
    """The soak's SBC phase lost two call streams at its first reload: SIPp 3.6 aborted
    (assertion in call::process_incoming) on a 200 relayed again after its ACK, since the
    2xx ACK of uac_call.xml was not tied to the INVITE's transaction (ack_txn)."""
    result, received = _call_with_a_retransmitted_200(db, proxy, tmp_path, "uac_call.xml", RE_ACK["uac_call.xml"])
    assert result.rc == 0 and result.finals == [200], result.stdout[-2000:]
    assert received == ["INVITE", "ACK", "BYE", "ACK"], received


def test_control_without_ack_txn_sipp_aborts_on_the_retransmitted_200(db, proxy, tmp_path):
    """CONTROL: the same call with the 2xx ACK's ack_txn removed: SIPp aborts."""
    text = (SCENARIOS / "uac_call.xml").read_text()
    answered = text.index('<label id="answered"/>')
    stripped = text[:answered] + text[answered:].replace('<send ack_txn="call">', "<send>", 1)
    assert stripped != text
    scenario = tmp_path / "uac-call-without-ack-txn.xml"     # (not a name of the folder's)
    scenario.write_text(stripped)
    result, received = _call_with_a_retransmitted_200(db, proxy, tmp_path, str(scenario), RE_ACK["control"])
    assert result.rc != 0 and "Assertion" in result.stdout, (result.rc, result.stdout[-2000:], received)
