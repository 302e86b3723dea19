"""A site routing subclass for a control: the NAT handling without contact aliases
(set_contact_alias never called), so a NATed party's Contact stays its private address and an
in-dialog request toward it is sent there instead of through its router's binding.
tests/e2e/test_nat.py shows the re-INVITE failing.
"""
from kemi.routing import Router


class _AliaslessNathelper:
    def __init__(self, nathelper):
        self._nathelper = nathelper

    def __getattr__(self, name):
        return getattr(self._nathelper, name)

    def set_contact_alias(self):
        return 1


class _AliaslessKsr:
    """KSR as the NAT part sees it, with nathelper.set_contact_alias() doing nothing."""

    def __init__(self, ksr):
        self._ksr = ksr
        self.nathelper = _AliaslessNathelper(ksr.nathelper)

    def __getattr__(self, name):
        return getattr(self._ksr, name)


class AliaslessNatRouter(Router):
    def __init__(self, ksr, *args, **kwargs):
        super().__init__(ksr, *args, **kwargs)
        self.nat.ksr = _AliaslessKsr(ksr)
