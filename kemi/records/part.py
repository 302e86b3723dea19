"""The records part: what acc writes for each call, set where the routing knows it.

acc (kamailio-common.cfg, settings records.enabled) writes one row per transaction whose
request carries FLT_ACC (also when it fails: FLT_ACC_FAILED), with the extra columns taken from
the transaction's AVPs (kemi/records/schema.py EXTRAS). This part sets the flags and the AVPs:

on_call         request route, an initial INVITE that passed AUTH: who calls (caller, source
                side and kind), what was dialed, when
on_relay        route[RELAY]: an INVITE: where it goes (routed R-URI, next hop, destination
                side and kind); a BYE: when, its Reason (Q.850), the media figures rtpengine
                has for the call (asked before the media part deletes the session); a CANCEL:
                when, its Reason
on_failure      failure_route: the failed answer's Reason, who ended the call
on_failover     failure_route, after the SBC sent the INVITE to the next gateway
refusing        Router.reply in the request route, before it answers a call with a final error
                (404, 480, 488, 503, ...): the proxy ended it. With a transaction (the
                registrar's answers are stateful) acc writes its row as the reply goes out;
refused         without one, after the reply: the row is written by acc_db_request
replay          rtimer (Router.ksr_records_replay): the spool into the table (spool.py)

Records never stop a call: anything failing here is one log line and the call goes on.
With records.enabled = false the Router builds NoRecords: nothing set, no acc loaded.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kemi.message import Message
from kemi.names import FLT_ACC, FLT_ACC_FAILED
from kemi.records import reason, spool
from kemi.records.media import call_media
from kemi.records.schema import KIND_DOMAIN, KIND_EXTENSION, KIND_GATEWAY, PROXY, TABLE, avp

if TYPE_CHECKING:
    from kemi import sip
    from kemi.settings import Settings

# what the view takes the times from: set in the request route, µs as acc's time_exact
RTIME = avp("rtime")
CALLER, DIALED, ROUTED, HOP = avp("caller"), avp("dialed"), avp("routed"), avp("hop")
SRC_SIDE, SRC_KIND, SRC = avp("src_side"), avp("src_kind"), avp("src")
DST_SIDE, DST_KIND, DST = avp("dst_side"), avp("dst_kind"), avp("dst")
ATTEMPTS, Q850, REASON, ENDED = avp("attempts"), avp("q850"), avp("reason"), avp("ended")
REASON_HEADER = "$hdr(Reason)"
REPLY_REASON_HEADER = "$T_rpl($hdr(Reason))"     # failure_route: the winning reply's header
ROTATE_RPC = json.dumps({"jsonrpc": "2.0", "method": "flatstore.k_rotate", "id": 1})
# Router.reply: answers that are no call outcome (a challenge is a step of the call)
NOT_AN_OUTCOME = frozenset({401, 407})
TRANSACTION_PV = "$T(id_index)"          # tmx: None when the request has no transaction
SPOOL_MODE = 0o750


def _stamp(now: float) -> str:
    return f"{now:.6f}".replace(".", "")


class Records:
    # tm's failure route has work on every INVITE (the failed answer's Reason, who ended it)
    wants_failures = True

    def __init__(self, ksr, settings: Settings, *, is_trusted: Callable[[Message], bool],
                 to_gateway: Callable[[Any], bool], media_stats: Callable[[], str | None] | None,
                 database=None, clock: Callable[[], float] = time.time):
        self.ksr, self.is_trusted, self.to_gateway = ksr, is_trusted, to_gateway
        # rtpengine's figures for the call (Rtpengine.query_stats), None with media off
        self.media_stats = media_stats
        self.spool_dir = Path(settings.records.spool_dir)
        self.database = database            # the replay's (kemi.store.mysql.Database), opened lazily
        self.clock = clock

    def child_init(self, rank: int) -> None:
        """The spool folder exists before db_flatstore needs it (it never creates it)."""
        try:
            self.spool_dir.mkdir(mode=SPOOL_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            self.ksr.err(f"kemi: records: cannot create the spool folder {self.spool_dir} ({exc}); "
                         f"records written while the database is down will be lost\n")

    # request route: an initial INVITE past AUTH
    def on_call(self, msg: Message) -> None:
        if msg.method != "INVITE":
            return
        try:
            ksr, pv = self.ksr, self.ksr.pv
            ksr.setflag(FLT_ACC)
            ksr.setflag(FLT_ACC_FAILED)
            pv.sets(RTIME, f"{self.clock():.6f}")
            pv.sets(CALLER, msg.printable("$fU"))
            pv.sets(DIALED, msg.printable("$rU"))
            if msg.ingress is not None:
                pv.sets(SRC_SIDE, msg.ingress.name)
            if self.is_trusted(msg):
                pv.sets(SRC_KIND, KIND_GATEWAY)
                pv.sets(SRC, f"{msg.source_ip}:{msg.source_port}")
            else:
                pv.sets(SRC_KIND, KIND_EXTENSION)
                pv.sets(SRC, msg.printable("$fU"))
        except Exception as exc:
            self.failed("on_call", msg, exc)

    # route[RELAY], before the media part (a BYE's figures before rtpengine's delete)
    def on_relay(self, msg: Message) -> None:
        method = msg.method
        try:
            if method == "INVITE" and not msg.in_dialog:
                self.routed(msg)
            elif method == "BYE":
                self.ending(msg)
                self.media(msg)
            elif method == "CANCEL":
                self.ending(msg)
        except Exception as exc:
            self.failed("on_relay", msg, exc)

    def routed(self, msg: Message) -> None:
        ksr, pv = self.ksr, self.ksr.pv
        ruri, hop = str(pv.gete("$ru")), str(pv.gete("$du"))      # now: lookup / ds_select_dst set them
        pv.sets(ROUTED, ruri)
        if hop:
            pv.sets(HOP, hop)
        if msg.egress:
            pv.sets(DST_SIDE, msg.egress)
        if self.to_gateway(msg):
            kind, dst = KIND_GATEWAY, hop or ruri
        elif ksr.is_myself(ksr.kx.get_ouri()):             # dialed to us (before lookup / DID map)
            kind, dst = KIND_EXTENSION, msg.printable("$rU")     # the user looked up (read before lookup)
        else:
            kind, dst = KIND_DOMAIN, msg.printable("$rd")
        pv.sets(DST_KIND, kind)
        pv.sets(DST, dst)
        pv.seti(ATTEMPTS, 1)

    def ending(self, msg: Message) -> None:
        """A BYE or CANCEL: its own row (acc), with when it came and why."""
        ksr, pv = self.ksr, self.ksr.pv
        ksr.setflag(FLT_ACC)
        ksr.setflag(FLT_ACC_FAILED)
        pv.sets(RTIME, f"{self.clock():.6f}")
        self.set_reason(msg.printable(REASON_HEADER) if ksr.hdr.is_present("Reason") > 0 else None)

    def media(self, msg: Message) -> None:
        """The BYE's row: rtpengine's figures per party (a: the BYE's sender, b: its receiver)."""
        if self.media_stats is None:
            return
        figures = call_media(self.media_stats(), msg.pv("$ft"), msg.pv("$tt"))
        if figures is None:
            return
        pv = self.ksr.pv
        for party, values in zip(("a", "b"), figures, strict=True):
            for column, value in values.columns(party).items():
                if isinstance(value, int):
                    pv.seti(avp(column), value)
                else:
                    pv.sets(avp(column), f"{value:.1f}")

    def set_reason(self, header: str | None) -> None:
        pv = self.ksr.pv
        cause = reason.q850_cause(header)
        text = reason.reason_text(header)
        if cause is None:
            pv.unset(Q850)
        else:
            pv.seti(Q850, cause)
        if text is None:
            pv.unset(REASON)
        else:
            pv.sets(REASON, text)

    # failure_route
    def on_failure(self, msg: Message, canceled: bool) -> None:
        try:
            ksr = self.ksr
            header = ksr.pv.gete(REPLY_REASON_HEADER)
            self.set_reason(str(header) if header else None)
            # the branch that failed got no final answer in time (tm's 408: ring or failover timeout)
            timed_out = not canceled and ksr.tm.t_branch_timeout() > 0
            ksr.pv.sets(ENDED, reason.ended_by_failure(canceled, timed_out))
        except Exception as exc:
            self.failed("on_failure", msg, exc)

    def on_failover(self, msg: Message) -> None:
        """The SBC sent the INVITE to the next gateway: the row names that one; the failed one's
        Reason and outcome are not this call's."""
        try:
            pv = self.ksr.pv
            hop = str(pv.gete("$du"))
            if hop:                     # (the side stays: the next gateway is of the same set)
                pv.sets(HOP, hop)
                pv.sets(DST, hop)
            attempts = pv.get(ATTEMPTS)
            pv.seti(ATTEMPTS, (attempts if isinstance(attempts, int) else 1) + 1)
            for name in (Q850, REASON, ENDED):
                pv.unset(name)
        except Exception as exc:
            self.failed("on_failover", msg, exc)

    # Router.reply, before the answer goes out
    def refusing(self, reply: sip.Reply) -> bool:
        """A call answered here, in the request route, with a final error: the proxy ended it.
        True when no transaction exists (acc will not see the reply: refused() writes the row);
        the failure route's answers are the transaction's, acc writes those."""
        if reply.code < 300 or reply.code in NOT_AN_OUTCOME:
            return False
        ksr = self.ksr
        try:
            if not ksr.isflagset(FLT_ACC) or ksr.tmx.t_is_request_route() < 0:
                return False
            ksr.pv.sets(ENDED, PROXY)
            return ksr.pv.get(TRANSACTION_PV) is None
        except Exception as exc:
            ksr.err(f"kemi: records: a refused call's record failed: {type(exc).__name__}: {exc}\n")
            return False

    # Router.reply, after a stateless answer
    def refused(self, reply: sip.Reply) -> None:
        ksr = self.ksr
        try:
            if ksr.acc.acc_db_request(f"{reply.code} {reply.reason}", TABLE) < 0:
                ksr.err(f"kemi: records: the record of a call refused with {reply.code} was not written "
                        f"[call-id={ksr.pv.gete('$ci')}]\n")
        except Exception as exc:
            ksr.err(f"kemi: records: a refused call's record failed: {type(exc).__name__}: {exc}\n")

    def failed(self, where: str, msg: Message, exc: Exception) -> None:
        try:
            call_id = msg.printable("$ci")
        except Exception:
            call_id = "?"
        self.ksr.err(f"kemi: records: {where} failed, the call goes on without it: "
                     f"{type(exc).__name__}: {exc} [call-id={call_id}]\n")

    # --- the spool (rtimer's process) ----------------------------------------------------

    def replay(self) -> int:
        """Insert the files taken on an earlier tick, then take the writers' files. Returns the
        rows inserted."""
        inserted = 0
        for path in spool.taken_files(self.spool_dir):
            done = self.insert_file(path)
            if done is None:
                break                                  # the database is still down: next tick
            inserted += done
        taken = []
        for path in spool.writer_files(self.spool_dir):
            target = spool.taken_name(path, _stamp(self.clock()))
            try:
                os.rename(path, target)
                taken.append(target)
            except OSError as exc:
                self.ksr.err(f"kemi: records: cannot take spool file {path}: {exc}\n")
        if taken:
            # every process reopens its file before its next record: the taken ones are complete
            # by the next tick
            self.ksr.jsonrpcs.exec(ROTATE_RPC)
            self.ksr.notice(f"kemi: records: {len(taken)} spool file(s) of records written while the "
                            f"database was down will be replayed: {', '.join(p.name for p in taken)}\n")
        return inserted

    def insert_file(self, path: Path) -> int | None:
        """One taken file into the table; None when the database did not take it."""
        from kemi.store.mysql import DatabaseUnavailable

        content = spool.read_file(path.read_text(encoding="utf-8", errors="replace"))
        if content.bad:
            bad = path.with_suffix(spool.BAD_SUFFIX)
            with open(bad, "a", encoding="utf-8") as out:
                out.writelines(line + "\n" for _, line, _ in content.bad)
            for number, _, why in content.bad[:5]:
                self.ksr.err(f"kemi: records: {path.name} line {number} is not a record ({why}); kept in {bad}\n")
        if content.rows:
            try:
                self.database.execute_many(spool.insert_sql(), content.rows)
            except DatabaseUnavailable as exc:
                self.ksr.warn(f"kemi: records: {len(content.rows)} spooled records not replayed yet: {exc}\n")
                return None
        path.unlink()
        if content.rows:
            self.ksr.notice(f"kemi: records: replayed {len(content.rows)} records spooled while the "
                            f"database was down ({path.name})\n")
        return len(content.rows)


class NoRecords:
    """records.enabled = false: nothing set, nothing written."""
    wants_failures = False

    def child_init(self, rank: int) -> None:
        pass

    def on_call(self, msg: Message) -> None:
        pass

    def on_relay(self, msg: Message) -> None:
        pass

    def on_failure(self, msg: Message, canceled: bool) -> None:
        pass

    def on_failover(self, msg: Message) -> None:
        pass

    def refusing(self, reply: sip.Reply) -> bool:
        return False

    def refused(self, reply: sip.Reply) -> None:
        pass

    def replay(self) -> int:
        return 0
