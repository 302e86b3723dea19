"""The user-facing SIPp kit (python3 -m kemi_tools.kit) against a real Kamailio with the kemi routing.

Run as a user runs it: Debian's python3 (the one Kamailio embeds), from the project folder.
Extensions 6300-6399 belong to this file.
"""
import re
import subprocess
import time

from harness import stack
from harness.stack import free_port

from kemi.settings import PROJECT_ROOT

PY = "/usr/bin/python3"


def kit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([PY, "-m", "kemi_tools.kit", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    done.elapsed = time.monotonic() - started
    # shown by pytest when a test fails
    print(f"$ python3 -m kemi_tools.kit {' '.join(args)}\n{done.stdout}{done.stderr}({done.elapsed:.1f} s)")
    return done


def local(proxy, *extra: str) -> list[str]:
    """Target, domain and this slot's ports (never the kit's default ephemeral ports)."""
    return ["--target", proxy.target, "--domain", stack.DOMAIN, "--local-ip", "127.0.0.1",
            "--port", str(free_port()), *extra]


def rtt_count(stdout: str) -> int:
    m = re.search(r"response time ms \(.*, n=(\d+)\): min \d+  p50 \d+  p95 \d+  max \d+", stdout)
    return int(m.group(1)) if m else 0


def test_register_two_users(db, proxy, tmp_path):
    db.add_subscriber("6301")
    db.add_subscriber("6302")
    done = kit("register", *local(proxy, "--users", "6301:123456,6302:123456", "--rate", "10", "--count", "6",
                                  "--keep", str(tmp_path / "sipp")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registrations: 6 ok, 0 failed (of 6)" in done.stdout, done.stdout
    assert rtt_count(done.stdout) == 6, done.stdout
    # the registrations are real: Kamailio stored one contact per user
    assert len(db.locations("6301")) == 1 and len(db.locations("6302")) == 1


def test_call_through_the_proxy(db, proxy, tmp_path):
    db.add_subscriber("6311")
    db.add_subscriber("6312")
    done = kit("call", *local(proxy, "--callee-port", str(free_port()), "--users", "6311:123456,6312:123456",
                              "--rate", "4", "--count", "4", "--keep", str(tmp_path / "sipp")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "calls: 4 ok, 0 failed (of 4)" in done.stdout, done.stdout
    assert rtt_count(done.stdout) == 4, done.stdout
    # the callee's SIPp saw every INVITE through the proxy, and was unregistered afterwards
    callee_log = next((tmp_path / "sipp").glob("callee-*.log")).read_text()
    assert callee_log.count("invite call-id=") == 4 and callee_log.count("bye call-id=") == 4
    assert db.locations("6311") == []


def test_wrong_password_fails_and_says_so(db, proxy):
    db.add_subscriber("6321")
    done = kit("register", *local(proxy, "--users", "6321:wrong-password", "--count", "2"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "registrations: 0 ok, 2 failed (of 2)" in done.stdout and "2 x answered 401" in done.stdout
    assert db.locations("6321") == []


def test_a_caller_with_a_wrong_password_fails_the_call(db, proxy):
    db.add_subscriber("6331")
    db.add_subscriber("6332")
    done = kit("call", *local(proxy, "--callee-port", str(free_port()),
                              "--users", "6331:123456,6332:wrong-password", "--count", "1"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "calls: 0 ok, 1 failed (of 1)" in done.stdout and "answered 407" in done.stdout, done.stdout


def test_an_unknown_callee_fails_before_any_call(db, proxy):
    db.add_subscriber("6342")
    done = kit("call", *local(proxy, "--callee-port", str(free_port()),
                              "--users", "6341:123456,6342:123456", "--count", "2"))
    assert done.returncode == 1
    assert "the callee 6341 could not register (401)" in done.stdout, done.stdout


def test_options_ping(proxy):
    done = kit("options", *local(proxy, "--count", "3", "--rate", "10"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pings: 3 ok, 0 failed (of 3)" in done.stdout and rtt_count(done.stdout) == 3


def test_unreachable_target_fails_clearly_and_quickly(db):
    nobody = f"127.0.0.1:{free_port()}"         # a port of this slot nothing listens on
    done = kit("register", "--target", nobody, "--users", "6351:123456", "--local-ip", "127.0.0.1",
               "--port", str(free_port()), timeout=60)
    assert done.returncode == 1 and f"no SIP answer from {nobody}" in done.stdout, done.stdout
    assert done.elapsed < 15


def test_unreachable_target_without_the_probe_times_out_bounded(db):
    nobody = f"127.0.0.1:{free_port()}"
    done = kit("register", "--target", nobody, "--users", "6352:123456", "--count", "2", "--rate", "10",
               "--recv-timeout", "2", "--no-probe", "--local-ip", "127.0.0.1", "--port", str(free_port()),
               timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "registrations: 0 ok, 2 failed (of 2)" in done.stdout
    assert "2 x no final answer" in done.stdout, done.stdout
    assert done.elapsed < 60


def test_make_sipp_wraps_the_kit(proxy):
    done = subprocess.run(["make", "-s", "sipp", "SCENARIO=options", f"TARGET={proxy.target}", "COUNT=2",
                           "RATE=10", f"KIT_ARGS=--local-ip 127.0.0.1 --port {free_port()}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pings: 2 ok, 0 failed (of 2)" in done.stdout


def test_make_sipp_fails_when_the_kit_fails(db, proxy):
    db.add_subscriber("6361")
    done = subprocess.run(["make", "-s", "sipp", "SCENARIO=register", f"TARGET={proxy.target}",
                           "USERS=6361:wrong-password", "COUNT=1",
                           f"KIT_ARGS=--local-ip 127.0.0.1 --port {free_port()}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "answered 401" in done.stdout, done.stdout + done.stderr


EXAMPLE_ROUTER = {"python": {"router": "my_routing:MyRouter", "path": [str(PROJECT_ROOT / "tests" / "example")]}}


def test_the_readme_example_routing_refuses_the_blocked_number_in_kamailio(db, kamailio_factory):
    """The README's edit (tests/example/my_routing.py) loaded by Kamailio, checked with the kit."""
    db.add_subscriber("6371")
    db.add_subscriber("6372")
    proxy = kamailio_factory(EXAMPLE_ROUTER)
    users = ["--users", "6371:123456,6372:123456", "--count", "2", "--rate", "4"]
    blocked = kit("call", *local(proxy, "--callee-port", str(free_port()), *users,
                                 "--number", "9001234", "--expect", "403"))
    assert blocked.returncode == 0, blocked.stdout + blocked.stderr
    assert "calls: 2 ok, 0 failed (of 2)" in blocked.stdout
    # without --expect the same run fails, and says why
    refused = kit("call", *local(proxy, "--callee-port", str(free_port()), *users, "--number", "9001234"))
    assert refused.returncode == 1 and "2 x answered 403" in refused.stdout, refused.stdout
    # the edit leaves other calls alone
    normal = kit("call", *local(proxy, "--callee-port", str(free_port()), *users))
    assert normal.returncode == 0 and "calls: 2 ok, 0 failed (of 2)" in normal.stdout, normal.stdout


def test_the_stock_routing_does_not_answer_the_blocked_number_with_403(db, proxy):
    """Control: the 403 above comes from the edit (the stock routing: 404, not a subscriber)."""
    db.add_subscriber("6381")
    db.add_subscriber("6382")
    done = kit("call", *local(proxy, "--callee-port", str(free_port()), "--users", "6381:123456,6382:123456",
                              "--number", "9001234", "--expect", "403"))
    assert done.returncode == 1 and "1 x answered 404" in done.stdout, done.stdout


def test_a_sipp_that_cannot_start_is_reported_with_its_reason(proxy):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        done = kit("options", "--target", proxy.target, "--local-ip", "127.0.0.1", "--port", str(port))
    assert done.returncode == 1
    assert "the pinging SIPp exited with status" in done.stdout and "Address already in use" in done.stdout, \
        done.stdout
