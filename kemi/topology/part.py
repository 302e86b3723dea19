"""Topology hiding's KSR part: what the Router asks about a hidden call, at each step.

Kamailio's topos module strips Via, Record-Route and Contact from what it sends (keeping them
in the database, put back on what comes in: in-dialog requests find their party after a
restart and on any node). This part does the rest of a hidden call, in the routes:

arriving      request_route, first: a request from a hidden call's far side carries the masked
              Call-ID; the routing sees the dialog's own from here on (msg.call_id; rtpengine
              is told it, msg.dialog_call_id), the wire keeps the mask, so tm's own replies to
              that side (100, 408, ...) carry the value it knows
relaying      route[RELAY], before media and t_relay: a new call, hidden or not
              (decisions.call_hidden); the storage check (503: topos would send it unhidden);
              the ;kth mark on our Record-Route; From / To on the SBC's own address (uac puts
              the originals back); the Call-ID masked. In dialog: the Call-ID flipped for the
              side it goes to
on_branch     branch_route: a hidden call to a gateway set gets the gateway as R-URI host (it
              held the SBC's address on the caller's side)
on_reply      onreply_route: the reply's Call-ID flipped the same way
failed        failure_route: a 3xx of a hidden call is answered with the SBC's own contacts
topos_event   topos's msg-sending event (an SBC where one side hides): a passing call's
              messages are left alone

Chosen once (Router.__init__): NoTopology when nothing hides, every method returns at once.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kemi import sip
from kemi.message import Message
from kemi.names import AVP_GATEWAY_SET, AVP_INGRESS, DONE, FLT_HIDDEN, NEXT
from kemi.observe.metrics import (CALL_REJECTED, TOPOLOGY_CALL_ID_TOO_LONG, TOPOLOGY_HIDDEN, TOPOLOGY_REDIRECT,
                                  TOPOLOGY_STORAGE_DOWN, UNAVAILABLE_TOPOLOGY)
from kemi.observe.part import Observer
from kemi.schema import bracket
from kemi.store.mysql import Database
from kemi.store.topology import TopologyStorage
from kemi.topology.callid import MAX_CALL_ID, PREFIX, CallIdMask
from kemi.topology.decisions import HIDE_RR_PARAM, call_hidden, redirect_contacts, topos_leaves_alone, uri_on_host
from kemi.topology.settings import enabled, hides_everything, hiding_sides

if TYPE_CHECKING:
    from kemi.settings import Settings

# requests the Router record-routes (its DIALOG_FORMING): they carry our Record-Route to mark
RECORD_ROUTED = frozenset({"INVITE", "SUBSCRIBE"})
# every Record-Route of the message topos is about to send, in one string
RECORD_ROUTES_PV = "$(hdr(Record-Route)[*])"
STORAGE_DOWN = sip.Reply(503, "Service Unavailable")
CALL_ID_TOO_LONG = sip.Reply(400, "Bad Request - Call-ID too long")
NO_REDIRECT_TARGET = sip.Reply(480, "Temporarily Unavailable")
REDIRECTION = range(300, 400)


def hidden_message_class(base: type[Message]) -> type[Message]:
    """`base` (Message, or the SBC's SbcMessage) with what topology hiding keeps per message."""

    # the base is chosen at start (Message, or the SBC's SbcMessage): a variable base mypy cannot check
    class HiddenMessage(base):  # type: ignore[misc,valid-type]
        __slots__ = ("dialog_call_id", "hidden")

        def __init__(self, ksr):
            super().__init__(ksr)
            self.dialog_call_id: str | None = None    # set: the wire carries the masked one
            self.hidden = False                       # the message belongs to a hidden call

        def see_call_id(self, call_id: str) -> None:
            """The routing sees `call_id` from now on; the message on the wire is unchanged."""
            self.see("call_id", call_id)
            self.dialog_call_id = call_id

    HiddenMessage.__name__ = HiddenMessage.__qualname__ = f"Hidden{base.__name__}"
    return HiddenMessage


def topology_for(ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None]):
    """Topology when anything hides (settings), else NoTopology: chosen once."""
    return Topology(ksr, settings, observe, reply) if enabled(settings) else NoTopology()


