"""The security glue: screen each request before anything else, count failed digest
attempts, drop stray replies. The decisions are plain functions in kemi/security/.

route_screen      first thing in route_reqinit: banned? flooding (pike)? a scanner? -> drop
route_validate    then RFC 3261 16.3 checks sanity does not make: URI scheme (416),
                  Proxy-Require (420)
sign_record_route / route_signed   the Record-Route of a dialog we accepted carries an HMAC
                  of its Call-ID; a loose-routed in-dialog request without it is refused
                  (kemi/security/dialog.py: otherwise To-tag + Route makes an open relay)
note_failed_auth  from route_auth when auth_check fails: counts guesses, bans at the limit
reply_screen      ksr_on_sl_reply (tm's on_sl_reply, kamailio.cfg): a reply that matches no
                  transaction of ours is dropped,
                  never forwarded statelessly to whatever its second Via names
Drops are silent (no SIP answer: an attacker learns nothing); each ban logs one line.
"""
from __future__ import annotations

from functools import cached_property

from kemi.observe.metrics import DROP_BANNED, DROP_FLOOD, DROP_SCANNER
from kemi.routing.message import Message
from kemi.routing.request import DONE, NEXT
from kemi import sip
from kemi.security import ban, dialog, uri
from kemi.security.scanner import ScannerFilter
from kemi.names import AUTH_FAILURE_TABLE, BAN_TABLE

REQUEST_LINE = "$(mb{line.at,0})"         # the first line of the raw message
# the Record-Route secret when settings have none: made at import, which app_python3 does
# once before Kamailio forks, so every worker process signs and checks with the same one
RUN_SECRET = dialog.new_secret()


class SecurityRoutes:

    @cached_property
    def own_addresses(self) -> frozenset:
        """Every address Kamailio listens on (sip.listen and, on the SBC, each side's sockets)."""
        return ban.own_addresses(listen.host for listen, _name in self.settings.listens)

    # a live reload imports this module again (a new RUN_SECRET): kemi/reload.py hands the
    # running secret to the new router, so calls set up before the reload keep passing
    run_secret: str = RUN_SECRET

    @cached_property
    def own_ipv4_text(self) -> frozenset:
        """The IPv4 own addresses as text: Kamailio prints an IPv4 $si canonically (dotted quad,
        no leading zeros), so a string lookup answers without parsing per request."""
        return frozenset(str(a) for a in self.own_addresses if a.version == 4)

    def from_own_address(self, msg: Message) -> bool:
        ip = msg.source_ip
        if ":" not in ip:
            return ip in self.own_ipv4_text
        return ban.is_own_address(ip, self.own_addresses)

    @property
    def route_secret(self) -> str:
        return self.settings.security.route_secret or self.run_secret

    @cached_property
    def scanner_filter(self) -> ScannerFilter:
        return ScannerFilter(self.settings.security.scanner_user_agents)

    # route[SCREEN] (called from route[REQINIT])
    def route_screen(self, msg: Message) -> bool:
        ksr, sec = self.ksr, self.settings.security
        # replies go back to the source port, never to a port the Via claims (no reflection)
        ksr.force_rport()
        if not sec.enabled:
            return NEXT
        from_us = self.from_own_address(msg)
        if not from_us:
            if ban.is_banned(ksr.htable.sht_get(BAN_TABLE, msg.source_ip)):
                self.note_drop(DROP_BANNED)
                return DONE                          # silently, and without a log line per packet
            # a listed gateway (SBC) carries many calls from one address: never flood-banned
            if (sec.flood_detection and not self.is_listed_gateway(msg)
                    and ban.is_flooding(ksr.pike.pike_check_req())):
                self.ban_source(msg, ban.Reason.FLOOD)
                self.note_drop(DROP_FLOOD)
                return DONE
        if self.scanner_filter.matches(msg.user_agent):
            if from_us:
                ksr.info(f"kemi: scanner request dropped: {msg.describe()}\n")
            else:
                self.ban_source(msg, ban.Reason.SCANNER)
            self.note_drop(DROP_SCANNER)
            return DONE
        return NEXT

    # route[VALIDATE] (called from route[REQINIT], after route[SCREEN])
    def route_validate(self, msg: Message) -> bool:
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

    def sign_record_route(self, msg: Message) -> None:
        """After record_route() on a dialog-forming request we accepted."""
        self.ksr.rr.add_rr_param(dialog.rr_param(self.route_secret, msg.call_id))

    def route_signed(self, msg: Message) -> bool:
        """After loose_route() > 0: did the Route that names us carry this dialog's token?"""
        if self.ksr.rr.check_route_param(dialog.route_param_pattern(self.route_secret, msg.call_id)) > 0:
            return True
        self.ksr.notice(f"kemi: in-dialog request with a Route we did not sign refused: {msg.describe()}\n")
        if msg.method != "ACK":
            self.reply(sip.FORBIDDEN)
        return False

    def note_failed_auth(self, msg: Message, auth_result: int) -> bool:
        """Count a failed digest attempt; True when the source is now banned (drop, no challenge)."""
        ksr, sec = self.ksr, self.settings.security
        if not (sec.enabled and sec.auth_failure_limit and ban.is_failed_guess(auth_result)):
            return False
        if self.from_own_address(msg):
            return False
        failures = ksr.htable.sht_inc(AUTH_FAILURE_TABLE, msg.source_ip)
        if not ban.should_ban_after_failures(failures, sec.auth_failure_limit):
            return False
        ksr.htable.sht_rm(AUTH_FAILURE_TABLE, msg.source_ip)
        self.ban_source(msg, ban.Reason.PASSWORD_GUESSING)
        return True

    def ban_source(self, msg: Message, reason: ban.Reason) -> None:
        ksr, ban_time = self.ksr, self.settings.security.ban_time
        ksr.htable.sht_seti(BAN_TABLE, msg.source_ip, 1)
        ksr.notice(ban.ban_log_line(msg.source_ip, reason, ban_time, msg.describe()))
        self.note_ban(reason)

    # tm on_sl_reply (or the core reply_route, if a site turns that callback on)
    def reply_screen(self, msg: Message) -> None:
        if self.ksr.tm.t_check_trans() < 0:
            self.ksr.set_drop()
