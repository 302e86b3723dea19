#!/usr/bin/python3
"""The kemi image's entry point (docker/Dockerfile, docker/compose.yaml).

    entrypoint.py kamailio          check the settings (every problem), create missing tables
                                    (KEMI_PROVISION_DB=1), render, exec Kamailio in the foreground
    entrypoint.py rtpengine         load the relay's per-source packet limit (nftables, in the
                                    host's network: the service needs NET_ADMIN), then exec
                                    rtpengine with the settings' [media.rtpengine]
    entrypoint.py mariadb           exec MariaDB on its unix socket only (/run/mysqld, shared with
                                    the kamailio container; no network); a new data folder first
    entrypoint.py health-kamailio   exit 0 when Kamailio answers an OPTIONS on its health socket
                                    (overload.health_listen), else on its first SIP socket
    entrypoint.py health-rtpengine  exit 0 when rtpengine answers an ng ping
    entrypoint.py health-mariadb    exit 0 when MariaDB answers a query on its socket

The settings are the ones `make install` put in KAMAILIO_DIR (default /etc/kamailio) with the
KEMI__SECTION__KEY environment variables on top (the settings loader applies them), so the
services configured by one compose environment block see the same values; Kamailio itself
inherits the environment and its mod_init loads the same settings.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

KAMAILIO_DIR = Path(os.environ.get("KAMAILIO_DIR", "/etc/kamailio"))
sys.path.insert(0, str(KAMAILIO_DIR))            # the installed package, as Kamailio imports it
# kemi_tools (starting daemons, health checks) from the source tree this file is in: make
# install copies only the kemi package, which is all Kamailio loads
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
SETTINGS_FILE = KAMAILIO_DIR / "settings.toml"
HEALTH_TIMEOUT = 2.0                              # seconds; compose retries on its own


def load():
    from kemi.settings import load_settings
    return load_settings(SETTINGS_FILE)


def kamailio() -> int:
    from kemi.__main__ import check
    from kemi.settings import write_kamailio_defines
    from kemi_tools.stack.kamailio import command

    file, problems = check(str(SETTINGS_FILE))
    if problems:
        print(f"kemi: {file} with the KEMI__ variables has {len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    settings = load()
    if os.environ.get("KEMI_PROVISION_DB") == "1":
        # MariaDB's socket is shared with this container (compose volume): root by unix_socket
        from kemi_tools.stack import mariadb
        created = mariadb.provision(settings)
        print(f"kemi: database ready ({'created ' + ', '.join(created) if created else 'all tables present'})")
    write_kamailio_defines(settings, KAMAILIO_DIR)
    Path(settings.runtime.dir).mkdir(parents=True, exist_ok=True)
    os.chdir(KAMAILIO_DIR)                        # include_file looks in the working directory first
    argv = command(Path("kamailio.cfg"))        # through env PYTHONHOME=: the system's Python
    sys.stdout.flush()                            # exec drops what is still buffered (a pipe, a log file)
    os.execvp(argv[0], argv)


def rtpengine() -> int:
    from kemi_tools.stack import relay_guard
    from kemi_tools.stack.rtpengine import argv
    daemon = load().media.rtpengine
    try:
        relay_guard.apply(daemon)
    except relay_guard.GuardError as exc:
        print(f"kemi: {exc} (compose.yaml gives the rtpengine service cap_add: NET_ADMIN)", file=sys.stderr)
        return 1
    cmd = argv(daemon)
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)


def mariadb() -> int:
    from kemi_tools.stack import mariadb as db
    db.prepare_dirs()
    argv = db.server_argv(networking=False)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def health_mariadb() -> int:
    from kemi_tools.stack import mariadb as db
    return 0 if db.is_up() else 1


def health_kamailio() -> int:
    from kemi_tools.stack.process import sip_options_ok
    settings = load()
    if settings.overload.health_listen:     # its own worker: answered even while the SIP sockets queue
        host, _, port = settings.overload.health_listen.rpartition(":")
        return 0 if sip_options_ok(host.strip("[]"), int(port), timeout=HEALTH_TIMEOUT) else 1
    first = settings.sip.listen[0]
    return 0 if sip_options_ok(first.host, first.port, timeout=HEALTH_TIMEOUT) else 1


def health_rtpengine() -> int:
    from kemi_tools.stack.ng import NgClient
    return 0 if NgClient(load().media.rtpengine.ng_address, timeout=HEALTH_TIMEOUT).ping() else 1


COMMANDS = {"kamailio": kamailio, "rtpengine": rtpengine, "mariadb": mariadb,
            "health-kamailio": health_kamailio, "health-rtpengine": health_rtpengine,
            "health-mariadb": health_mariadb}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: entrypoint.py {'|'.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]]())
