"""docker/compose.yaml run with podman, service by service, as compose would (no compose tool
here): ${VAR:-default} interpolation, depends_on order with condition: service_healthy (the
healthcheck's CMD run with `podman exec` until it passes), environment, named volumes,
network_mode (host / none), cap_add, command. Containers and volumes get names unique to this test run
and are removed, by name, at `down()`.

With `netns` (a network namespace the test made), network_mode: host becomes that namespace
(`--network ns:/run/netns/NAME`), so the services' fixed ports (5060, 2223, 30000-40000)
cannot collide with anybody else's on this machine. (podman itself cannot run under `ip
netns exec`: that remounts /sys without the cgroup mounts runc needs.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "scripts"))
import image  # noqa: E402  (scripts/image.py: podman with this project's engine settings)

COMPOSE = PROJECT / "docker" / "compose.yaml"
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value, env: dict) -> str:
    def sub(m):
        if m.group(1) in env:
            return env[m.group(1)]
        if m.group(2) is None:
            raise KeyError(f"${{{m.group(1)}}} has no default")
        return m.group(2)
    return _VAR.sub(sub, str(value))


def start_order(services: dict) -> list[str]:
    """Services so that each comes after what it depends on."""
    order: list[str] = []

    def visit(name, path=()):
        if name in path:
            raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in order:
            for dep in services[name].get("depends_on") or {}:
                visit(dep, (*path, name))
            order.append(name)
    for name in services:
        visit(name)
    return order


def podman_argv(argv: list[str]) -> list[str]:
    return ["podman", "--runtime", "runc", *argv]


class ComposeRun:
    def __init__(self, project: str, image_tag: str, env: dict, netns: str | None = None, file: Path = COMPOSE):
        self.project, self.image_tag, self.env, self.netns = project, image_tag, env, netns
        self.doc = yaml.safe_load(file.read_text())
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(podman_argv(list(args)), env=image.engine_env(), capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def run_argv(self, service: str) -> list[str]:
        svc = self.doc["services"][service]
        argv = ["run", "-d", "--name", self.name(service)]
        network = svc.get("network_mode")
        if network == "host" and self.netns:
            network = f"ns:/run/netns/{self.netns}"
        argv += ["--network", network] if network else []
        for cap in svc.get("cap_add") or []:
            argv += ["--cap-add", cap]
        env = svc.get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)):
            argv += ["-e", f"{key}={interpolate(value, self.env)}"]
        for volume in svc.get("volumes") or []:
            source, target = interpolate(volume, self.env).split(":")[:2]
            if not source.startswith((".", "/")):
                source = f"{self.project}_{source}"
            argv += ["-v", f"{source}:{target}"]
        image_name = svc.get("image")
        assert image_name == "kemi:latest", f"{service}: image {image_name} is not the kemi image"
        argv.append(self.image_tag)
        argv += [interpolate(c, self.env) for c in svc.get("command") or []]
        return argv

    def up(self, timeout: float = 120) -> None:
        for volume in self.doc.get("volumes") or {}:
            self.podman("volume", "create", f"{self.project}_{volume}")
            self.volumes.append(f"{self.project}_{volume}")
        for service in start_order(self.doc["services"]):
            for dep, cond in (self.doc["services"][service].get("depends_on") or {}).items():
                if (cond or {}).get("condition") == "service_healthy":
                    self.wait_healthy(dep, timeout)
            self.containers.append(self.name(service))
            self.podman(*self.run_argv(service))
        for service in self.doc["services"]:
            self.wait_healthy(service, timeout)

    def healthy(self, service: str) -> bool:
        test = (self.doc["services"][service].get("healthcheck") or {}).get("test")
        argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
        return self.podman("exec", self.name(service), *argv, check=False, timeout=30).returncode == 0

    def running(self, service: str) -> bool:
        done = self.podman("inspect", "-f", "{{.State.Running}}", self.name(service), check=False)
        return done.stdout.strip() == "true"

    def wait_healthy(self, service: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(service):
                return
            if not self.running(service):
                raise AssertionError(f"{service} exited:\n{self.logs(service)[-4000:]}")
            time.sleep(1)
        raise AssertionError(f"{service} not healthy after {timeout:.0f} s:\n{self.logs(service)[-4000:]}")

    def exec(self, service: str, *argv: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(podman_argv(["exec", "-i", self.name(service), *argv]),
                              env=image.engine_env(), capture_output=True, text=True, timeout=60, input=input)

    def logs(self, service: str) -> str:
        done = self.podman("logs", self.name(service), check=False)
        return done.stdout + done.stderr

    def down(self) -> list[str]:
        problems = []
        for name in reversed(self.containers):
            done = self.podman("rm", "-f", "-t", "10", name, check=False, timeout=60)
            if done.returncode != 0:
                problems.append(f"podman rm {name}: {done.stderr.strip()}")
        for volume in self.volumes:
            done = self.podman("volume", "rm", "-f", volume, check=False)
            if done.returncode != 0:
                problems.append(f"podman volume rm {volume}: {done.stderr.strip()}")
        self.containers.clear()
        self.volumes.clear()
        return problems
