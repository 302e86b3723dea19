"""Security decisions at the SIP edge, as plain functions of plain values (no KSR inside).

scanner.py   is this User-Agent a SIP scanner's?
ban.py       which auth results are guessing, when a source gets banned, what pike's answer means

The route glue that calls them is kemi/routing/security.py (SecurityRoutes); the state they
decide on (ban list, failure counts) lives in Kamailio's htable, shared by all processes.
"""
