"""Start and stop the real parts (MariaDB, rtpengine, Kamailio) for `make run` and the tests.

Nothing here runs inside Kamailio. Every daemon is started directly (these machines have no
systemd), tracked by its PID and stopped by it.
"""
