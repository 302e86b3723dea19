"""docker/Dockerfile and docker/compose.yaml against the repository (static; tests/e2e/test_image.py builds and runs them).

Every COPY source, script, make target and variable, KEMI__ environment variable (a real
settings key with a value the validation accepts) and healthcheck command must exist. Each
checker is also run on a broken copy, so a misspelling cannot pass unnoticed.
"""
from __future__ import annotations

import copy
import fnmatch
import importlib.util
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="python3-yaml (scripts/install.sh --test installs it)")

from kemi.settings import PROJECT_ROOT, SettingsError, parse_settings  # noqa: E402
from kemi.settings.environment import apply_overrides, environment_overrides, parse_env_value  # noqa: E402

DOCKER = PROJECT_ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
IMAGE_ROOT = "/opt/kemi"                 # COPY . /opt/kemi: the repository's place in the image
ENV_PREFIX = "KEMI__"
# the official mariadb image's own tools (not in this repository): what its healthcheck may call
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# --- reading the files ---------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list, or the shell form split like sh would."""
    import json
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}; a variable without a default must be set."""
    def sub(m):
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is None:
            raise KeyError(f"${{{m.group(1)}}} has no default")
        return m.group(2)
    return INTERPOLATION.sub(sub, value)


def makefile() -> tuple[set[str], set[str]]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", text, re.M))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", text, re.M))
    return targets, variables


# --- the checks (each returns its problems; [] = fine) -----------------------------------


def env_problems(env: dict[str, str], base: Path = PROJECT_ROOT / "settings.toml") -> list[str]:
    """KEMI__SECTION__KEY variables: real keys, and the installed settings with them validate.

    The same code the settings loader runs (kemi/settings/environment.py), on the compose values.
    """
    kemi_vars = {name: interpolate(str(value)) for name, value in env.items() if name.startswith(ENV_PREFIX)}
    try:
        overrides = environment_overrides(kemi_vars)
        raw = apply_overrides(tomllib.loads(base.read_text()), overrides, base.name)
        parse_settings(raw, source=f"{base.name} + environment")
    except SettingsError as exc:
        return [str(p) for p in getattr(exc, "problems", [exc])]
    return []


def dockerfile_problems(text: str, ignore: list[str]) -> list[str]:
    problems, targets_vars = [], makefile()
    steps = instructions(text)
    # ARG DEBIAN=12|13, then FROM debian:${DEBIAN}: the two Debians the project supports
    arg = next((a for i, a in steps if i == "ARG"), "")
    if steps[:1] != [("ARG", arg)] or arg not in ("DEBIAN=12", "DEBIAN=13") or \
            steps[1:2] != [("FROM", "debian:${DEBIAN}")]:
        problems.append("the image must start ARG DEBIAN=12 (or 13), FROM debian:${DEBIAN} "
                        "(the Debians the project supports)")
    runs = " && ".join(a for i, a in steps if i == "RUN")
    for needed in ("scripts/install.sh", "make install"):
        if needed not in runs:
            problems.append(f"RUN never calls {needed} (the install steps the tests run)")
    for instr, args in steps:
        if instr in ("COPY", "ADD"):
            *sources, _dest = [a for a in exec_form(args) if not a.startswith("--")]
            for src in sources:
                if not (PROJECT_ROOT / src).exists():
                    problems.append(f"{instr} {src}: not in the repository")
                elif src != "." and any(fnmatch.fnmatch(src, pat) for pat in ignore):
                    problems.append(f"{instr} {src}: excluded by .dockerignore")
        if instr == "RUN":
            for cmd in re.split(r"&&|;|\|\|", args):
                words = shlex.split(cmd)
                for w in words:
                    if w.startswith("scripts/") and not os.access(PROJECT_ROOT / w, os.X_OK):
                        problems.append(f"RUN {w}: no such executable script")
                if words[:1] == ["make"]:
                    targets, variables = targets_vars
                    for w in words[1:]:
                        if "=" in w and w.split("=")[0] not in variables:
                            problems.append(f"RUN make: the Makefile has no variable {w.split('=')[0]}")
                        elif "=" not in w and not w.startswith("-") and w not in targets:
                            problems.append(f"RUN make {w}: the Makefile has no such target")
        if instr in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
            argv = exec_form(args.split("CMD", 1)[1].strip() if instr == "HEALTHCHECK" else args)
            problems += image_command_problems(argv, f"{instr}")
    return problems


def entrypoint_commands() -> set[str]:
    spec = importlib.util.spec_from_file_location("kemi_docker_entrypoint", DOCKER / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)          # it puts KAMAILIO_DIR first on sys.path
    finally:
        sys.path[:] = saved
    return set(module.COMMANDS)


def image_command_problems(argv: list[str], where: str) -> list[str]:
    """A command run in the kemi image: its files must be ours, its subcommand known."""
    problems = []
    for word in argv:
        if word.startswith(IMAGE_ROOT + "/") and not (PROJECT_ROOT / word[len(IMAGE_ROOT) + 1:]).is_file():
            problems.append(f"{where}: {word} is not in the repository (COPY . {IMAGE_ROOT})")
    if argv[:1] == ["/usr/bin/python3"] and argv[1:2] == [f"{IMAGE_ROOT}/docker/entrypoint.py"]:
        if argv[2:3] and argv[2] not in entrypoint_commands():
            problems.append(f"{where}: entrypoint.py has no command {argv[2]!r}")
    elif argv and not argv[0].startswith("/") and argv[0] not in entrypoint_commands():
        problems.append(f"{where}: {argv[0]!r} is not an entrypoint.py command")
    return problems


def compose_problems(doc: dict) -> list[str]:
    problems = []
    services = doc.get("services", {})
    for name in ("kamailio", "rtpengine", "mariadb"):
        if name not in services:
            problems.append(f"no {name} service")
    declared = set(doc.get("volumes") or {})
    for name, svc in services.items():
        ours = "build" in svc
        if ours:
            build = svc["build"]
            if (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() != DOCKERFILE:
                problems.append(f"{name}: build does not name docker/Dockerfile")
            if name == "mariadb":
                if svc.get("network_mode") != "none":
                    problems.append(f"{name}: needs network_mode: none (its unix socket is all it serves)")
            elif svc.get("network_mode") != "host":
                problems.append(f"{name}: needs network_mode: host (SIP and RTP on the host's addresses)")
            if name == "rtpengine" and "NET_ADMIN" not in (svc.get("cap_add") or []):
                problems.append(f"{name}: needs cap_add: [NET_ADMIN] (its entrypoint loads the relay's packet limit)")
            if "command" in svc:
                problems += image_command_problems(svc["command"], f"{name}.command")
            problems += env_problems(svc.get("environment") or {})
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")) and source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
        test = (svc.get("healthcheck") or {}).get("test")
        if not test or test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: no healthcheck")
            continue
        argv = test[1:] if test[0] == "CMD" else shlex.split(test[1])
        if ours:
            problems += image_command_problems(argv, f"{name}.healthcheck")
            if argv[:2] != ["/usr/bin/python3", f"{IMAGE_ROOT}/docker/entrypoint.py"]:
                problems.append(f"{name}.healthcheck: not an entrypoint.py health command")
        for dep in svc.get("depends_on", {}):
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
    return problems


def dockerignore() -> list[str]:
    return [l.strip() for l in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if l.strip()]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# --- the files as they are ---------------------------------------------------------------


def test_the_dockerfile_references_only_what_exists():
    assert dockerfile_problems(DOCKERFILE.read_text(), dockerignore()) == []


def test_the_compose_file_references_only_what_exists():
    assert compose_problems(compose()) == []


def test_compose_environment_maps_onto_real_settings_keys():
    env = compose()["services"]["kamailio"]["environment"]
    names = [n for n in env if n.startswith(ENV_PREFIX)]
    assert {"KEMI__SIP__LISTEN", "KEMI__DATABASE__URL", "KEMI__MEDIA__RTPENGINE__INTERFACES"} <= set(names)
    assert env_problems(env) == []


def test_both_kemi_services_read_the_same_settings():
    services = compose()["services"]
    kemi = lambda svc: {k: v for k, v in services[svc]["environment"].items() if k.startswith(ENV_PREFIX)}
    assert kemi("kamailio") == kemi("rtpengine")


def test_the_kamailio_healthcheck_probes_what_the_settings_listen_on():
    # entrypoint.py health-kamailio sends OPTIONS to sip.listen[0]; with the compose values it
    # must be a UDP socket (OPTIONS over UDP)
    listen = parse_env_value(interpolate(compose()["services"]["kamailio"]["environment"]["KEMI__SIP__LISTEN"]))
    assert listen[0].startswith("udp:")


def test_every_service_runs_the_kemi_image():
    # no registry here, and one image for all three: MariaDB is Debian's, from the same install
    services = compose()["services"]
    assert {svc.get("image") for svc in services.values()} == {"kemi:latest"}
    assert services["mariadb"]["command"] == ["mariadb"]


# --- the checks can fail -------------------------------------------------------------------


@pytest.mark.parametrize("name, value, words", [
    ("KEMI__SIP__DOMIAN", "pbx.example.com", "'domian' is not a key of sip"),
    ("KEMI__SIPP__DOMAIN", "pbx.example.com", "'sipp' is not a key of the settings"),
    ("KEMI__MEDIA__RTPENGINE", "1", "media.rtpengine is a table"),        # a table, not a key
    ("KEMI__SIP__LISTEN", '["udp:1.2.3"]', "setting 'sip.listen'"),
    ("KEMI__DATABASE__USRLOC_DB_MODE", "7", "setting 'database.usrloc_db_mode'"),
])
def test_a_wrong_environment_variable_is_caught(name, value, words):
    doc = compose()
    doc["services"]["kamailio"]["environment"] = dict(doc["services"]["kamailio"]["environment"], **{name: value})
    assert any(words in p for p in compose_problems(doc)), compose_problems(doc)


def test_a_broken_compose_file_is_caught():
    doc = compose()
    broken = copy.deepcopy(doc)
    broken["services"]["kamailio"]["healthcheck"]["test"][3] = "health-kamailo"
    broken["services"]["rtpengine"]["network_mode"] = "bridge"
    del broken["services"]["rtpengine"]["cap_add"]
    broken["services"]["mariadb"]["healthcheck"]["test"] = ["CMD", "mysqladmin-typo", "ping"]
    broken["services"]["mariadb"]["network_mode"] = "host"
    broken["services"]["kamailio"]["volumes"] = ["mysqld-socket:/run/mysqld"]
    problems = "\n".join(compose_problems(broken))
    for words in ("no command 'health-kamailo'", "rtpengine: needs network_mode: host", "rtpengine: needs cap_add",
                  "mariadb.healthcheck: not an entrypoint.py health command", "mariadb: needs network_mode: none",
                  "volume mysqld-socket is not declared"):
        assert words in problems


@pytest.mark.parametrize("old, new, words", [
    ("COPY . /opt/kemi", "COPY scripts/instal.sh /opt/kemi", "COPY scripts/instal.sh: not in the repository"),
    ("RUN scripts/install.sh &&", "RUN scripts/install-all.sh &&", "RUN scripts/install-all.sh: no such executable"),
    ("FROM debian:${DEBIAN}", "FROM debian:11", "must start ARG DEBIAN=12"),
    ("ARG DEBIAN=12", "ARG DEBIAN=11", "must start ARG DEBIAN=12"),
    ("make install KAMAILIO_DIR", "make install KAMAILIO_DIRS", "no variable KAMAILIO_DIRS"),
    ('"health-kamailio"]', '"health"]', "no command 'health'"),
    ("/opt/kemi/docker/entrypoint.py\"]", "/opt/kemi/docker/entry.py\"]", "entry.py is not in the repository"),
])
def test_a_broken_dockerfile_is_caught(old, new, words):
    text = DOCKERFILE.read_text()
    assert old in text
    problems = dockerfile_problems(text.replace(old, new, 1), dockerignore())
    assert any(words in p for p in problems), problems


def test_a_copy_source_the_dockerignore_drops_is_caught():
    assert any("excluded by .dockerignore" in p
               for p in dockerfile_problems(DOCKERFILE.read_text().replace("COPY . /opt/kemi", "COPY kemi /opt/kemi"),
                                            ["kemi"]))


@pytest.mark.parametrize("overload, probed", [
    ({"health_listen": "127.0.0.1:5099"}, ("127.0.0.1", 5099)),    # the health socket's own worker
    ({}, ("127.0.0.1", 5060)),                                       # CONTROL: none set, sip.listen[0]
])
def test_the_kamailio_healthcheck_probes_the_health_socket_when_there_is_one(monkeypatch, overload, probed):
    from kemi.settings import parse_settings
    from kemi_tools.stack import process
    spec = importlib.util.spec_from_file_location("kemi_docker_entrypoint", DOCKER / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    asked = []
    monkeypatch.setattr(module, "load", lambda: parse_settings({"overload": overload}))
    monkeypatch.setattr(process, "sip_options_ok", lambda host, port, timeout: asked.append((host, port)) or True)
    assert module.health_kamailio() == 0 and asked == [probed]
