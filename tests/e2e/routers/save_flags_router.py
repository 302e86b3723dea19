"""A dmq_usrloc trap (issue 13), as a site's registrar would hit it:

ReplaceContactsRouter   save() with flag 0x04 (one contact per AOR: a new one replaces the
                        others), the trap of kamailio#1445: the replaced contact is deleted
                        where the REGISTER was saved, and must be deleted on the peers too
"""
from kemi.names import LOCATION_TABLE
from kemi.routing import Router

REPLACE_OTHERS = 0x04


class ReplaceContactsRouter(Router):
    def route_registrar(self, msg):
        if msg.method != "REGISTER":
            return True
        self.nat.mark_registration()
        if self.ksr.registrar.save(LOCATION_TABLE, REPLACE_OTHERS) < 0:
            self.ksr.sl.sl_reply_error()
        return False

