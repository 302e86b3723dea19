#!/usr/bin/python3
"""Build the kemi image with podman, with no registry: the base image is made here too.

    scripts/image.py build 12|13 [CHECKOUT]   base image debian:<N> from a debootstrap root,
                                              then docker/Dockerfile on it as kemi:debian<N>
    scripts/image.py base 12|13               only the base image
    scripts/image.py podman ARGS...           podman with this project's engine settings

The base is the cached Debian root of scripts/debroot.py (debootstrap from this machine's own
mirror), `podman import`ed and tagged as the Dockerfile's FROM (debian:12, debian:13). It is
imported again only when the root changed (the root's key is the image's kemi.root label).
The kemi image is `podman build` of docker/Dockerfile (DEBIAN=<N>); its install layer is
cached by podman until scripts/install.sh changes.

podman runs with runc and a containers.conf of our own (CACHE/containers.conf): on these
machines crun fails (hybrid cgroups, setrlimit not permitted) and the default ulimits cannot
be set, so `default_ulimits = []`; there is no systemd, so cgroupfs and a file events log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debroot  # the cached roots (a sibling: sys.path above)

VERSIONS = {"12": "bookworm", "13": "trixie"}
CONTAINERS_CONF = debroot.CACHE / "containers.conf"
CONTAINERS_CONF_TEXT = """# written by scripts/image.py: podman on machines without systemd, where crun fails
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
BUILD_TIMEOUT = 1800


def base_tag(version: str) -> str:
    return f"debian:{version}"


def image_tag(version: str) -> str:
    return f"kemi:debian{version}"


def engine_env() -> dict:
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    if not CONTAINERS_CONF.is_file() or CONTAINERS_CONF.read_text() != CONTAINERS_CONF_TEXT:
        CONTAINERS_CONF.write_text(CONTAINERS_CONF_TEXT)
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


def podman(*args: str, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", "--runtime", "runc", *args], env=engine_env(), capture_output=True,
                          text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise debroot.RootError(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                                f"{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return done


def image_label(tag: str, label: str) -> str | None:
    done = podman("image", "inspect", tag, check=False)
    if done.returncode != 0:
        return None
    labels = (json.loads(done.stdout)[0].get("Labels") or {})
    return labels.get(label)


def build_base(version: str) -> str:
    """debian:<version> from the cached debootstrap root (imported again when that changed)."""
    suite = VERSIONS[version]
    root = debroot.build_root(suite)
    tag = base_tag(version)
    if image_label(tag, "kemi.root") == root.name:
        return tag
    started = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        podman("import", "--change", f"LABEL kemi.root={root.name}", "--change", 'CMD ["/bin/bash"]',
               "-", tag, stdin=tar.stdout, timeout=600)
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar.wait(60)
    print(f"image: {tag} imported from {root} in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def build(version: str, checkout: Path = debroot.PROJECT, tag: str | None = None) -> str:
    """kemi:debian<version> (or `tag`): docker/Dockerfile on debian:<version>; returns the tag."""
    build_base(version)
    tag = tag or image_tag(version)
    before = image_id(tag)
    started = time.monotonic()
    podman("build", "--pull=never", "--network", "host", "--build-arg", f"DEBIAN={version}",
           "-f", str(checkout / "docker" / "Dockerfile"), "-t", tag, str(checkout), timeout=BUILD_TIMEOUT)
    if before and before != image_id(tag):
        podman("rmi", before, check=False)       # the build it replaced (kept if a container uses it)
    print(f"image: {tag} built in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def image_id(tag: str) -> str | None:
    done = podman("image", "inspect", "-f", "{{.Id}}", tag, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("build", "base", "podman") or (argv[0] != "podman" and
                                                                 (len(argv) < 2 or argv[1] not in VERSIONS)):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        if argv[0] == "podman":
            return subprocess.run(["podman", "--runtime", "runc", *argv[1:]], env=engine_env()).returncode
        if argv[0] == "base":
            print(build_base(argv[1]))
        else:
            print(build(argv[1], Path(argv[2]).resolve() if len(argv) > 2 else debroot.PROJECT))
        return 0
    except (debroot.RootError, subprocess.TimeoutExpired) as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
