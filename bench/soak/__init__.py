"""`make soak`: a long run of realistic traffic against make run's stack, its memory watched.

    python3 -m bench.soak [--requests N] [--mode registrar|sbc|both] [--router module:Class] ...

net.py     the network namespaces: Kamailio and rtpengine in one, phones, gateways, a scanner
           and a password guesser in others (documentation addresses only)
stack.py   MariaDB (a database of the soak's own), rtpengine and Kamailio started as make run
           starts them (kemi_tools.stack), inside the proxy namespace
load.py    the traffic mix: SIPp streams (registrations and refreshes, calls with and without
           media, busy, unanswered and cancelled calls, OPTIONS keepalives, wrong passwords),
           the scanner, a `make reload` every few minutes
sample.py  what is sampled: every Kamailio process's RSS, pkg and shm, the Python memory
           reports (metrics.python_memory_interval), fds, MySQL connections, rtpengine
           sessions, transactions, contacts, htable items
judge.py   the slope check (Theil-Sen, after warm-up, per series, with a stated tolerance)
           and the leftovers check
report.py  JSON, PNG, the tables of docs/reliability.md
run.py     one soak phase, the CLI

docs/reliability.md says what is measured and judged, and the published figures.
"""
