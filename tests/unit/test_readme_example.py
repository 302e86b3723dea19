"""The README's "test your routing" example is tests/example/, byte for byte, and its tests pass.

The README shows two files; the same files live in tests/example/ and are run here, so the
example a user copies cannot drift from code that works.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kemi.routing import Router

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "example"
# a README code block that is an example file starts with a comment naming it
EXAMPLE_BLOCK_RE = re.compile(r"^```python\n(# tests/example/(\S+?): .*?\n.*?)^```$", re.M | re.S)


def readme_examples() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return {m.group(2): m.group(1) for m in EXAMPLE_BLOCK_RE.finditer(text)}


def test_the_readme_shows_both_example_files():
    assert set(readme_examples()) == {"my_routing.py", "test_my_routing.py"}


@pytest.mark.parametrize("name", ["my_routing.py", "test_my_routing.py"])
def test_each_readme_block_is_the_file_byte_for_byte(name):
    assert readme_examples()[name] == (EXAMPLE / name).read_text(encoding="utf-8")


def test_the_example_tests_pass():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b4 passed\b", done.stdout), done.stdout


def test_the_example_test_fails_without_the_edit(monkeypatch):
    """Control: with the stock Router in place of MyRouter, the 403 test fails."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    spec = importlib.util.spec_from_file_location("example_test_my_routing", EXAMPLE / "test_my_routing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_a_blocked_number_gets_403_and_is_not_relayed()      # with the edit: passes
    monkeypatch.setattr(module, "MyRouter", Router)
    with pytest.raises(AssertionError):
        module.test_a_blocked_number_gets_403_and_is_not_relayed()
    module.test_other_calls_still_ring()                              # unaffected either way
