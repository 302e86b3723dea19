"""python3 -m kemi.settings check|render [FILE] [OUTDIR]"""
from __future__ import annotations

import sys

from kemi.settings import PROJECT_ROOT, SettingsError, describe, load_settings, write_kamailio_defines


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "render"):
        print("usage: python3 -m kemi.settings check|render [FILE] [OUTDIR]", file=sys.stderr)
        return 2
    try:
        settings = load_settings(argv[1] if len(argv) > 1 else None)
    except SettingsError as exc:
        for problem in exc.problems:       # every problem in the file, one line each
            print(f"kemi: {problem}", file=sys.stderr)
        return 1
    if argv[0] == "check":
        print(f"# {settings.source}: valid")
        if settings.environment:
            print(f"# overridden by: {', '.join(variable for variable, _ in settings.environment)}")
        print("\n".join(describe(settings)))
    else:
        out = write_kamailio_defines(settings, argv[2] if len(argv) > 2 else PROJECT_ROOT)
        print(out)
    return 0


sys.exit(main(sys.argv[1:]))
