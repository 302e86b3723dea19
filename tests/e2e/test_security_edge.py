"""The SIP edge against the tools attackers use: sipvicious svmap/svwar/svcrack, floods,
relay attempts, injection payloads. Real Kamailio, MariaDB, SIPp and sipvicious.

pike and our ban logic never count the server's own addresses, so the attacked Kamailio
listens on 127.0.0.2 (SIP domain 127.0.0.2) and attackers send from 127.0.0.1, the address
the kernel picks for them (sipvicious ignores -b). Legitimate phones use 127.0.0.3.
Every test that asserts "nothing" also runs a control that gets "something" with the
protection switched off (settings) or a deliberately broken router (tests/e2e/routers/).
"""
from __future__ import annotations

import re
import socket
import time

import pytest

from harness import sipvicious, stack
from harness.sipclient import SipClient, header, status, status_line
from harness.stack import free_port

EDGE = "127.0.0.2"            # the attacked server
ATTACKER = "127.0.0.1"        # where sipvicious and the raw attacks come from
PHONE = "127.0.0.3"           # a legitimate phone elsewhere
ROUTERS = str(stack.project_file("tests", "e2e", "routers"))
BAN_TIME = 6                  # short, so a test can watch a ban expire


def edge_settings(**security) -> dict:
    return {"sip": {"domain": EDGE}, "security": {"ban_time": BAN_TIME, **security}}


UNPROTECTED = {"enabled": False}
# scanner User-Agents and floods ignored, so the replies themselves are what is tested
REPLIES_ONLY = {"scanner_user_agents": [], "flood_detection": False}


@pytest.fixture
def edge(kamailio_factory):
    def start(name: str = "edge", router: str | None = None, **security):
        overrides = edge_settings(**security)
        if router:
            overrides["python"] = {"router": router, "path": [ROUTERS]}
        return kamailio_factory(overrides, name=name, host=EDGE)
    return start


def assert_clean_log(proxy) -> None:
    log = proxy.log()
    assert "Traceback" not in log
    assert " raised " not in log, [l for l in log.splitlines() if " raised " in l][:3]
    assert proxy.alive()


def options(proxy, local_ip: str, user_agent: str = "kemi-test-client", wait: float = 1.0):
    with SipClient(proxy.address, local_ip=local_ip) as c:
        c.send(c.build("OPTIONS", f"sip:{proxy.target}", from_uri=f"sip:probe@{local_ip}",
                       headers={"User-Agent": user_agent}))
        return c.final_reply(wait)


def register_phone(db, proxy, tmp_path, user: str, password: str = stack.PASSWORD) -> int:
    """A legitimate REGISTER (SIPp, digest) from PHONE; returns the final status."""
    from harness.sipp import Sipp, auth_row
    res = Sipp("register.xml", tmp_path / "phone", target=proxy.target, local_ip=PHONE,
               rows=[auth_row(user, password, EDGE)], keys={"contact_port": free_port(), "expires": 600}).run()
    return res.finals[0] if res.finals else 0


# --- scanners -------------------------------------------------------------------------


def test_svmap_gets_no_answer_and_the_scanner_is_banned(db, edge, tmp_path):
    proxy = edge()
    found = sipvicious.svmap(EDGE, proxy.port, tmp_path / "svmap")
    assert found.rows == [], found.output[-1500:]
    assert re.search(rf"banned {ATTACKER} for {BAN_TIME}s: scanner user agent", proxy.log())
    # the ban holds for any User-Agent from that source; other sources are served
    assert options(proxy, ATTACKER) is None
    assert status(options(proxy, PHONE)) == 200
    assert_clean_log(proxy)

    # CONTROL: the same scan against the same config with security switched off finds it
    open_proxy = edge("open", **UNPROTECTED)
    control = sipvicious.svmap(EDGE, open_proxy.port, tmp_path / "svmap-control")
    assert [r[0] for r in control.rows] == [f"{EDGE}:{open_proxy.port}"], control.output[-1500:]


@pytest.mark.parametrize("agent", ["friendly-scanner", "sipvicious", "sipcli/v1.8", "VaxSIPUserAgent/3.1",
                                   "pplsip", "SIPVICIOUS-like Friendly-Scanner 2"])
