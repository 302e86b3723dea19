"""python3 -m kemi check [FILE]   (console script: kemi check [FILE])
python3 -m kemi cdr [--since ... --user ... --csv]   call records (kemi/records/cdr.py)

Checks a settings file before it goes live: every problem is printed, one per line, with the
key and the fix, and the exit code is 1. A valid file prints "valid" and exits 0. The file is
FILE, else $KEMI_SETTINGS, else settings.toml beside the kemi package (as Kamailio reads it).
It also names an interpreter mismatch that would stop a Kamailio started from this shell:
another Python 3.X first on PATH, a foreign PYTHONHOME, app_python3 built for another Python
than /usr/bin/python3 (kemi/interpreter.py).
"""
from __future__ import annotations

import sys

from kemi import interpreter
from kemi.check import check

USAGE = "usage: kemi check [SETTINGS_FILE] | kemi cdr [--since WHEN] [--user USER] [--csv] (kemi cdr --help)"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["cdr"]:
        from kemi.records.cdr import main as cdr
        return cdr(args[1:])
    if args[:1] == ["check"]:
        args = args[1:]
    elif args and args[0] in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK
    elif args:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    file, problems = check(args[0] if args else None)
    problems += interpreter.problems_here()
    if not problems:
        print(f"{file}: valid")
        return EXIT_OK
    print(f"{file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
