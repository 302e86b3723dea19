"""The security parts: the screen every request meets first, and the signed Record-Route.

Screen (NoScreen with security.enabled = false):

admit             route[REQINIT], first: banned? flooding (pike)? a scanner? -> silent drop
validate          then RFC 3261 16.3 checks sanity does not make: URI scheme (416),
                  Proxy-Require (420)
count_failed_auth from route[AUTH] when auth_check fails: counts guesses, bans at the limit
drop_stray_reply  tm's on_sl_reply (kamailio.cfg): a reply that matches no transaction of
                  ours is dropped, never forwarded statelessly to whatever its second Via names

Drops are silent (no SIP answer: an attacker learns nothing); each ban logs one line. With
security.enabled = false the Router builds NoScreen: no bans, floods or scanner drops (digest
auth and the URI checks stay).

RecordRouteSigner (kemi/security/dialog.py says why):
sign     after record_route() on a dialog-forming request we accepted: the Record-Route
         carries an HMAC of the Call-ID
signed   after loose_route() > 0: did the Route that names us carry this dialog's token?
         A loose-routed in-dialog request without it is refused (403; an ACK is dropped):
         otherwise a To tag and a Route header would make the proxy an open relay.

The decisions are plain functions beside this file (ban.py, scanner.py, uri.py, dialog.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kemi import sip
from kemi.message import Message
from kemi.names import AUTH_FAILURE_TABLE, BAN_TABLE, DONE, NEXT
from kemi.observe.metrics import DROP_BANNED, DROP_FLOOD, DROP_SCANNER
from kemi.observe.part import Observer
from kemi.security import ban, dialog, uri
from kemi.security.scanner import ScannerFilter

if TYPE_CHECKING:
    from kemi.settings import Settings

REQUEST_LINE = "$(mb{line.at,0})"         # the first line of the raw message


class Screen:
    def __init__(self, ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None],
                 is_listed_gateway: Callable[[Any], bool]):
        sec = settings.security
        self.ksr, self.observe, self.reply = ksr, observe, reply
        # a listed gateway (SBC) carries many calls from one address: never flood-banned
        self.is_listed_gateway = is_listed_gateway
        self.flood_detection = sec.flood_detection
        self.auth_failure_limit = sec.auth_failure_limit
        self.ban_time = sec.ban_time
        self.scanners = ScannerFilter(sec.scanner_user_agents)
        # every address Kamailio listens on (sip.listen and, on the SBC, each side's sockets)
        self.own_addresses = ban.own_addresses(listen.host for listen, _name in settings.listens)
        # the IPv4 ones as text: Kamailio prints an IPv4 $si canonically (dotted quad, no
        # leading zeros), so a string lookup answers without parsing per request
        self.own_ipv4_text = frozenset(str(a) for a in self.own_addresses if a.version == 4)

    def from_own_address(self, msg: Message) -> bool:
        ip = msg.source_ip
        if ":" not in ip:
            return ip in self.own_ipv4_text
        return ban.is_own_address(ip, self.own_addresses)

    # route[SCREEN] (the start of route[REQINIT])
    def admit(self, msg: Message) -> bool:
        ksr = self.ksr
        # replies go back to the source port, never to a port the Via claims (no reflection)
        ksr.force_rport()
        from_us = self.from_own_address(msg)
        if not from_us:
            if ban.is_banned(ksr.htable.sht_get(BAN_TABLE, msg.source_ip)):
                self.observe.note_drop(DROP_BANNED)
                return DONE                          # silently, and without a log line per packet
            if (self.flood_detection and not self.is_listed_gateway(msg)
                    and ban.is_flooding(ksr.pike.pike_check_req())):
                self.ban(msg, ban.Reason.FLOOD)
                self.observe.note_drop(DROP_FLOOD)
                return DONE
        if self.scanners.matches(msg.user_agent):
            if from_us:
                ksr.info(f"kemi: scanner request dropped: {msg.describe()}\n")
            else:
                self.ban(msg, ban.Reason.SCANNER)
            self.observe.note_drop(DROP_SCANNER)
            return DONE
        return NEXT

    # route[VALIDATE] (route[REQINIT], after route[SCREEN])
    def validate(self, msg: Message) -> bool:
        ksr = self.ksr
        if msg.method in ("ACK", "CANCEL"):
            return NEXT                              # never answered; tm and sanity handle them
        # $ru is empty when Kamailio cannot parse the URI (any non-SIP scheme): then the raw line
        ruri = msg.ruri or uri.request_line_uri(msg.pv(REQUEST_LINE))
        if uri.has_unsupported_scheme(ruri):
            ksr.info(f"kemi: unsupported URI scheme, answered 416: {msg.describe()}\n")
            self.reply(sip.UNSUPPORTED_URI_SCHEME)
            return DONE
        unsupported = uri.unsupported_extensions(msg.pv("$hdr(Proxy-Require)"))
        if unsupported:
            ksr.hdr.append_to_reply(f"Unsupported: {unsupported}\r\n")
            self.reply(sip.BAD_EXTENSION)
            return DONE
        return NEXT

    def count_failed_auth(self, msg: Message, auth_result: int) -> bool:
        """Count a failed digest attempt; True when the source is now banned (drop, no challenge)."""
        if not (self.auth_failure_limit and ban.is_failed_guess(auth_result)):
            return False
        if self.from_own_address(msg):
            return False
        ksr = self.ksr
        failures = ksr.htable.sht_inc(AUTH_FAILURE_TABLE, msg.source_ip)
        if not ban.should_ban_after_failures(failures, self.auth_failure_limit):
            return False
        ksr.htable.sht_rm(AUTH_FAILURE_TABLE, msg.source_ip)
        self.ban(msg, ban.Reason.PASSWORD_GUESSING)
        return True

    def ban(self, msg: Message, reason: ban.Reason) -> None:
        self.ksr.htable.sht_seti(BAN_TABLE, msg.source_ip, 1)
        self.ksr.notice(ban.ban_log_line(msg.source_ip, reason, self.ban_time, msg.describe()))
        self.observe.note_ban(reason)

    # tm on_sl_reply (or the core reply_route, if a site turns that callback on)
    def drop_stray_reply(self, msg: Message) -> None:
        if self.ksr.tm.t_check_trans() < 0:
            self.ksr.set_drop()


class NoScreen(Screen):
    """security.enabled = false: no bans, flood detection or scanner drops."""

    def admit(self, msg: Message) -> bool:
        self.ksr.force_rport()         # replies still go to the source port
        return NEXT

    def count_failed_auth(self, msg: Message, auth_result: int) -> bool:
        return False


# the Record-Route secret when settings have none: made at import, which app_python3 does
# once before Kamailio forks, so every worker process signs and checks with the same one.
# A live reload imports this module again (a new RUN_SECRET): kemi/reload.py hands the
# running secret to the new router (Router.take_over), so calls set up before it keep passing.
RUN_SECRET = dialog.new_secret()


class RecordRouteSigner:
    def __init__(self, ksr, configured_secret: str, reply: Callable[[sip.Reply], None]):
        self.ksr, self.reply = ksr, reply
        self.configured_secret = configured_secret      # security.route_secret ("" = none)
        self.run_secret = RUN_SECRET

    @property
    def secret(self) -> str:
        return self.configured_secret or self.run_secret

    def sign(self, msg: Message) -> None:
        self.ksr.rr.add_rr_param(dialog.rr_param(self.secret, msg.call_id))

    def signed(self, msg: Message) -> bool:
        if msg.route_param(dialog.ROUTE_PARAM) == dialog.route_token(self.secret, msg.call_id):
            return True
        self.ksr.notice(f"kemi: in-dialog request with a Route we did not sign refused: {msg.describe()}\n")
        if msg.method != "ACK":
            self.reply(sip.FORBIDDEN)
        return False
