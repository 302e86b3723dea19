"""bencode and the ng client against a fake rtpengine on loopback."""
import socket
import threading

import pytest

from kemi_tools.stack.ng import BencodeError, NgClient, NgError, bdecode, bencode


@pytest.mark.parametrize("value, encoded", [
    (0, b"i0e"), (-3, b"i-3e"), ("", b"0:"), ("ping", b"4:ping"), ([], b"le"),
    ({"command": "ping"}, b"d7:command4:pinge"),
    ({"b": [1, "x"], "a": {"c": ""}}, b"d1:ad1:c0:e1:bli1e1:xee"),     # keys sorted
])
def test_bencode_round_trip(value, encoded):
    assert bencode(value) == encoded
    assert bdecode(encoded) == value


@pytest.mark.parametrize("bad", [b"i1", b"4:abc", b"d1:ae", b"x", b"i1ei2e"])
def test_bdecode_rejects_broken_input(bad):
    with pytest.raises((BencodeError, ValueError)):
        bdecode(bad)


@pytest.fixture
def fake_rtpengine():
    """Answers each ng command: ping -> pong, list -> two calls, anything else -> error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)

    def serve():
        for _ in range(3):
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                return
            cookie, _, body = data.partition(b" ")
            command = bdecode(body)["command"]
            reply = {"ping": {"result": "pong"}, "list": {"result": "ok", "calls": ["a", "b"]}}.get(
                command, {"result": "error", "error-reason": "Unknown call-id"})
            sock.sendto(b"stale " + bencode({"result": "pong"}), peer)   # an old answer: ignored
            sock.sendto(cookie + b" " + bencode(reply), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()
    sock.close()
    thread.join(3)


def test_ng_client_matches_cookies_and_reports_errors(fake_rtpengine):
    ng = NgClient(fake_rtpengine)
    assert ng.ping() is True
    assert ng.calls() == ["a", "b"]
    with pytest.raises(NgError, match="Unknown call-id"):
        ng.query("nope")


def test_ng_client_without_rtpengine_says_no_answer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there now
    ng = NgClient(("127.0.0.1", port), timeout=0.3)
    assert ng.ping() is False
    with pytest.raises(NgError, match="no answer"):
        ng.command("list")
