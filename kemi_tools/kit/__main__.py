"""python3 -m kemi_tools.kit register|call|options --target HOST[:PORT] [options]: see docs/sipp-kit.md."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from kemi_tools.kit.runner import (SCENARIO_NAMES, KitError, Options, default_local_ip, free_port, parse_target,
                             parse_users, resolve, run, summary)
from kemi_tools.sipp import SIPP

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m kemi_tools.kit",
        description="Run a SIPp scenario against a SIP proxy and report calls ok/failed and response times. "
                    "Exit status 0 only when every registration/call/ping succeeded.")
    p.add_argument("scenario", choices=SCENARIO_NAMES,
                   help="register: each user registers; call: the first user registers and takes the calls, "
                        "the others call it (INVITE with digest, 180, 200, ACK, BYE); options: OPTIONS pings")
    p.add_argument("--target", required=True, help="the proxy, HOST[:PORT] (port 5060 by default)")
    p.add_argument("--domain", help="the users' SIP domain (default: the target's host)")
    p.add_argument("--users", default="", help="USER:PASSWORD,USER:PASSWORD (register, call)")
    p.add_argument("--rate", type=float, default=5, help="new registrations/calls/pings per second (default 5)")
    p.add_argument("--count", type=int, help="how many in total (default: one per user for register, else 1)")
    p.add_argument("--local-ip", help="address SIPp binds (default: the one this host reaches the target from)")
    p.add_argument("--port", type=int, default=0, help="the registering/calling SIPp's port (default: a free one)")
    p.add_argument("--callee-port", type=int, default=0, help="call: the callee SIPp's port (default: a free one)")
    p.add_argument("--hold-ms", type=int, default=100, help="call: how long each call stays up (default 100)")
    p.add_argument("--number", default="",
                   help="call: dial this number instead of the callee user (e.g. one your routing refuses)")
    p.add_argument("--expect", type=int, default=200,
                   help="the final answer that counts as success (default 200; e.g. 403 for a blocked number)")
    p.add_argument("--recv-timeout", type=float, default=5,
                   help="seconds to wait for each expected answer before the call counts as failed (default 5)")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds the whole run may take (default: count / rate + 30)")
    p.add_argument("--no-probe", action="store_true", help="skip the OPTIONS reachability check first")
    p.add_argument("--keep", type=Path, help="write SIPp's files (logs, messages, stats) into this folder")
    return p


def options_from(args: argparse.Namespace) -> Options:
    target = resolve(parse_target(args.target))
    users = parse_users(args.users) if args.users or args.scenario != "options" else []
    count = args.count if args.count is not None else (len(users) if args.scenario == "register" else 1)
    if count < 1 or args.rate <= 0:
        raise KitError("--count and --rate must be positive")
    if not 200 <= args.expect <= 699:
        raise KitError("--expect is a final SIP answer: 200 to 699")
    local_ip = args.local_ip or default_local_ip(target)
    return Options(args.scenario, target, args.domain or parse_target(args.target).host, users, count, args.rate,
                   local_ip, args.port or free_port(local_ip), args.callee_port or free_port(local_ip),
                   hold_ms=args.hold_ms, number=args.number, expect=args.expect, recv_timeout=args.recv_timeout,
                   timeout=args.timeout, probe=not args.no_probe, workdir=args.keep)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if shutil.which(SIPP) is None:
        print("kemi kit: sipp is not installed: apt-get install sip-tester", file=sys.stderr)
        return EXIT_USAGE
    try:
        opts = options_from(args)
        print(f"kemi kit: {opts.scenario} x{opts.count} at {opts.rate:g}/s -> {opts.target.hostport} "
              f"(domain {opts.domain}) from {opts.local_ip}", flush=True)
        result = run(opts)
    except KitError as exc:
        print(f"kemi kit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(summary(result)))
    return EXIT_OK if result.success else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
