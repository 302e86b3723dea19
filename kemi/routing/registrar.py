"""route[AUTH], route[REGISTRAR] and route[LOCATION]: who may use us, and where users are.

Credentials are checked by auth_db in C, contacts saved and looked up by registrar/usrloc
in C; Python only decides what to do with their answers.
"""
from __future__ import annotations

from kemi import sip
from kemi.names import FLB_NATB, FLB_NATSIPPING, FLT_NATS
from kemi.observe.metrics import (CALL_CONTACT, CALL_ERROR, CALL_NOT_FOUND, CALL_REJECTED, CALL_UNAVAILABLE,
                                  REG_ERROR, REG_OK, SIDE_NONE)
from kemi.routing.message import Message
from kemi.routing.request import DONE, NEXT
from kemi.security.uri import unroutable_user
from kemi.store.subscribers import MAX_USERNAME

LOCATION_TABLE = "location"
SUBSCRIBER_TABLE = "subscriber"
# methods that keep the credentials header: the registrar / presence server needs it
KEEP_CREDENTIALS = frozenset({"REGISTER", "PUBLISH"})


class RegistrarRoutes:

    # route[AUTH]
    def route_auth(self, msg: Message) -> bool:
        """Every initial request from an untrusted source proves it is a subscriber."""
        if self.is_trusted_source(msg):
            return NEXT
        ksr, realm = self.ksr, self.settings.sip.domain
        rc = ksr.auth_db.auth_check(realm, SUBSCRIBER_TABLE, sip.AUTH_CHECK_IDS)
        if rc == sip.AUTH_USER_MISMATCH:
            # valid password, but From/To names somebody else (or a foreign domain)
            ksr.notice(f"kemi: identity mismatch for authenticated user: {msg.describe()}\n")
            self.reply(sip.FROM_MISMATCH)
            self.note_rejected(msg, sip.FROM_MISMATCH.code)
            return DONE
        if rc < 0:
            self.note_wrong_credentials(msg, rc)
            if self.note_failed_auth(msg, rc):      # too many guesses from this source: banned
                return DONE
            # wrong password and unknown user get the very same challenge (no enumeration)
            ksr.auth.auth_challenge(realm, sip.CHALLENGE_QOP_AUTH)
            return DONE
        if msg.method not in KEEP_CREDENTIALS:
            ksr.auth.consume_credentials()
        return NEXT

    def is_trusted_source(self, msg: Message) -> bool:
        """Sources allowed without digest auth. None on a plain registrar; the SBC adds gateways."""
        return False

    def is_listed_gateway(self, msg: Message) -> bool:
        """A configured gateway (never flood-banned). None on a plain registrar; see SbcRoutes."""
        return False

    # route[REGISTRAR]
    def route_registrar(self, msg: Message) -> bool:
        if msg.method != "REGISTER":
            return NEXT
        ksr = self.ksr
        if ksr.isflagset(FLT_NATS):
            ksr.setbflag(FLB_NATB)
            ksr.setbflag(FLB_NATSIPPING)
        if ksr.registrar.save(LOCATION_TABLE, 0) < 0:
            ksr.sl.sl_reply_error()
            self.note_registration(msg, REG_ERROR, sip.SERVER_ERROR.code)
        else:
            self.note_registration(msg, REG_OK, sip.OK_KEEPALIVE.code)
        return DONE

    # route[LOCATION]
    def route_location(self, msg: Message) -> None:
        ksr = self.ksr
        refusal = unroutable_user(msg.ruri_user, MAX_USERNAME)     # kemi/security/uri.py
        rc = ksr.registrar.lookup(LOCATION_TABLE) if refusal is None else sip.LOOKUP_NO_CONTACT
        if rc > 0:
            self.route_relay(msg)
            self.note_call(msg, CALL_CONTACT, egress=msg.egress or SIDE_NONE)
            return
        ksr.tm.t_newtran()          # answer statefully: retransmissions get the same reply
        if refusal is not None:
            reply, why = refusal
            ksr.info(f"kemi: {why}, answered {reply.code}: {msg.describe()}\n")
            self.reply(reply)
            self.note_call(msg, CALL_REJECTED, reply.code)
        elif rc == sip.LOOKUP_METHOD_UNSUPPORTED:
            self.reply(sip.METHOD_NOT_ALLOWED)
            self.note_call(msg, CALL_REJECTED, sip.METHOD_NOT_ALLOWED.code)
        elif rc == sip.LOOKUP_NO_CONTACT:
            reply = self.no_contact_reply(msg.ruri_user)
            self.reply(reply)
            self.note_call(msg, CALL_NOT_FOUND if reply is sip.NOT_FOUND else CALL_UNAVAILABLE, reply.code)
        else:
            ksr.err(f"kemi: location lookup failed ({rc}): {msg.describe()}\n")
            self.reply(sip.SERVER_ERROR)
            self.note_call(msg, CALL_ERROR, sip.SERVER_ERROR.code)

    def no_contact_reply(self, user: str) -> sip.Reply:
        """404 for a user we do not have, 480 for a subscriber who is not registered.

        When the DB cannot tell (down), 480: it is temporary, and a caller retries later.
        """
        exists = self.subscribers.exists(user)
        return sip.NOT_FOUND if exists is False else sip.TEMPORARILY_UNAVAILABLE
