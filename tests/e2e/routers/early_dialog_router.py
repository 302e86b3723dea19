"""Another feature made the call's dialog before the call limits count it (as CDRs would):
dlg_manage() is called first here, so the limits' own dlg_manage() is refused by the dialog
module and the dialog there is counted."""
from kemi.routing import Router


class EarlyDialogRouter(Router):
    def route_sbc(self, msg):
        if msg.method == "INVITE" and not msg.in_dialog:
            self.ksr.dialog.dlg_manage()
        return super().route_sbc(msg)
