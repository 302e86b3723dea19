"""Names for the numbers the routes use: SIP replies and KSR function results."""
from typing import NamedTuple


class Reply(NamedTuple):
    code: int
    reason: str


OK_KEEPALIVE = Reply(200, "OK")
BAD_REQUEST = Reply(400, "Bad Request")
FORBIDDEN = Reply(403, "Forbidden")
FROM_MISMATCH = Reply(403, "Forbidden - From user does not match credentials")
NOT_RELAYING = Reply(403, "Forbidden - Not Relaying")
NOT_FOUND = Reply(404, "Not Found")
METHOD_NOT_ALLOWED = Reply(405, "Method Not Allowed")
TEMPORARILY_UNAVAILABLE = Reply(480, "Temporarily Unavailable")
UNSUPPORTED_URI_SCHEME = Reply(416, "Unsupported URI Scheme")
BAD_EXTENSION = Reply(420, "Bad Extension")
TOO_MANY_HOPS = Reply(483, "Too Many Hops")
ADDRESS_INCOMPLETE = Reply(484, "Address Incomplete")
NOT_ACCEPTABLE_HERE = Reply(488, "Not Acceptable Here")
SERVER_ERROR = Reply(500, "Server Internal Error")
SERVICE_UNAVAILABLE = Reply(503, "Service Unavailable")

MAX_FORWARDS = 10

# KSR functions answer with an int: > 0 success, < 0 failure, 0 "stop the script".
# tm.t_check_trans(): 0 = retransmission absorbed / CANCEL answered, stop here.
TRANS_HANDLED = 0
# registrar.lookup() failures
LOOKUP_NO_CONTACT = -1
LOOKUP_METHOD_UNSUPPORTED = -2
LOOKUP_ERROR = -3
# auth_db.auth_check() results (auth_db README, www_authenticate): -2 wrong password,
# -3 unknown user; -8 valid credentials but From/To name somebody else
AUTH_INVALID_PASSWORD = -2
AUTH_INVALID_USER = -3
AUTH_USER_MISMATCH = -8
# auth_check flags: 1 = From/To user must equal the authentication user and domains the realm
AUTH_CHECK_IDS = 1
# auth_challenge flags: 1 = offer qop=auth
CHALLENGE_QOP_AUTH = 1
# sanity_check() default message checks (as Kamailio's default cfg) and URI checks
SANITY_MSG_CHECKS = 17895
SANITY_URI_CHECKS = 7
# nat_uac_test(): 1 private Contact + 2 Via/source mismatch + 16 source port mismatch
NAT_TESTS = 19
# nat_uac_test(): 8 = the SDP has a private (RFC 1918 / 6598) address
NAT_TEST_SDP = 8
# nat_uac_test() on a reply: 1 private Contact + 8 private SDP (Via tests are about requests)
NAT_TESTS_REPLY = 9
