"""`make run`: MariaDB, the kamailio database, kamctlrc, rtpengine, then Kamailio in the foreground.

Ctrl-C or SIGTERM stops what this started (by PID), and nothing else: a MariaDB that was
already running is left running.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from kemi.settings import PROJECT_ROOT, SettingsError, load_settings
from kemi_tools.stack import kamailio, mariadb, rtpengine
from kemi_tools.stack.process import StartError


class _Stop(Exception):
    pass


_stopping = False


def _raise_stop(signum, frame):
    # once: `make run` gets the same SIGTERM/SIGINT and forwards it to us, and a second
    # _Stop raised while the finally below stops the daemons would leave them running
    global _stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _stopping:
        return
    _stopping = True
    raise _Stop()


def main(argv: list[str]) -> int:
    try:
        settings = load_settings(argv[0] if argv else None)
    except SettingsError as exc:
        print(f"kemi: {exc}", file=sys.stderr)
        return 1
    if settings.environment:
        print(f"kemi: {settings.source} with environment overrides: "
              f"{', '.join(variable for variable, _ in settings.environment)}", flush=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    started = []
    try:
        db = mariadb.start(Path(settings.runtime.dir))
        if db:
            started.append(db)
            print(f"kemi: started MariaDB (pid {db.pid}, log {db.log})", flush=True)
        created = mariadb.provision(settings)
        print(f"kemi: database ready ({'created ' + ', '.join(created) if created else 'all tables present'})")
        print(f"kemi: wrote {mariadb.write_kamctlrc(settings)} (SIP_DOMAIN={settings.sip.domain})")
        media = settings.media
        if media.enabled and media.rtpengine.start:
            rtpe = rtpengine.start(media.rtpengine, Path(settings.runtime.dir))
            started.append(rtpe)
            print(f"kemi: rtpengine running (pid {rtpe.pid}), ng {media.rtpengine.listen_ng}, media on "
                  f"{', '.join(i.option for i in media.rtpengine.interfaces)} ports "
                  f"{media.rtpengine.port_min}-{media.rtpengine.port_max}; log: {rtpe.log}", flush=True)
        elif not media.enabled:
            print("kemi: media anchoring off (media.enabled = false): SDP passes untouched", flush=True)
        # kamailio-settings.cfg is rendered beside the project's kamailio.cfg, so plain
        # `kamailio -c -f kamailio.cfg` works too; Kamailio's log goes to this terminal
        kam = kamailio.start(settings, PROJECT_ROOT, log=None)
        started.append(kam)
        sockets = ", ".join(f"{listen.socket} ({name})" if name else listen.socket for listen, name in settings.listens)
        print(f"kemi: Kamailio running (pid {kam.pid}) on {sockets}, "
              f"domain {settings.sip.domain}. Ctrl-C stops.", flush=True)
        while all(d.alive() for d in started):
            time.sleep(0.5)
        dead = [d.name for d in started if not d.alive()]
        print(f"kemi: {', '.join(dead)} exited; stopping", file=sys.stderr)
        for d in started:
            if not d.alive():
                print(d.log_tail(), file=sys.stderr)
        return 1
    except _Stop:
        print("kemi: stopping")
        return 0
    except StartError as exc:
        print(f"kemi: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for d in reversed(started):
            d.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