def test_scanner_user_agents_are_dropped_silently(db, edge, agent):
    proxy = edge(flood_detection=False)
    assert options(proxy, ATTACKER, user_agent=agent) is None
    assert options(proxy, PHONE, user_agent="Yealink SIP-T46S 66.86") is not None   # CONTROL


# --- enumeration ----------------------------------------------------------------------


def normalized(reply: bytes, user: str) -> tuple[str, list[str]]:
    """Status line and headers with what legitimately differs masked: the user asked for,
    the nonce, the To tag and the request's own Via/Call-ID/From values."""
    lines = reply.decode().split("\r\n")
    out = []
    for line in lines[1:]:
        if not line:
            break
        line = line.replace(user, "<USER>")
        line = re.sub(r'nonce="[^"]*"', 'nonce="<N>"', line)
        line = re.sub(r";tag=[^;>\s]+", ";tag=<T>", line)
        name = line.split(":", 1)[0].lower()
        if name in ("via", "call-id", "from"):
            line = f"{name}: <echoed>"
        out.append(line)
    return lines[0], out


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_existing_and_unknown_extensions_get_identical_challenges(db, edge, method):
    proxy = edge(**REPLIES_ONLY)
    member, stranger = ("3101", "3199") if method == "REGISTER" else ("3111", "3198")
    db.add_subscriber(member)
    answers = {}
    for user in (member, stranger):
        with SipClient(proxy.address, local_ip=ATTACKER) as c:
            uri = f"sip:{user}@{EDGE}"
            ruri = f"sip:{EDGE}" if method == "REGISTER" else uri
            no_credentials = c.request(method, ruri, from_uri=uri, to_uri=uri)
            # with credentials: auth_db says -2 (wrong password) for the member, -3 (no such user)
            wrong_password = c.request(method, ruri, from_uri=uri, to_uri=uri, user=user, password="0000")
        answers[user] = (normalized(no_credentials, user), normalized(wrong_password, user))
    assert answers[member] == answers[stranger]
    first_line = answers[member][0][0]
    assert first_line == ("SIP/2.0 401 Unauthorized" if method == "REGISTER" else "SIP/2.0 407 Proxy Authentication Required")
    assert any('qop="auth"' in h for h in answers[member][1][1])
    assert_clean_log(proxy)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_svwar_finds_no_extension(db, edge, tmp_path, force):
    base = 3220 if force else 3200
    members = [str(base + n) for n in (1, 5, 10)]
    scan = f"{base - 5}-{base + 15}"
    for user in members:
        db.add_subscriber(user)
    proxy = edge(**REPLIES_ONLY)
    for method in ("REGISTER", "INVITE"):
        war = sipvicious.svwar(EDGE, proxy.port, scan, tmp_path / f"svwar-{method}", method=method, force=force)
        assert war.rows == [], war.output[-2000:]
    # and with the full protection it does not even get an answer
    guarded = edge("guarded")
    war = sipvicious.svwar(EDGE, guarded.port, scan, tmp_path / "svwar-guarded", force=force)
    assert war.rows == [] and "timed out" in war.output, war.output[-1500:]
    assert_clean_log(proxy)

    # CONTROL: a registrar that answers 404 for unknown users gets enumerated by the same run
    leaky = edge("leaky", router="leaky_router:LeakyRouter", **REPLIES_ONLY)
    war = sipvicious.svwar(EDGE, leaky.port, scan, tmp_path / "svwar-leaky", force=force)
    assert sorted(r[0] for r in war.rows) == members, war.output[-2000:]


# --- password guessing ----------------------------------------------------------------

CRACK_USER, CRACK_PASSWORD = "3301", "4821"
# svcrack numbers its attempts nc=1,2,3... in decimal; past 99 the nc no longer fits the
# byte Kamailio's nonce-count check keeps, so a single run can try at most 99 passwords:
# the range holds the password within that
CRACK_RANGE = "4790-4830"


