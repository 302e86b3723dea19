"""The kit's three runs (register, call, options) and their result: plain values in, a Result out."""
from __future__ import annotations

import ipaddress
import math
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kemi_tools.sipp import Sipp, SippResult, auth_row, free_port

DEFAULT_SIP_PORT = 5060
# a registration that outlives the run by at most this long (Kamailio's default min_expires)
REGISTER_EXPIRES = 60
# the reachability probe before any SIPp starts: OPTIONS tries x seconds each
PROBE_TRIES, PROBE_TIMEOUT = 3, 1.0
# seconds the callee may take to see the last BYE after the caller is done
CALLEE_GRACE = 5
# SIPp's -timeout: the time the calls take at the rate, plus this margin
RUN_MARGIN = 30
# SIPp's clock step (default 10 ms): response times are whole ticks of it
TIMER_RESOLUTION_MS = 1
# the scenario file (kemi_tools/scenarios/) of each SIPp the kit runs
SCENARIO_FILES = {"register": "register.xml", "call": "uac_call.xml", "callee": "uas_callee.xml",
                  "options": "options.xml"}


class KitError(Exception):
    """Bad command-line input: the message says what to write instead."""


@dataclass(frozen=True)
class User:
    name: str
    password: str


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Options:
    scenario: str
    target: Target
    domain: str
    users: list[User]
    count: int
    rate: float
    local_ip: str
    port: int                  # the caller's / registering phone's SIPp port
    callee_port: int           # call: where the callee's SIPp takes the calls
    hold_ms: int = 100
    number: str = ""           # call: the number dialled (default: the callee user)
    expect: int = 200          # the final answer that counts as success
    recv_timeout: float = 5
    timeout: float = 0         # 0: derived from count and rate
    probe: bool = True
    workdir: Path | None = None

    @property
    def run_timeout(self) -> float:
        return self.timeout or math.ceil(self.count / self.rate) + RUN_MARGIN + self.hold_ms / 1000


@dataclass
class Result:
    """What one kit run did: how many of the `expected` operations succeeded, and why not."""
    what: str                                        # "registrations", "calls", "pings"
    expected: int
    ok: int
    failures: Counter = field(default_factory=Counter)   # reason -> how many
    rtts_ms: list[float] = field(default_factory=list)
    rtt_label: str = ""
    notes: list[str] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def failed(self) -> int:
        return self.expected - self.ok

    @property
    def success(self) -> bool:
        return self.expected > 0 and self.failed == 0


# --- plain decisions: parsing and counting -------------------------------------------


def parse_users(text: str) -> list[User]:
    users = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, password = item.partition(":")
        if not sep or not name or not password:
            raise KitError(f"user {item!r} has no password: write USER:PASSWORD, e.g. 2001:123456")
        users.append(User(name, password))
    if not users:
        raise KitError("no users: write --users USER:PASSWORD,USER:PASSWORD, e.g. 2001:123456,2002:123456")
    return users


