"""The settings' outputs stay byte for byte what they were (issue 18's split of the settings per
table changed where the code lives, not what it says): every shipped and documented example's
rendered cfg, dispatcher list and `check` output, every key's error for bad values, the
environment overrides. The corpus: tests/unit/settings_corpus.py."""
import json

import pytest
from settings_corpus import GOLDEN, corpus

GOLDEN_DATA = json.loads(GOLDEN.read_text())
NOW = corpus()


def test_the_corpus_has_the_same_cases():
    assert sorted(NOW) == sorted(GOLDEN_DATA)


@pytest.mark.parametrize("case", sorted(GOLDEN_DATA))
def test_output_unchanged(case):
    assert NOW.get(case) == GOLDEN_DATA[case]


def test_control_a_changed_message_is_seen():
    """The comparison sees a one-character change (the corpus is not compared with itself)."""
    case = next(k for k, v in GOLDEN_DATA.items() if "error" in v)
    changed = dict(GOLDEN_DATA[case], error=GOLDEN_DATA[case]["error"] + ".")
    assert changed != NOW[case]
