"""What Debian's kamailio.service runs before Kamailio when the kemi package is installed
(its drop-in, debian/kamailio-kemi.conf):

    python3 -m kemi.service prestart OUTDIR

It runs as the unit's user (kamailio), so it reads the settings as Kamailio will. The settings
($KEMI_SETTINGS, /etc/kemi/settings.toml) are checked as `kemi check` checks them: any problem
goes to stderr, which is the journal, one line each with the key and the fix, and the start
stops (exit 1). Otherwise kamailio-settings.cfg (and the SBC's dispatcher list) are rendered
into OUTDIR, the unit's working directory, where kamailio.cfg's include_file finds it first:
the cfg and the Python routing read their values from the one settings file, as it is now.

When $CFGFILE is not a kemi configuration (it does not include kamailio-settings.cfg: the admin
chose Debian's own kamailio.cfg again), it says so and does nothing.
"""
from __future__ import annotations

import os
import pwd
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from kemi.settings import RENDERED_CFG_NAME

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
USAGE = "usage: python3 -m kemi.service prestart OUTDIR"
_INCLUDE_RE = re.compile(r'^\s*(?:include_file|import_file)\s+"([^"]+)"', re.M)


def is_kemi_cfg(cfg_text: str) -> bool:
    """Does this Kamailio configuration take its site values from the rendered settings?"""
    return any(Path(name).name == RENDERED_CFG_NAME for name in _INCLUDE_RE.findall(cfg_text))


def runtime_dir_problem(directory: str, user: str, source: str) -> str | None:
    """Kamailio writes its PID file's neighbours (control socket, FIFO) in runtime.dir."""
    if os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK):
        return None
    return (f"setting 'runtime.dir' in {source}: {directory} is not a folder user {user} can write in; "
            f"use /run/kamailio (kamailio.service's RuntimeDirectory) or create it for that user")


def prestart(outdir: Path, env: Mapping[str, str] | None = None) -> int:
    from kemi import interpreter
    from kemi.check import check
    from kemi.settings import load_settings, settings_path, write_kamailio_defines
    from kemi.version import VERSION

    environ: Mapping[str, str] = os.environ if env is None else env
    user = pwd.getpwuid(os.geteuid()).pw_name
    cfg = environ.get("CFGFILE", "")
    try:
        cfg_text = Path(cfg).read_text(encoding="utf-8", errors="replace") if cfg else ""
    except OSError as exc:
        print(f"kemi: CFGFILE={cfg} cannot be read ({exc.strerror}): Kamailio cannot start with it", file=sys.stderr)
        return EXIT_PROBLEMS
    if not is_kemi_cfg(cfg_text):
        print(f"kemi: CFGFILE={cfg or '(unset)'} does not include {RENDERED_CFG_NAME}: not kemi's configuration, "
              f"Kamailio starts without kemi (kemi's is /usr/share/kemi/kamailio.cfg)")
        return EXIT_OK
    file = str(settings_path(None))
    settings = None
    try:
        file, problems = check(None)
        problems += interpreter.problems_here()
        settings = None if problems else load_settings(None)
    except OSError as exc:
        problems = [f"{file} cannot be read by user {user} ({exc.strerror}): Kamailio reads it as that user; "
                    f"chown root:{user} {file} && chmod 0640 {file}"]
    if settings is not None and (problem := runtime_dir_problem(settings.runtime.dir, user, str(file))):
        problems = [problem]
    if problems or settings is None:
        print(f"kemi: {file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}, Kamailio is not started:",
              file=sys.stderr)
        for line in problems:
            print(f"kemi:   {line}", file=sys.stderr)
        print(f"kemi: fix {file} (`kemi check {file}` shows the same), then: systemctl restart kamailio",
              file=sys.stderr)
        return EXIT_PROBLEMS
    out = write_kamailio_defines(settings, outdir)
    print(f"kemi {VERSION}: {out} rendered from {file} for {cfg}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "prestart":
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    return prestart(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
