"""make run's runner stops once: a second SIGTERM/SIGINT (make forwards the one it got, Ctrl-C
twice) must not cut its stopping short, which left Kamailio running (seen in a CI run)."""
import signal

import pytest

from kemi_tools.stack import run


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    run._stopping = False
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    run._stopping = False


def test_the_first_signal_stops_and_later_ones_are_ignored(handlers):
    with pytest.raises(run._Stop):
        run._raise_stop(signal.SIGTERM, None)
    run._raise_stop(signal.SIGTERM, None)           # forwarded by make: no second _Stop
    run._raise_stop(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
