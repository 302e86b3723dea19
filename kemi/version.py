"""kemi's version: the one place it is written.

pyproject.toml reads it (`dynamic = ["version"]`), `python3 -m kemi --version` prints it, and
debian/changelog and CHANGELOG.md name it in their newest entry (tests/unit/test_version.py
checks they agree; scripts/release.py VERSION writes all three).
"""
VERSION = "0.1.0"
