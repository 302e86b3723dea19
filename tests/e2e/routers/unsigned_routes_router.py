"""CONTROL for the forged-Route test: in-dialog requests are loose-routed without checking
the Record-Route signature, as Kamailio's default configuration does (the dialog part is
replaced by one that accepts every Route)."""
from kemi.routing import Router
from kemi.security.part import RecordRouteSigner


class _AnyRoute(RecordRouteSigner):
    def signed(self, msg):
        return True


class UnsignedRoutesRouter(Router):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.dialogs = _AnyRoute(self.ksr, self.settings.security.route_secret, self.reply)
