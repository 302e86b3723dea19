"""Which Python Kamailio's app_python3 would embed from a PATH, and the fix (kemi/interpreter.py)."""
import os
import subprocess
import sys
from pathlib import Path

from kemi import interpreter
from kemi.interpreter import path_prefix, start_problems

VERSION = interpreter.system_version()


def python_tree(root: Path, version: str = VERSION, with_stdlib: bool = True) -> Path:
    """A pyenv/conda-like tree: bin/python3 (a script, no symlink to follow) and lib/python<version>/os.py."""
    (root / "bin").mkdir(parents=True)
    exe = root / "bin" / "python3"
    exe.write_text("#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n")
    exe.chmod(0o755)
    if with_stdlib:
        (root / "lib" / f"python{version}").mkdir(parents=True)
        (root / "lib" / f"python{version}" / "os.py").write_text("")
    return root


def test_the_first_python3_on_path_with_a_tree_of_that_version_is_the_prefix(tmp_path):
    fake = python_tree(tmp_path / "pyenv-3.x")
    assert path_prefix(f"{fake}/bin:/usr/bin", VERSION) == (f"{fake}/bin/python3", fake)


def test_a_python3_of_another_minor_version_or_none_first_keeps_the_system_prefix(tmp_path):
    # no lib/python<version> in its tree: the search walks up to "/", which on merged /usr is the
    # system's stdlib again (pyenv's shims end there too)
    other = python_tree(tmp_path / "other", version="3.9")
    found = path_prefix(f"{other}/bin:/usr/bin", VERSION)
    assert found is None or interpreter.same_stdlib(found[1], Path("/usr"), VERSION)
    assert start_problems({"PATH": f"{other}/bin:/usr/bin"}, VERSION, "/usr", VERSION, VERSION) == []
    assert path_prefix(f"{tmp_path}/empty:/nonexistent", VERSION) is None
    # pyenv's 2.7 has no python3 at all: the next one on PATH decides
    two = tmp_path / "py27" / "bin"
    two.mkdir(parents=True)
    (two / "python2").write_text("")
    fake = python_tree(tmp_path / "behind")
    assert path_prefix(f"{two}:{fake}/bin", VERSION) == (f"{fake}/bin/python3", fake)


def test_a_venv_starts_from_its_home(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to("/usr/bin/python3")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    found = path_prefix(f"{venv}/bin", VERSION)
    assert found and interpreter.same_stdlib(found[1], Path("/usr"), VERSION)
    fake = python_tree(tmp_path / "foreign")
    (venv / "pyvenv.cfg").write_text(f"home = {fake}/bin\n")
    assert path_prefix(f"{venv}/bin", VERSION) == (f"{venv}/bin/python3", fake)


def test_start_problems_name_the_foreign_prefix_and_the_fix(tmp_path):
    fake = python_tree(tmp_path / "conda")
    problems = start_problems({"PATH": f"{fake}/bin:/usr/bin"}, VERSION, "/usr", VERSION, VERSION)
    assert len(problems) == 1
    assert str(fake) in problems[0] and "PYTHONHOME=/usr" in problems[0] and "cachetools" in problems[0]
    # the same PATH with the fix in the environment is fine; the system's own python3 first too
    assert start_problems({"PATH": f"{fake}/bin", "PYTHONHOME": "/usr"}, VERSION, "/usr", VERSION, VERSION) == []
    assert start_problems({"PATH": "/usr/bin"}, VERSION, "/usr", VERSION, VERSION) == []


def test_start_problems_foreign_pythonhome_and_a_module_built_for_another_python():
    assert "PYTHONHOME=/opt/py" in start_problems({"PYTHONHOME": "/opt/py"}, VERSION, "/usr", VERSION, None)[0]
    problems = start_problems({"PATH": "/usr/bin"}, "3.9", "/usr", VERSION, "3.9")
    assert len(problems) == 1 and "embeds Python 3.9" in problems[0]


def test_environment_pins_the_system_home_over_the_callers():
    env = interpreter.environment({"PATH": "/x", "PYTHONHOME": "/opt/elsewhere"})
    assert env == {"PATH": "/x", "PYTHONHOME": interpreter.system_home()}
    done = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.base_prefix)"], env=env,
                          capture_output=True, text=True)
    assert done.stdout.strip() == interpreter.system_home().split(":")[0]


def test_the_kamailio_command_line_starts_through_the_pinned_environment(tmp_path):
    from kemi_tools.stack import kamailio
    argv = kamailio.command(tmp_path / "kamailio.cfg")
    assert argv[:3] == ["env", f"PYTHONHOME={interpreter.system_home()}", "kamailio"]


def test_the_printed_install_start_command_pins_it_too(tmp_path):
    from kemi_tools.stack.install import start_command
    assert start_command(tmp_path) == (f"cd {tmp_path} && PYTHONHOME={interpreter.system_home()} "
                                       f"kamailio -DD -E -x tlsf -f kamailio.cfg")


def test_kemi_check_names_the_trap_and_passes_without_it(tmp_path):
    fake = python_tree(tmp_path / "selfbuilt")
    settings = Path(__file__).resolve().parents[2] / "settings.toml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    trapped = subprocess.run([sys.executable, "-m", "kemi", "check", str(settings)], capture_output=True, text=True,
                             env=dict(env, PATH=f"{fake}/bin:/usr/bin:/bin"))
    assert trapped.returncode == 1
    assert f"would embed the Python at {fake}" in trapped.stderr
    clean = subprocess.run([sys.executable, "-m", "kemi", "check", str(settings)], capture_output=True, text=True,
                           env=dict(env, PATH="/usr/bin:/bin"))
    assert clean.returncode == 0, clean.stderr
