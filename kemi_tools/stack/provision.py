"""python3 -m kemi_tools.stack.provision [SETTINGS_FILE]

The database the settings name (database.url, database.ro_url), made ready on this host's
MariaDB as `make run` makes it: the database, its read-write and read-only users, and every
missing table from the installed Kamailio's own schema files (/usr/share/kamailio/mysql);
tables that exist keep their rows. Run it as root: it talks to MariaDB as its root user over
the local socket (Debian's MariaDB: unix_socket authentication). It also writes ~/.kamctlrc so
that `kamctl add USER PASSWORD` adds subscribers to that database at once.

SETTINGS_FILE: else $KEMI_SETTINGS, else /etc/kemi/settings.toml (the Debian package's).
"""
from __future__ import annotations

import os
import sys

from kemi.settings import SettingsError, load_settings
from kemi_tools.stack import mariadb
from kemi_tools.stack.process import StartError

PACKAGE_SETTINGS = "/etc/kemi/settings.toml"


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    path = argv[0] if argv else os.environ.get("KEMI_SETTINGS") or PACKAGE_SETTINGS
    try:
        settings = load_settings(path)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"kemi: {problem}", file=sys.stderr)
        return 1
    if not mariadb.is_up():
        print(f"kemi: MariaDB does not answer as root on {mariadb.SOCKET}: start it (systemctl start mariadb) "
              f"and run this as root", file=sys.stderr)
        return 1
    try:
        created = mariadb.provision(settings)
    except StartError as exc:
        print(f"kemi: {exc}", file=sys.stderr)
        return 1
    print(f"kemi: database of {settings.source} ready "
          f"({'created ' + ', '.join(created) if created else 'every table was there'})")
    kamctlrc = mariadb.write_kamctlrc(settings)
    print(f"kemi: wrote {kamctlrc} (kamctl add USER PASSWORD, SIP_DOMAIN={settings.sip.domain})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
