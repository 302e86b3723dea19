"""The site's settings: one TOML file, read by Python and rendered for kamailio.cfg.

Every value a site changes (listen sockets, SIP domain, DB URL, usrloc mode, ...) lives
in one TOML file. Kamailio never reads it directly: `render_kamailio_defines()` turns it
into `kamailio-settings.cfg` (#!define lines, listen=, modparams) that kamailio.cfg
includes, and the Python routing loads the same file at mod_init. Both sides therefore
see one value, written once.

Validation happens once, at load: a bad value raises SettingsError naming the key, what
was found and what is accepted, and Kamailio refuses to start.

    schema.py    the dataclasses (one per TOML table) and shared constants
    validate/    load_settings / parse_settings: TOML -> dataclasses, every value checked (a module per table)
    environment.py  KEMI__SECTION__KEY variables applied over the file (before validation)
    render.py    render_kamailio_defines / write_kamailio_defines: the cfg fragment

    python3 -m kemi.settings check  [FILE]   validate, print the effective settings
    python3 -m kemi.settings render [FILE] [OUTDIR]  write OUTDIR/kamailio-settings.cfg
"""
from kemi.settings.environment import *  # noqa: F401,F403
from kemi.settings.render import *    # noqa: F401,F403  (the package's public names)
from kemi.settings.schema import *    # noqa: F401,F403
from kemi.settings.validate import *  # noqa: F401,F403
