"""python3 -m kemi check [FILE]   (console script: kemi check [FILE])

Checks a settings file before it goes live: every problem is printed, one per line, with the
key and the fix, and the exit code is 1. A valid file prints "valid" and exits 0. The file is
FILE, else $KEMI_SETTINGS, else settings.toml beside the kemi package (as Kamailio reads it).
"""
from __future__ import annotations

import sys

USAGE = "usage: kemi check [SETTINGS_FILE]"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def check(path: str | None) -> tuple[str, list[str]]:
    """(the file checked, its problems as lines naming key and fix; [] = valid)."""
    from kemi.app import load_router_class
    from kemi.settings import SettingsError, load_settings, settings_path

    file = str(settings_path(path))
    try:
        settings = load_settings(path)
    except SettingsError as exc:
        return file, [str(p) for p in exc.problems]
    # the router class is imported only at Kamailio's start: a typo there would stop it too
    sys.path[:0] = [p for p in settings.python.path if p not in sys.path]
    try:
        load_router_class(settings.python.router)
    except SettingsError as exc:
        return file, [str(exc)]
    except Exception as exc:            # the site's module itself fails to import
        from kemi.reload import describe_failure      # file:line where it broke
        return file, [f"setting 'python.router': importing {settings.python.router!r} failed "
                      f"({describe_failure(exc)}); fix that module"]
    return file, []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
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
    if not problems:
        print(f"{file}: valid")
        return EXIT_OK
    print(f"{file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