class Topology:
    def __init__(self, ksr, settings: Settings, observe: Observer, reply: Callable[[sip.Reply], None],
                 storage: TopologyStorage | None = None):
        self.ksr, self.observe, self.reply = ksr, observe, reply
        # the secret that signs the Record-Route keys the mask (settings require a fixed one)
        self.mask = CallIdMask(settings.cluster.secret or settings.security.route_secret)
        self.hiding = hiding_sides(settings)
        self.everything = hides_everything(settings)
        sbc = settings.sbc
        # the SBC's own address on each side: what a hidden call's From / To / redirect
        # contacts name there. The registrar keeps From / To (they name the domain, an AOR)
        self.side_hosts = {side.name: bracket(side.listen[0].host) for side in sbc.sides} if sbc.enabled else {}
        self.domain = settings.sip.domain
        # one connection per process, opened on the first new hidden call
        self.storage = storage or TopologyStorage(Database(settings.database.all_connect_args(), log=ksr.err))

    def message_class(self, base: type[Message]) -> type[Message]:
        return hidden_message_class(base)

    def close(self) -> None:
        self.storage.close()

    # --- request_route ------------------------------------------------------------------------

    def arriving(self, msg) -> None:
        """A request from a hidden call's far side: the routing sees the dialog's Call-ID."""
        call_id = msg.call_id
        if not call_id.startswith(PREFIX):
            return
        plain = self.mask.unmask(call_id)
        if plain is None:              # not one of ours (a forgery fails the tag): left as it is
            return
        msg.see_call_id(plain)
        msg.hidden = True

    # --- route[RELAY] -------------------------------------------------------------------------

    def relaying(self, msg) -> bool:
        """Before media and t_relay: NEXT, or DONE when the request was refused (answered)."""
        method = msg.method
        if method == "CANCEL":
            return NEXT        # tm builds the CANCEL from the INVITE it sent: Call-ID, From, To as sent
        if msg.in_dialog:
            return self.relaying_in_dialog(msg)
        if method == "ACK":
            return NEXT
        return self.relaying_new(msg)

    def relaying_in_dialog(self, msg) -> bool:
        if msg.dialog_call_id is not None:
            self.put_call_id(msg.dialog_call_id)         # from the far side: the caller's Call-ID back
        elif msg.route_param(HIDE_RR_PARAM) is not None and self.mask.can_mask(msg.call_id):
            self.put_call_id(self.mask.mask(msg.call_id))     # from the caller's side: masked
            msg.hidden = True
        else:
            return NEXT
        self.ksr.setflag(FLT_HIDDEN)
        return NEXT

    def relaying_new(self, msg) -> bool:
        ingress = msg.ingress.name if msg.ingress is not None else None
        if not call_hidden(ingress, msg.egress, self.hiding, self.everything):
            return NEXT
        ksr = self.ksr
        call_id = msg.call_id
        if not self.mask.can_mask(call_id):
            ksr.notice(f"kemi: topology: the Call-ID has more than {MAX_CALL_ID} bytes, it cannot be "
                       f"masked: answered {CALL_ID_TOO_LONG.code}: {msg.describe()}\n")
            self.reply(CALL_ID_TOO_LONG)
            self.observe.note_topology(TOPOLOGY_CALL_ID_TOO_LONG)
            self.observe.note_call(msg, CALL_REJECTED, CALL_ID_TOO_LONG.code)
            return DONE
        problem = self.storage.problem()
        if problem is not None:
            # topos would send this INVITE unchanged (its write fails): refused instead
            ksr.err(f"kemi: topology: storage unavailable ({problem}): new call refused with "
                    f"{STORAGE_DOWN.code}: {msg.describe()}\n")
            self.reply(STORAGE_DOWN)
            self.observe.note_topology(TOPOLOGY_STORAGE_DOWN)
            self.observe.note_503(msg, UNAVAILABLE_TOPOLOGY)
            return DONE
        ksr.setflag(FLT_HIDDEN)
        msg.hidden = True
        if msg.method in RECORD_ROUTED:
            ksr.rr.add_rr_param(f";{HIDE_RR_PARAM}")
        host = self.side_hosts.get(msg.egress)
        if host:           # the SBC (a side it leaves through): From / To name the SBC there
            ksr.uac.uac_replace_from_uri(uri_on_host(msg.pv("$fu"), host))
            ksr.uac.uac_replace_to_uri(uri_on_host(msg.pv("$tu"), host))
        self.put_call_id(self.mask.mask(call_id))
        self.observe.note_topology(TOPOLOGY_HIDDEN)
        return NEXT

    def put_call_id(self, value: str) -> None:
        """The Call-ID the relayed message carries (the parsed one, tm's and rtpengine's, stays)."""
        ksr = self.ksr
        ksr.hdr.remove("Call-ID")
        ksr.hdr.append(f"Call-ID: {value}\r\n")

    # which tm callbacks a relayed request of a hidden call needs
    def wants_replies(self, msg) -> bool:
        return msg.hidden and msg.method != "ACK"     # every reply's Call-ID is flipped (an ACK has none)

    def wants_failures(self, msg) -> bool:
        return msg.hidden and not msg.in_dialog       # a 3xx is answered here

    def wants_branch(self, msg) -> bool:
        # a new hidden call to a gateway set: each branch's R-URI host becomes its gateway
        return msg.hidden and not msg.in_dialog and bool(self.ksr.pv.gete(AVP_GATEWAY_SET))

    # --- tm callbacks -------------------------------------------------------------------------

    def on_branch(self, msg) -> None:
        """branch_route: the R-URI of a hidden gateway call named the SBC on the caller's side
        (the caller addressed the SBC); each branch names the gateway it goes to instead."""
        ksr = self.ksr
        if msg.in_dialog or ksr.isflagset(FLT_HIDDEN) <= 0 or not ksr.pv.gete(AVP_GATEWAY_SET):
            return
        host, port = ksr.pv.gete("$dd"), ksr.pv.gete("$dp")
        if host:
            ksr.sethost(host)
            if isinstance(port, int) and port > 0:
                ksr.pv.seti("$rp", port)

    def on_reply(self, msg) -> None:
        """onreply_route, every reply: a masked Call-ID (the far side's reply) goes back to the
        caller unmasked; a hidden call's plain one (the caller's side answering the far side's
        request) goes out masked."""
        call_id = msg.call_id
        if call_id.startswith(PREFIX):
            plain = self.mask.unmask(call_id)
            if plain is not None:
                msg.see_call_id(plain)
                self.put_call_id(plain)
                return
        if self.ksr.isflagset(FLT_HIDDEN) > 0 and self.mask.can_mask(call_id):
            self.put_call_id(self.mask.mask(call_id))

    def failed(self, msg, canceled: bool) -> None:
        """failure_route: a redirect (3xx) of a hidden call would hand the caller the far side's
        addresses (topos passes a 3xx's Contact unchanged): answered here with the same code, each
        contact's user on the SBC's own address on the caller's side; 480 when no contact has a
        user part."""
        ksr = self.ksr
        if canceled or msg.in_dialog or ksr.isflagset(FLT_HIDDEN) <= 0:
            return
        code = ksr.pv.gete("$T_reply_code")
        if not (isinstance(code, int) and code in REDIRECTION):
            return
        host = self.side_hosts.get(ksr.pv.gete(AVP_INGRESS)) or self.domain
        contacts = redirect_contacts([ksr.pv.gete("$T_rpl($hdr(Contact))") or ""], host)
        if contacts:
            for contact in contacts:
                ksr.hdr.append_to_reply(f"Contact: {contact}\r\n")
            reply = sip.Reply(code, ksr.pv.gete("$T_reply_reason") or "Redirection")
        else:
            reply = NO_REDIRECT_TARGET
        ksr.tm.t_reply(reply.code, reply.reason)
        ksr.info(f"kemi: topology: {code} of a hidden call answered {reply.code} with the SBC's own "
                 f"contacts {contacts}: {msg.describe()}\n")
        self.observe.note_topology(TOPOLOGY_REDIRECT)

    # --- topos's event callback (one SBC side hides) -----------------------------------------

    def topos_event(self) -> None:
        """Before topos strips an outgoing message: leave a passing call's alone (KSR.set_drop()
        in this event means "skip topology hiding", never "do not send")."""
        if topos_leaves_alone(self.ksr.pv.gete(RECORD_ROUTES_PV)):
            self.ksr.set_drop()


class NoTopology:
    """Nothing hides: every step returns at once (and topos is not loaded)."""

    def message_class(self, base: type[Message]) -> type[Message]:
        return base

    def close(self) -> None:
        pass

    def arriving(self, msg) -> None:
        pass

    def relaying(self, msg) -> bool:
        return NEXT

    def wants_replies(self, msg) -> bool:
        return False

    def wants_failures(self, msg) -> bool:
        return False

    def wants_branch(self, msg) -> bool:
        return False

    def on_branch(self, msg) -> None:
        pass

    def on_reply(self, msg) -> None:
        pass

    def failed(self, msg, canceled: bool) -> None:
        pass

    def topos_event(self) -> None:
        pass
