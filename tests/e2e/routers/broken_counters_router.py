"""The call counters fail: the trunk kind is counted in a dialog profile the dialog module does
not have, so set_dlg_profile() returns an error for every call (the fail-closed test)."""
from kemi.routing import Router


class BrokenCountersRouter(Router):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.limits.profiles = {**self.limits.profiles, "trunk": "kemi_no_such_profile"}
