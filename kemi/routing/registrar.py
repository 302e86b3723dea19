"""The registrar part: who may use us (digest auth), where users are (save, lookup).

authenticate   route[AUTH] for an untrusted source: auth_db checks the credentials in C
save           route[REGISTRAR]: registrar save() into usrloc (MySQL per usrloc_db_mode)
find_contacts  route[LOCATION]: registrar lookup(); no contact -> 404 / 480 (never silence)

Credentials are checked by auth_db in C, contacts saved and looked up by registrar/usrloc
in C; Python only decides what to do with their answers.
"""
from __future__ import annotations

from collections.abc import Callable

from kemi import sip
from kemi.cluster.sync import RETRY_AFTER
from kemi.message import Message
from kemi.names import DONE, LOCATION_TABLE, NEXT, SUBSCRIBER_TABLE
from kemi.nat.part import Nat
from kemi.observe.metrics import (
    CALL_ERROR,
    CALL_NOT_FOUND,
    CALL_REJECTED,
    CALL_UNAVAILABLE,
    REG_ERROR,
    REG_OK,
    UNAVAILABLE_SYNCING,
)
from kemi.observe.part import Observer
from kemi.security.part import Screen
from kemi.security.uri import unroutable_user
from kemi.store.subscribers import MAX_USERNAME

# methods that keep the credentials header: the registrar / presence server needs it
KEEP_CREDENTIALS = frozenset({"REGISTER", "PUBLISH"})


class Registrar:
    def __init__(self, ksr, realm: str, subscribers, observe: Observer, screen: Screen, nat: Nat,
                 reply: Callable[[sip.Reply], None], reply_error: Callable[[], int] | None = None,
                 location_complete: Callable[[], bool] = lambda: True):
        self.ksr, self.realm, self.subscribers = ksr, realm, subscribers
        self.observe, self.screen, self.nat, self.reply = observe, screen, nat, reply
        # save() failed: the answer from its internal error code (kemi/features.py)
        self.reply_error = reply_error or ksr.sl.sl_reply_error
        # cluster: False while this node is still receiving its location set from its peers
        self.location_complete = location_complete

    # route[AUTH], for a source that is not trusted by address
    def authenticate(self, msg: Message) -> bool:
        """Every initial request from an untrusted source proves it is a subscriber."""
        ksr, realm = self.ksr, self.realm
        rc = ksr.auth_db.auth_check(realm, SUBSCRIBER_TABLE, sip.AUTH_CHECK_IDS)
        if rc == sip.AUTH_USER_MISMATCH:
            # valid password, but From/To names somebody else (or a foreign domain)
            ksr.notice(f"kemi: identity mismatch for authenticated user: {msg.describe()}\n")
            self.reply(sip.FROM_MISMATCH)
            self.observe.note_rejected(msg, sip.FROM_MISMATCH.code)
            return DONE
        if rc < 0:
            self.observe.note_wrong_credentials(msg, rc)
            if self.screen.count_failed_auth(msg, rc):      # too many guesses from this source: banned
                return DONE
            # wrong password and unknown user get the very same challenge (no enumeration)
            ksr.auth.auth_challenge(realm, sip.CHALLENGE_QOP_AUTH)
            return DONE
        if msg.method not in KEEP_CREDENTIALS:
            ksr.auth.consume_credentials()
        return NEXT

    # route[REGISTRAR], for a REGISTER
    def save(self, msg: Message) -> None:
        self.nat.mark_registration()
        if self.ksr.registrar.save(LOCATION_TABLE, 0) < 0:
            self.reply_error()
            self.observe.note_registration(msg, REG_ERROR, sip.SERVER_ERROR.code)
        else:
            self.observe.note_registration(msg, REG_OK, sip.OK_KEEPALIVE.code)

    # route[LOCATION]
    def find_contacts(self, msg: Message) -> bool:
        """True: lookup() set the R-URI (and a branch per further contact): relay it.
        False: there is nobody to relay to, and the request has been answered."""
        ksr = self.ksr
        refusal = unroutable_user(msg.ruri_user, MAX_USERNAME)     # kemi/security/uri.py
        rc = ksr.registrar.lookup(LOCATION_TABLE) if refusal is None else sip.LOOKUP_NO_CONTACT
        if rc > 0:
            return True
        ksr.tm.t_newtran()          # answer statefully: retransmissions get the same reply
        if refusal is not None:
            reply, why = refusal
            ksr.info(f"kemi: {why}, answered {reply.code}: {msg.describe()}\n")
            self.reply(reply)
            self.observe.note_call(msg, CALL_REJECTED, reply.code)
        elif rc == sip.LOOKUP_METHOD_UNSUPPORTED:
            self.reply(sip.METHOD_NOT_ALLOWED)
            self.observe.note_call(msg, CALL_REJECTED, sip.METHOD_NOT_ALLOWED.code)
        elif rc == sip.LOOKUP_NO_CONTACT and not self.location_complete():
            # the contact may be on its way (cluster sync): "try again", never "not registered"
            ksr.info(f"kemi: cluster: location set incomplete, answered 503: {msg.describe()}\n")
            ksr.hdr.append_to_reply(f"Retry-After: {RETRY_AFTER}\r\n")
            self.reply(sip.SERVICE_UNAVAILABLE)
            self.observe.note_503(msg, UNAVAILABLE_SYNCING)
        elif rc == sip.LOOKUP_NO_CONTACT:
            reply = self.no_contact_reply(msg.ruri_user)
            self.reply(reply)
            self.observe.note_call(msg, CALL_NOT_FOUND if reply is sip.NOT_FOUND else CALL_UNAVAILABLE, reply.code)
        else:
            ksr.err(f"kemi: location lookup failed ({rc}): {msg.describe()}\n")
            self.reply(sip.SERVER_ERROR)
            self.observe.note_call(msg, CALL_ERROR, sip.SERVER_ERROR.code)
        return False

    def no_contact_reply(self, user: str) -> sip.Reply:
        """404 for a user we do not have, 480 for a subscriber who is not registered.

        When the DB cannot tell (down), 480: it is temporary, and a caller retries later.
        """
        exists = self.subscribers.exists(user)
        return sip.NOT_FOUND if exists is False else sip.TEMPORARILY_UNAVAILABLE
