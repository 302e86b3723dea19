"""Security at the SIP edge: bans, floods, scanners, URI checks, the signed Record-Route.

ban.py       which auth results are guessing, when a source gets banned, what pike's answer means
scanner.py   is this User-Agent a SIP scanner's?
uri.py       URI schemes, Proxy-Require, R-URI users usrloc cannot look up
dialog.py    the signed Record-Route's token (an HMAC of the Call-ID)
part.py      the KSR parts: Screen / NoScreen (route[REQINIT]'s screen, failed-auth bans, stray
             replies) and RecordRouteSigner
settings.py  [security]

The state the screen decides on (ban list, failure counts) lives in Kamailio's htable, shared
by all processes (and, in a cluster, replicated over DMQ).
"""
