import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def pytest_configure(config):
    # pytest keeps only the 3 newest /tmp/pytest-of-USER/pytest-N dirs, so a parallel run
    # (another KEMI_TEST_SLOT) would delete this run's Kamailio dirs: one basetemp per slot
    if not config.option.basetemp:
        config.option.basetemp = f"/tmp/kemi-tests-{os.environ.get('KEMI_TEST_SLOT', '0')}"
