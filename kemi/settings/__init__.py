"""The site's settings: one TOML file, read by Python and rendered for kamailio.cfg.

Every value a site changes (listen sockets, SIP domain, DB URL, usrloc mode, ...) lives
in one TOML file. Kamailio never reads it directly: `render_kamailio_defines()` turns it
into `kamailio-settings.cfg` (#!define lines, listen=, modparams) that kamailio.cfg
includes, and the Python routing loads the same file at mod_init. Both sides therefore
see one value, written once.

Validation happens once, at load: a bad value raises SettingsError naming the key, what
was found and what is accepted, and Kamailio refuses to start.

Each TOML table is one module, beside the code it configures: its dataclass, its checks
and the cfg lines it renders (one key is traced in one file):

    kemi/settings/sip.py database.py registrar.py python.py runtime.py tls.py   the proxy's own
    kemi/media/settings.py [media]    kemi/sbc/settings.py [sbc]    kemi/nat/settings.py [nat]
    kemi/security/settings.py [security]    kemi/observe/settings.py [metrics] [logging]
    kemi/cluster/settings.py [cluster]
    kemi/websocket/settings.py [websocket]

and here what puts them together:

    model.py        the top-level Settings (one field per table)
    load.py         load_settings / parse_settings: TOML -> dataclasses, every value checked
    environment.py  KEMI__SECTION__KEY variables applied over the file (before validation)
    render.py       render_kamailio_defines / write_kamailio_defines: the cfg fragment, in order
    kemi/schema.py  what every table builds on: SettingsError, require, reading TOML values

    python3 -m kemi.settings check  [FILE]   validate, print the effective settings
    python3 -m kemi.settings render [FILE] [OUTDIR]  write OUTDIR/kamailio-settings.cfg
"""
from kemi.cluster.settings import ClusterSettings
from kemi.media.settings import (
                                 DEFAULT_MEDIA_PROFILE,
                                 MediaInterface,
                                 MediaProfile,
                                 MediaSettings,
                                 RtpengineDaemon,
                                 RtpengineInstance,
)
from kemi.nat.settings import NatSettings
from kemi.observe.settings import LoggingSettings, MetricsSettings
from kemi.sbc.settings import (
                                 DISPATCHER_LIST_NAME,
                                 SbcSettings,
                                 SbcSide,
                                 gateway_socket_name,
)
from kemi.schema import META_FIELDS, Listen, SettingsError, SettingsProblems
from kemi.security.settings import SecuritySettings
from kemi.settings.database import DatabaseSettings
from kemi.settings.environment import (
                                 ENV_PREFIX,
                                 EnvOverride,
                                 EnvSettingsError,
                                 apply_overrides,
                                 blame_environment,
                                 environment_digest,
                                 environment_overrides,
                                 parse_env_value,
)
from kemi.settings.load import (
                                 DEFAULT_SETTINGS_FILE,
                                 PROJECT_ROOT,
                                 SETTINGS_ENV,
                                 load_settings,
                                 parse_settings,
                                 settings_path,
)
from kemi.settings.model import Settings
from kemi.settings.python import PythonSettings
from kemi.settings.registrar import RegistrarSettings
from kemi.settings.render import (
                                 RENDERED_CFG_NAME,
                                 describe,
                                 dispatcher_list_path,
                                 render_dispatcher_list,
                                 render_kamailio_defines,
                                 toml_dump,
                                 write_kamailio_defines,
)
from kemi.settings.runtime import RuntimeSettings
from kemi.settings.sip import SipSettings
from kemi.settings.tls import TlsSettings
from kemi.websocket.settings import WebsocketSettings

__all__ = [
    "ClusterSettings", "DEFAULT_MEDIA_PROFILE", "DEFAULT_SETTINGS_FILE", "DISPATCHER_LIST_NAME", "DatabaseSettings",
    "ENV_PREFIX", "EnvOverride", "EnvSettingsError", "Listen", "LoggingSettings", "META_FIELDS", "MediaInterface",
    "MediaProfile", "MediaSettings", "MetricsSettings", "NatSettings", "PROJECT_ROOT", "PythonSettings",
    "RENDERED_CFG_NAME",
    "RegistrarSettings", "RtpengineDaemon", "RtpengineInstance", "RuntimeSettings", "SETTINGS_ENV", "SbcSettings",
    "SbcSide", "SecuritySettings", "Settings", "SettingsError", "SettingsProblems", "SipSettings", "TlsSettings",
    "WebsocketSettings", "apply_overrides", "blame_environment", "describe", "dispatcher_list_path",
    "environment_digest", "environment_overrides", "gateway_socket_name", "load_settings", "parse_env_value",
    "parse_settings", "render_dispatcher_list", "render_kamailio_defines", "settings_path", "toml_dump",
    "write_kamailio_defines",
]
