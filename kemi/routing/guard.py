"""Every callback Kamailio makes runs guarded: no exception ever reaches Kamailio.

An exception escaping to app_python3 is logged by it and the request gets NO reply: the
caller waits for a timeout. So each callback runs on a fresh Message inside run(): any
exception becomes one log line with the Call-ID and where it happened, and a request the
route owns is answered (400 for bytes that are not UTF-8, 500 for anything else; never an
ACK).
"""
from __future__ import annotations

import traceback
from collections.abc import Callable

from kemi import sip
from kemi.message import Message, UndecodableValue, loggable

ROUTE_OK = 1     # what a ksr_* entry point returns to Kamailio


class Guard:
    def __init__(self, ksr, reply: Callable[[sip.Reply], None], message_class: type[Message] = Message):
        self.ksr, self.reply = ksr, reply
        # the sides part's message class: the SBC's carries its per-message state (SbcMessage)
        self.message_class = message_class

    def run(self, route: str, handler: Callable[[Message], None], answer: bool = False) -> int:
        """handler(Message) for the callback `route`; with `answer` (routes that own a
        request) a failure is answered."""
        msg = self.message_class(self.ksr)
        try:
            handler(msg)
        except UndecodableValue as exc:
            if answer:
                self.refuse_undecodable(msg, exc)
            else:
                self.failed(route, msg, exc)
        except Exception as exc:
            self.failed(route, msg, exc, answer=answer)
        return ROUTE_OK

    def refuse_undecodable(self, msg: Message, exc: UndecodableValue) -> None:
        """Bytes that are not UTF-8 where SIP wants UTF-8: 400 (no answer to an ACK), one line."""
        self.ksr.info(f"kemi: bad request, {exc.spec} is not UTF-8, answered 400: {msg.describe()}\n")
        if msg.printable("$rm") != "ACK":
            self.reply(sip.BAD_REQUEST)

    def failed(self, route: str, msg: Message, exc: BaseException, answer: bool = False) -> None:
        """One log line with the Call-ID and where it failed; a 500 unless it is an ACK."""
        ksr = self.ksr
        try:
            call_id, method = msg.printable("$ci"), msg.printable("$rm")
        except Exception:  # the message itself may be what broke
            call_id, method = "?", "?"
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
        ksr.err(loggable(f"kemi: {route} raised {type(exc).__name__}: {exc} [call-id={call_id} "
                         f"method={method}] at {where}") + "\n")
        if answer and method != "ACK":
            try:
                self.reply(sip.SERVER_ERROR)
            except Exception as reply_exc:
                ksr.err(f"kemi: could not send 500 for call-id={call_id}: {reply_exc}\n")