def parse_target(text: str) -> Target:
    """HOST[:PORT] or [IPv6][:PORT]; the port defaults to 5060."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host or (port and not port.isdigit()) or not 1 <= int(port or DEFAULT_SIP_PORT) <= 65535:
        raise KitError(f"target {text!r} is not HOST[:PORT]: write e.g. 192.0.2.10:5060")
    return Target(host, int(port or DEFAULT_SIP_PORT))


def resolve(target: Target) -> Target:
    """The target with its host as an IP address (SIPp's remote address must be one)."""
    try:
        ipaddress.ip_address(target.host)
        return target
    except ValueError:
        pass
    try:
        info = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise KitError(f"cannot resolve {target.host!r} ({exc.strerror}): give an address or a known name") from None
    return Target(str(info[0][4][0]), target.port)


def outcome(what: str, expected: int, finals: list[str], success: list[str], label: str,
            rtts_ms: list[float], sipp_failed: int | None = None, expect: int = 200) -> Result:
    """Count successes against `expected` operations.

    `finals` are the final answers the scenario logged (operations that logged none timed out
    or got a message the scenario does not expect). With `expect` 200, `success` has one entry
    per operation that completed (a call: its BYE answered); else an operation succeeded when
    its final answer was `expect` (e.g. 403 for a number the routing must refuse).
    """
    wanted = str(expect)
    if expect != 200:
        success = [code for code in finals if code == wanted]
    ok = min(len(success), expected)
    failures = Counter(f"answered {code}" for code in finals if code != wanted)
    answered = sum(1 for code in finals if code == wanted)
    if answered > ok:
        failures["answered 200 but did not complete (BYE)"] += answered - ok
    silent = expected - ok - sum(failures.values())
    if silent > 0:
        failures["no final answer (timeout or unexpected message)"] += silent
    result = Result(what, expected, ok, failures, rtts_ms, label)
    if sipp_failed:
        result.notes.append(f"SIPp counted {sipp_failed} failed")
    return result


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of non-empty `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summary(result: Result) -> list[str]:
    """The lines the kit prints."""
    lines = [f"{result.what}: {result.ok} ok, {result.failed} failed (of {result.expected})"]
    for reason, n in result.failures.most_common():
        lines.append(f"  {n} x {reason}")
    if result.rtts_ms:
        r = result.rtts_ms
        lines.append(f"response time ms ({result.rtt_label}, n={len(r)}): min {min(r):.0f}  "
                     f"p50 {percentile(r, 50):.0f}  p95 {percentile(r, 95):.0f}  max {max(r):.0f}")
    lines += result.notes
    if result.workdir:
        lines.append(f"SIPp files: {result.workdir}")
    return lines


# --- the runs: SIPp processes at the edges ----------------------------------------------


def default_local_ip(target: Target) -> str:
    """The address this host sends from to reach `target` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((target.host, target.port))
            return s.getsockname()[0]
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def reachable(target: Target) -> bool:
    from kemi_tools.stack.process import sip_options_ok

    return any(sip_options_ok(target.host, target.port, PROBE_TIMEOUT) for _ in range(PROBE_TRIES))


def sipp_trouble(name: str, out: SippResult) -> list[str]:
    """A line when SIPp itself failed (could not bind, bad scenario, killed), with its last words.

    Exit 0 (all ok) and 1 (some calls failed) are the normal ones; the counts say the rest.
    """
    if out.rc in (0, 1) and not out.killed:
        return []
    last = out.errors[-1] if out.errors else ""
    how = "was killed after its timeout" if out.killed else f"exited with status {out.rc}"
    return [f"{name} SIPp {how}" + (f": {last[-300:]}" if last else "")]


def run(opts: Options) -> Result:
    if opts.probe and not reachable(opts.target):
        return Result(_WHAT[opts.scenario], opts.count, 0,
                      Counter({f"no SIP answer from {opts.target.hostport} to OPTIONS ({PROBE_TRIES} tries, "
                               f"{PROBE_TIMEOUT:g} s each): is the proxy running there, is the port right?":
                               opts.count}))
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix=f"kemi-kit-{opts.scenario}-"))
    result = _RUNS[opts.scenario](opts, workdir)
    result.workdir = workdir
    return result


def run_register(opts: Options, workdir: Path) -> Result:
    rows = [auth_row(u.name, u.password, opts.domain) for u in opts.users]
    out = _client(opts, workdir, "register", rows, opts.count, opts.port,
                  keys={"contact_port": opts.port, "expires": REGISTER_EXPIRES}).run()
    finals = out.values("final")
    result = outcome("registrations", opts.count, finals, [c for c in finals if c == "200"],
                     "REGISTER to final answer, challenge included", out.rtts_ms, out.sipp_count("FailedCall"),
                     opts.expect)
    result.notes += sipp_trouble("the registering", out)
    return result


def run_call(opts: Options, workdir: Path) -> Result:
    if len(opts.users) < 2:
        raise KitError("call needs two users: the first takes the calls, the others call it "
                       "(--users 2001:123456,2002:123456)")
    callee, callers = opts.users[0], opts.users[1:]
    uas = _sipp("callee", workdir, opts.local_ip, opts.callee_port, calls=opts.count,
                timeout=opts.run_timeout, recv_timeout=opts.run_timeout).start()
    try:
        reg = _register_callee(opts, workdir, callee, REGISTER_EXPIRES)
        if reg.values("final") != ["200"]:
            answer = ", ".join(reg.values("final")) or "no answer"
            return Result("calls", opts.count, 0, Counter({
                f"the callee {callee.name} could not register ({answer}): check its password and "
                f"--domain": opts.count}))
        rows = [auth_row(u.name, u.password, opts.domain, opts.number or callee.name) for u in callers]
        out = _client(opts, workdir, "call", rows, opts.count, opts.port,
                      sets={"hold_ms": opts.hold_ms}).run()
        # the callee logs each BYE it answered; wait for those the caller saw answered
        deadline = time.monotonic() + CALLEE_GRACE
        while not uas.exited() and uas.logged("bye") < len(out.values("bye")) and time.monotonic() < deadline:
            time.sleep(0.1)
        callee_out = uas.wait(timeout=0) if uas.exited() else None
    finally:
        uas.stop()
        # best effort: leave no contact pointing at a SIPp that is gone
        _register_callee(opts, workdir, callee, 0)
    result = outcome("calls", opts.count, out.values("final"), out.values("bye"),
                     "INVITE to its final answer, challenge included",
                     out.rtts_ms, out.sipp_count("FailedCall"), opts.expect)
    result.notes += sipp_trouble("the calling", out)
    if callee_out is not None and callee_out.rc not in (0, 1):   # it exited early: it never took calls
        result.notes += sipp_trouble("the callee", callee_out)
    return result


def run_options(opts: Options, workdir: Path) -> Result:
    user = opts.users[0] if opts.users else User("kit", "")
    out = _client(opts, workdir, "options", [f"{user.name};{opts.domain}"], opts.count, opts.port).run()
    finals = out.values("final")
    result = outcome("pings", opts.count, finals, [c for c in finals if c == "200"],
                     "OPTIONS to its answer", out.rtts_ms, out.sipp_count("FailedCall"), opts.expect)
    result.notes += sipp_trouble("the pinging", out)
    return result


def _register_callee(opts: Options, workdir: Path, callee: User, expires: int) -> SippResult:
    return _sipp("register", workdir / f"callee-register-{expires}", opts.local_ip, free_port(opts.local_ip),
                 target=opts.target.hostport, rows=[auth_row(callee.name, callee.password, opts.domain)],
                 keys={"contact_port": opts.callee_port, "expires": expires},
                 timeout=opts.recv_timeout * 3, recv_timeout=opts.recv_timeout).run()


def _client(opts: Options, workdir: Path, role: str, rows: list[str], calls: int, port: int,
            keys: dict | None = None, sets: dict | None = None) -> Sipp:
    return _sipp(role, workdir, opts.local_ip, port, target=opts.target.hostport, rows=rows,
                 keys=keys or {}, sets=sets or {}, calls=calls, rate=opts.rate,
                 timeout=opts.run_timeout, recv_timeout=opts.recv_timeout)


def _sipp(role: str, workdir: Path, local_ip: str, port: int, **kw) -> Sipp:
    """A SIPp of the kit: its files named after its role (call-PORT.log ...), its clock at 1 ms."""
    return Sipp(SCENARIO_FILES[role], workdir, local_ip, port, name=role, timer_resol_ms=TIMER_RESOLUTION_MS, **kw)


_RUNS = {"register": run_register, "call": run_call, "options": run_options}
_WHAT = {"register": "registrations", "call": "calls", "options": "pings"}
SCENARIO_NAMES = tuple(_RUNS)