def test_svcrack_finds_nothing_and_the_control_finds_the_password(db, edge, tmp_path):
    db.add_subscriber(CRACK_USER, CRACK_PASSWORD)
    # full protection: the friendly-scanner User-Agent alone gets svcrack banned at once
    guarded = edge("guarded")
    crack = sipvicious.svcrack(EDGE, guarded.port, CRACK_USER, CRACK_RANGE, tmp_path / "crack-guarded")
    assert crack.rows == [], crack.output[-1500:]

    # the guessing ban alone (scanner filter off): banned after auth_failure_limit wrong passwords
    ban_time = 20
    proxy = edge("ban-only", scanner_user_agents=[], auth_failure_limit=5, ban_time=ban_time)
    started = time.monotonic()
    crack = sipvicious.svcrack(EDGE, proxy.port, CRACK_USER, CRACK_RANGE, tmp_path / "crack-ban")
    assert crack.rows == [], crack.output[-1500:]
    assert re.search(rf"banned {ATTACKER} for {ban_time}s: failed digest attempts", proxy.log())
    assert options(proxy, ATTACKER) is None                  # the guesser is dropped silently...
    assert time.monotonic() - started < ban_time
    assert register_phone(db, proxy, tmp_path, CRACK_USER, CRACK_PASSWORD) == 200   # others are served
    deadline = started + ban_time + 2 * 5 + 5                # ...until the ban (htable timer 5 s) expires
    while options(proxy, ATTACKER, wait=0.5) is None:
        assert time.monotonic() < deadline, "ban did not expire"
    assert_clean_log(proxy)

    # CONTROL: protection off, same run, same range: the password is found
    open_proxy = edge("open", **UNPROTECTED)
    control = sipvicious.svcrack(EDGE, open_proxy.port, CRACK_USER, CRACK_RANGE, tmp_path / "crack-open")
    assert control.rows == [(CRACK_USER, CRACK_PASSWORD)], control.output[-1500:]


def flood(proxy, local_ip: str, count: int) -> int:
    """`count` OPTIONS as fast as one socket sends them; returns how many got an answer."""
    answered = 0
    with SipClient(proxy.address, local_ip=local_ip) as c:
        for _ in range(count):
            c.send(c.build("OPTIONS", f"sip:{proxy.target}", from_uri=f"sip:flood@{local_ip}"))
            while c.receive(0.0005) is not None:
                answered += 1
        while c.receive(0.5) is not None:
            answered += 1
    return answered


def test_flood_gets_the_source_banned_other_sources_unaffected(db, edge):
    proxy = edge(flood_interval=2, flood_requests=20)
    answered = flood(proxy, ATTACKER, 400)
    assert answered < 200, answered
    assert re.search(rf"banned {ATTACKER} for {BAN_TIME}s: request flood", proxy.log())
    assert options(proxy, ATTACKER) is None
    assert status(options(proxy, PHONE)) == 200
    assert_clean_log(proxy)
    # CONTROL: flood detection off, every request is answered
    open_proxy = edge("open", flood_detection=False)
    assert flood(open_proxy, ATTACKER, 400) == 400


# --- no open relay ----------------------------------------------------------------------


class Listener:
    """A UDP socket standing for a foreign host: did the proxy send it anything?"""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]

    def got(self, wait: float = 1.0) -> list[bytes]:
        out, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                out.append(self.sock.recv(65535))
            except socket.timeout:
                break
        return out


