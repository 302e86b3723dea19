import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_configure(config):
    # One temp folder per test run (slot and pid): pytest empties its basetemp at start, and
    # its default /tmp/pytest-of-USER keeps only the 3 newest runs, so a parallel run would
    # delete this run's Kamailio folders. Folders of runs that have ended are removed here.
    if config.option.basetemp:
        return
    slot = os.environ.get("KEMI_TEST_SLOT", "0")
    for old in Path("/tmp").glob(f"kemi-tests-{slot}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    config.option.basetemp = f"/tmp/kemi-tests-{slot}-{os.getpid()}"
