"""kemi.service prestart: what Debian's kamailio.service runs before Kamailio when the kemi
package is installed (its drop-in): check the settings (stop the start with the key and the
fix), render kamailio-settings.cfg, and stand aside when CFGFILE is not kemi's."""
from pathlib import Path

from kemi import service
from kemi.settings import RENDERED_CFG_NAME

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_CFG = '#!KAMAILIO\nimport_file "kamailio-local.cfg"\nloadmodule "tm.so"\nrequest_route { exit; }\n'


def env_for(tmp_path: Path, settings_text: str, cfg: Path = ROOT / "kamailio.cfg") -> dict:
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text)
    return {"CFGFILE": str(cfg), "KEMI_SETTINGS": str(settings), "PATH": "/usr/bin:/bin", "PYTHONHOME": ""}


def test_only_kemi_configurations_are_recognised():
    assert service.is_kemi_cfg((ROOT / "kamailio.cfg").read_text())
    assert not service.is_kemi_cfg(DEBIAN_CFG)
    assert service.is_kemi_cfg('include_file "/run/kemi/kamailio-settings.cfg"\n')
    assert not service.is_kemi_cfg('# include_file "kamailio-settings.cfg"\n')


def test_valid_settings_are_rendered_into_the_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run-kemi"
    out.mkdir()
    env = env_for(tmp_path, f'[sip]\nlisten = ["udp:127.0.0.1:5077"]\n[runtime]\ndir = "{tmp_path}"\n')
    monkeypatch.setattr(service.os, "environ", env)
    assert service.prestart(out, env) == service.EXIT_OK
    rendered = (out / RENDERED_CFG_NAME).read_text()
    assert f'#!define KEMI_SETTINGS "{tmp_path / "settings.toml"}"' in rendered
    assert "listen=udp:127.0.0.1:5077" in rendered
    assert f"{out / RENDERED_CFG_NAME} rendered from {tmp_path / 'settings.toml'}" in capsys.readouterr().out


def test_bad_settings_stop_the_start_with_the_key_and_the_fix(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run-kemi"
    out.mkdir()
    env = env_for(tmp_path, '[sip]\nchildren = "4"\n[database]\nusrloc_db_mode = 7\n')
    monkeypatch.setattr(service.os, "environ", env)
    assert service.prestart(out, env) == service.EXIT_PROBLEMS
    err = capsys.readouterr().err
    assert "2 problems, Kamailio is not started" in err
    assert "setting 'sip.children'" in err and "write a number without quotes" in err
    assert "setting 'database.usrloc_db_mode'" in err and "use 1 (write-through)" in err
    assert not (out / RENDERED_CFG_NAME).exists()


def test_a_runtime_folder_the_user_cannot_use_stops_the_start(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run-kemi"
    out.mkdir()
    env = env_for(tmp_path, f'[runtime]\ndir = "{tmp_path / "missing"}"\n')
    monkeypatch.setattr(service.os, "environ", env)
    assert service.prestart(out, env) == service.EXIT_PROBLEMS
    assert f"setting 'runtime.dir' in {tmp_path / 'settings.toml'}: {tmp_path / 'missing'} is not a folder" \
        in capsys.readouterr().err


def test_another_configuration_is_left_alone(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "debian-kamailio.cfg"
    cfg.write_text(DEBIAN_CFG)
    out = tmp_path / "run-kemi"
    out.mkdir()
    env = env_for(tmp_path, "[sip]\nchildren = 0\n", cfg)          # bad, but not kemi's business
    monkeypatch.setattr(service.os, "environ", env)
    assert service.prestart(out, env) == service.EXIT_OK
    assert "not kemi's configuration, Kamailio starts without kemi" in capsys.readouterr().out
    assert list(out.iterdir()) == []