def test_no_open_relay(db, kamailio_factory):
    proxy = kamailio_factory()
    db.add_subscriber("3401")
    foreign = Listener()
    try:
        foreign_uri = f"sip:bob@127.0.0.1:{foreign.port}"          # not us: another port
        with SipClient(proxy.address) as c:
            me = "sip:3401@127.0.0.1"
            # unauthenticated, foreign domain: challenged, never relayed
            assert status(c.request("INVITE", foreign_uri, from_uri="sip:mallory@203.0.113.66")) == 407
            assert status(c.request("MESSAGE", foreign_uri, from_uri="sip:mallory@203.0.113.66")) == 407
            # unauthenticated, a number that is no subscriber here: challenged, never relayed
            assert status(c.request("INVITE", f"sip:+4930123456@{proxy.target}", from_uri="sip:mallory@203.0.113.66")) == 407
            assert foreign.got() == []
            # authenticated, non-local number: 404, not relayed anywhere
            reply = c.request("INVITE", f"sip:+4930123456@{proxy.target}", from_uri=me, user="3401", password=stack.PASSWORD)
            assert status(reply) == 404
            # REGISTER for a foreign domain: challenged, then refused
            aor = "sip:3401@example.com"
            assert status(c.request("REGISTER", "sip:example.com", from_uri=aor, to_uri=aor)) == 401
            reply = c.request("REGISTER", "sip:example.com", from_uri=aor, to_uri=aor,
                              user="3401", password=stack.PASSWORD)
            assert status_line(reply) == "SIP/2.0 403 Forbidden - Not Relaying"
            # authenticated, but From names somebody else: 403
            reply = c.request("INVITE", foreign_uri, from_uri="sip:2001@127.0.0.1", user="3401", password=stack.PASSWORD)
            assert status(reply) == 403
            reply = c.request("REGISTER", "sip:127.0.0.1", from_uri="sip:2001@127.0.0.1",
                              to_uri="sip:2001@127.0.0.1", user="3401", password=stack.PASSWORD)
            assert status(reply) == 403
            assert foreign.got() == []
            # CONTROL: the same foreign INVITE from an authenticated subscriber is relayed,
            # so the listener would have seen the requests above had they been relayed
            c.send(c.build("INVITE", foreign_uri, from_uri=me))
            challenge = c.final_reply()
            from harness.sipclient import digest_header, parse_challenge
            auth = digest_header("INVITE", foreign_uri, "3401", stack.PASSWORD,
                                 parse_challenge(header(challenge, "Proxy-Authenticate")))
            c.send(c.build("INVITE", foreign_uri, from_uri=me, headers={"Proxy-Authorization": auth}))
            relayed = foreign.got(2.0)
            assert relayed and relayed[0].startswith(b"INVITE " + foreign_uri.encode())
    finally:
        foreign.sock.close()
    assert_clean_log(proxy)


def forged_in_dialog(c: SipClient, proxy, method: str, target_uri: str) -> bytes:
    """What an attacker sends to use a proxy as a relay: a To tag and a Route naming it."""
    return c.build(method, target_uri, from_uri="sip:mallory@203.0.113.66",
                   headers={"Route": f"<sip:{proxy.target};lr>", "To": f"<{target_uri}>;tag=forged"})


def test_forged_in_dialog_requests_are_not_relayed(db, kamailio_factory):
    proxy = kamailio_factory()
    control_proxy = kamailio_factory({"python": {"router": "unsigned_routes_router:UnsignedRoutesRouter",
                                                 "path": [ROUTERS]}}, name="unsigned")
    foreign = Listener()
    try:
        target = f"sip:+4930123456@127.0.0.1:{foreign.port}"
        with SipClient(proxy.address) as c:
            for method in ("INVITE", "BYE", "MESSAGE"):
                c.send(forged_in_dialog(c, proxy, method, target))
                assert status(c.final_reply()) == 403, method
        assert foreign.got() == []
        # CONTROL: loose-routing without the signature check relays the very same request
        with SipClient(control_proxy.address) as c:
            c.send(forged_in_dialog(c, control_proxy, "INVITE", target))
            relayed = foreign.got(2.0)
        assert relayed and relayed[0].startswith(f"INVITE {target}".encode())
    finally:
        foreign.sock.close()
    assert_clean_log(proxy)


