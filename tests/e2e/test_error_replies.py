"""A request whose relay fails is answered from Kamailio's own error code, on 5.6 and 6.0.

The routing picks the function by feature detection (kemi/features.py): 5.8+'s
sl.send_reply_error (stateful: a transaction exists after a failed t_relay), else 5.6's
sl.sl_reply_error. Here the callee's registered contact names a transport Kamailio does not
listen on (SCTP), so t_relay() fails at once, with no network traffic at all.

What the caller sees differs: on 5.6.3 a stateless "(1/SL)" 500 and then the transaction's
own "(7/TM)" 500; on 6.0.1 one "(7/TM)" 500. (On 6.0.1 sl_reply_error gives that same single
reply here, checked: the choice itself is tested with the fake KSR of each version,
tests/unit/test_features.py and test_routes.py.)

Extensions 6600-6609 belong to this file.
"""
from __future__ import annotations

import re
import subprocess

from harness import stack
from harness.sipclient import SipClient, status
from harness.sipp import Sipp, auth_row


def test_a_call_to_a_contact_kamailio_cannot_reach_gets_tms_error_reply(db, proxy, tmp_path):
    db.add_subscriber("6600")
    db.add_subscriber("6601")
    contact = "sip:6600@127.0.0.1:15999;transport=sctp"
    with SipClient(proxy.address) as phone:
        aor = "sip:6600@127.0.0.1"
        reply = phone.request("REGISTER", "sip:127.0.0.1", from_uri=aor, to_uri=aor, user="6600",
                              password=stack.PASSWORD, headers={"Contact": f"<{contact}>", "Expires": "600"})
        assert status(reply) == 200
    assert db.locations("6600") == [contact]
    call = Sipp("uac_call.xml", tmp_path / "sipp", target=proxy.target, sets={"hold_ms": 100},
                rows=[auth_row("6601", stack.PASSWORD, stack.DOMAIN, "6600")]).run()
    assert call.finals == [500], call.stdout[-3000:]
    errors = [m.split("\r\n")[0].split("\n")[0] for m in call.received() if m.startswith("SIP/2.0 500")]
    # Kamailio's own error reply, never the routing's "500 Server Internal Error" (handler_failed)
    assert errors and all(e.startswith("SIP/2.0 500 I'm terribly sorry, server error occurred (") for e in errors)
    if kamailio_version() >= (5, 8):
        # send_reply_error: one final reply, the transaction's (stateful)
        assert errors == ["SIP/2.0 500 I'm terribly sorry, server error occurred (7/TM)"], errors
    else:
        # 5.6: sl_reply_error answers statelessly first (the transaction's own 500 follows)
        assert errors[0].endswith("(1/SL)"), errors
    assert "Traceback" not in proxy.log() and "failed in" not in proxy.log()


def kamailio_version() -> tuple[int, int]:
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
    major, minor = re.search(r"kamailio (\d+)\.(\d+)", out).groups()
    return int(major), int(minor)