def stray_reply(proxy, listener: Listener) -> bytes:
    return (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {proxy.target};branch=z9hG4bKstray{time.monotonic_ns()}\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{listener.port};branch=z9hG4bKvictim\r\n"
            f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: stray@kemi-test\r\n"
            f"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def test_replies_without_a_transaction_are_not_forwarded(db, kamailio_factory):
    proxy = kamailio_factory()
    control_proxy = kamailio_factory({"python": {"router": "reply_forwarding_router:ReplyForwardingRouter",
                                                 "path": [ROUTERS]}}, name="forwarding")
    victim = Listener()
    try:
        with SipClient(proxy.address) as c:
            c.send(stray_reply(proxy, victim))
        assert victim.got() == []
        # CONTROL: without the reply screen Kamailio forwards it to the second Via
        with SipClient(control_proxy.address) as c:
            c.send(stray_reply(control_proxy, victim))
        assert len(victim.got()) == 1
    finally:
        victim.sock.close()
    assert_clean_log(proxy)


# --- injection ----------------------------------------------------------------------------

INJECTIONS = [                                  # each gets a 404 (no such user)
    "x'or'1'='1",                               # true when concatenated into SQL
    "3501'%20OR%20'1'='1",
    "3501%27--",
    "%27%3B%20DROP%20TABLE%20subscriber%3B--",
    "9" * 300,                                  # longer than any username column
    "a" * 4000,
    "jos\u00e9",                                # non-ASCII, valid UTF-8
]


def test_injection_payloads_get_404_and_reach_no_sql_as_text(db, kamailio_factory):
    proxy = kamailio_factory()
    db.add_subscriber("3501")
    subscribers_before = db.query("SELECT COUNT(*) FROM subscriber;")
    me = "sip:3501@127.0.0.1"
    with SipClient(proxy.address) as c:
        for user in INJECTIONS:
            reply = c.request("INVITE", f"sip:{user}@127.0.0.1", from_uri=me, user="3501", password=stack.PASSWORD)
            assert reply is not None and status(reply) == 404, (user, reply and status_line(reply))
        # escapes usrloc refuses to un-escape (NUL, CR, non-ASCII): 400, never 500
        for user in ("3501%00", "3501%0d%0aX-Injected:%201", "3501%ff", "3501%zz", "3501%"):
            reply = c.request("INVITE", f"sip:{user}@127.0.0.1", from_uri=me, user="3501", password=stack.PASSWORD)
            assert reply is not None and status(reply) == 400, (user, reply and status_line(reply))
        # the payload in headers instead
        for name, value in (("Subject", "' OR '1'='1"), ("X-Payload", "%00" * 100), ("Subject", "x" * 20000),
                            ("User-Agent", "Robert'); DROP TABLE subscriber;--")):
            reply = c.request("INVITE", "sip:3599@127.0.0.1", from_uri=me, user="3501", password=stack.PASSWORD,
                              headers={name: value})
            assert status(reply) == 404, (name, value[:40])
        # as the digest username (auth_db's own query): an unknown user, challenged again
        for user in ("3501' OR '1'='1", "3501\\", "' UNION SELECT 1--"):
            reply = c.request("REGISTER", "sip:127.0.0.1", from_uri=me, user=user, password="x")
            assert status(reply) == 401, user
    # bytes that are not UTF-8 (\udcXX = that raw byte on the wire): the Python side cannot
    # read them; a plain 400 and one log line, whether the R-URI or the User-Agent (both
    # read before auth) carries them
    for spec, ruri, headers in (("$ru", "sip:35\udcff01@127.0.0.1", {}),
                                ("$ua", "sip:3599@127.0.0.1", {"User-Agent": "Caf\udce9 Phone"})):
        with SipClient(proxy.address) as c:
            reply = c.request("INVITE", ruri, from_uri=me, user="3501", password=stack.PASSWORD, headers=headers)
        assert reply is not None and status(reply) == 400, spec
        lines = [l for l in proxy.log().splitlines() if f"{spec} is not UTF-8" in l]
        assert len(lines) == 1, lines
    assert db.query("SELECT COUNT(*) FROM subscriber;") == subscribers_before
    assert_clean_log(proxy)


def test_injection_control_concatenated_sql_is_caught(db, kamailio_factory):
    """CONTROL: with the SQL built by concatenation the first payload 'exists' (480, not 404)."""
    proxy = kamailio_factory({"python": {"router": "injectable_router:InjectableRouter", "path": [ROUTERS]}})
    db.add_subscriber("3511")
    with SipClient(proxy.address) as c:
        reply = c.request("INVITE", f"sip:{INJECTIONS[0]}@127.0.0.1", from_uri="sip:3511@127.0.0.1",
                          user="3511", password=stack.PASSWORD)
    assert status(reply) == 480
