#!/usr/bin/python3
"""Debian roots made with debootstrap from this machine's own apt mirror: CI and `make test-debian13`.

    scripts/debroot.py root SUITE               build (or reuse) the cached root; print its path
    scripts/debroot.py test SUITE [CHECKOUT]    `make test` of CHECKOUT (default: this checkout)
                                                on a fresh copy of the root (Debian 13: trixie)
    scripts/debroot.py shell SUITE [CHECKOUT]   the same copy, an interactive shell (development)
    scripts/debroot.py run SUITE CHECKOUT CMD   the same copy, CMD instead of `make test`
    scripts/debroot.py bench SUITE [CHECKOUT]   `make bench` there; its results land in the
                                                checkout's bench/results-SUITE/ (KEMI_BENCH_ARGS: more;
                                                KEMI_BENCH_TARGET=bench-instructions: that one)
    scripts/debroot.py server SUITE [CHECKOUT]  build (or reuse) the cached server root; print its path

The root is Debian's own packages only: `debootstrap --variant=minbase` from the mirror this
machine's apt uses (the first URIs: line of /etc/apt/sources.list.d/*.sources, else the first
`deb` line of the classic one-line /etc/apt/sources.list or sources.list.d/*.list), plus make and
ca-certificates (a fresh machine has both), the machine's CA bundle, resolver, apt Acquire
options and pip configuration, and a policy-rc.d that forbids service starts. It is built once
per suite and mirror into CACHE/roots/ (default /var/cache/kemi; KEMI_CACHE) and never changed
afterwards: every run gets an overlay of it whose writes are thrown away, so each run starts
from a fresh machine (scripts/install.sh runs there as the README says) and concurrent runs do
not share a MariaDB data folder. Downloaded .debs and pip wheels are kept in CACHE/apt-SUITE
and CACHE/pip-SUITE.

The server root (tests/e2e/test_deb_package.py) is the root plus what a Debian server has before
its admin installs kemi: systemd as init, MariaDB and rtpengine, installed, and the .debs of the kemi
package's Depends and Recommends (debian/control), downloaded only, with apt's package lists:
`apt install ./kemi_VERSION_all.deb` in a copy of it resolves and installs them without the
network. It is cached beside the root (its key: the root's, the package lists) and, for `test`
and `run`, built before the run and bound read-only into it ($KEMI_SERVER_ROOT): the tests'
network namespace has no way out.

A run is one process tree in its own mount and PID namespaces (`unshare --mount --pid
--kill-child`): the overlay, proc, sys, dev and run mounts exist only there and go with it,
also when the run fails or is killed, and every process in it ends with it. The install step
uses the machine's network (apt, pip); `make test` then runs in a network namespace of its own
with only loopback up, so its MariaDB (TCP 3306, /run/mysqld), its Kamailios and SIPps cannot
collide with the host's, and its test namespaces are its own.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KEMI_CACHE", "/var/cache/kemi"))
SUITES = {"bookworm": "12", "trixie": "13"}
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")          # the classic one-line format
# beside minbase: what the README's two commands need before they run (make) and what apt
# and pip need to trust the mirror (ca-certificates, then the machine's own bundle on top)
INCLUDE = ("make", "ca-certificates")
# bump when the root's setup below changes: a new key builds a new root
SETUP_VERSION = "2"                      # 2: apt.conf.d files of packages are not copied
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONFIGS = (Path("/etc/pip.conf"), Path("/etc/xdg/pip"), Path("/root/.config/pip"))
DEBOOTSTRAP_TIMEOUT = 1200
RUN_TIMEOUT = 3600                       # a whole `make test` in the root, install included
CHECKOUT_IN_ROOT = "/root/kemi"
BENCH_TARGETS = ("bench", "bench-instructions")
PATH_IN_ROOT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootError(RuntimeError):
    pass


# --- decisions: plain functions of text -------------------------------------------------


def _is_security(suites: list[str]) -> bool:
    # bookworm-security; before Debian 11 the security suite was spelled buster/updates
    return any(s.endswith("-security") or s.endswith("/updates") for s in suites)


def deb822_mirrors(sources_text: str) -> dict[str, str]:
    """{"debian": URI, "security": URI} from deb822 .sources text (the URIs: lines, in order);
    a kind is absent when no stanza names it.

    The first URI of a stanza whose suites are not -security ones is the mirror; the first
    URI of a stanza with a -security suite is the security mirror.
    """
    found: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", sources_text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if not fields.get("uris") or "deb" not in fields.get("types", ["deb"]):
            continue
        kind = "security" if _is_security(fields.get("suites", [])) else "debian"
        found.setdefault(kind, fields["uris"][0])
    return found


def one_line_mirrors(list_text: str) -> dict[str, str]:
    """The same from the classic one-line format (/etc/apt/sources.list):
    `deb [option=value ...] URI SUITE COMPONENT...`; deb-src, comments and cdrom: are skipped."""
    found: dict[str, str] = {}
    for raw in list_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if not m or m.group(1).startswith("cdrom:"):
            continue
        found.setdefault("security" if _is_security([m.group(2)]) else "debian", m.group(1))
    return found


def mirrors(sources_text: str) -> dict[str, str]:
    """deb822_mirrors(), with a Debian mirror required."""
    found = deb822_mirrors(sources_text)
    if "debian" not in found:
        raise RootError(f"no Debian mirror (URIs: line) in {SOURCES_DIR}/*.sources")
    return found


def choose_mirrors(files: dict[str, str]) -> tuple[dict[str, str], str]:
    """(mirrors, the file the Debian mirror came from) from apt's source files (path -> text):
    deb822 `.sources` files first (Debian 12's default), then one-line files (sources.list,
    *.list: most machines upgraded from older releases). Each kind comes from the first
    file that names it."""
    found: dict[str, str] = {}
    origin = ""
    ordered = sorted(files, key=lambda path: not path.endswith(".sources"))
    for path in ordered:
        parse = deb822_mirrors if path.endswith(".sources") else one_line_mirrors
        for kind, uri in parse(files[path]).items():
            if kind not in found:
                found[kind] = uri
                if kind == "debian":
                    origin = path
    if "debian" not in found:
        raise RootError(f"no Debian mirror in apt's sources: neither a URIs: line in {SOURCES_DIR}/*.sources "
                        f"nor a `deb URI SUITE ...` line in {SOURCES_LIST} or {SOURCES_DIR}/*.list "
                        f"(read: {', '.join(ordered) or 'no file'})")
    return found, origin


def sources_for(suite: str, found: dict[str, str]) -> str:
    """The root's deb822 apt sources: the suite and its updates, and security when known."""
    out = [f"Types: deb\nURIs: {found['debian']}\nSuites: {suite} {suite}-updates\nComponents: main\n"
           f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"]
    if "security" in found:
        out.append(f"Types: deb\nURIs: {found['security']}\nSuites: {suite}-security\nComponents: main\n"
                   f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    return "\n".join(out)


def root_key(suite: str, found: dict[str, str]) -> str:
    text = "\n".join([suite, found["debian"], found.get("security", ""), " ".join(INCLUDE), SETUP_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def acquire_options(conf_texts: dict[str, str], packaged: frozenset[str] = frozenset()) -> dict[str, str]:
    """The apt.conf.d files (name -> text) that set Acquire:: options: the machine's mirror
    may need them in the root too (e.g. Check-Valid-Until for a snapshot mirror). Files that
    belong to a package (`packaged`: appstream's 50appstream sets Acquire::IndexTargets) are
    the machine's release's, not the mirror's: copied into a root, the package's own install
    there stops at a conffile prompt ("end of file on stdin at conffile prompt")."""
    return {name: text for name, text in conf_texts.items()
            if name not in packaged and re.search(r"^\s*Acquire::", text, re.M)}


def local_pip_paths(conf_text: str) -> list[str]:
    """Folders a pip configuration names: find-links folders, and for a local index
    (file:///X/simple) its parent X, since its pages link to files beside it."""
    paths = []
    for m in re.finditer(r"^\s*(find-links|extra-index-url|index-url)\s*=\s*(.+)$", conf_text, re.M):
        for item in m.group(2).split():
            path = item[len("file://"):] if item.startswith("file://") else item
            if path.startswith("/"):
                path = path.rstrip("/")
                paths.append(path if m.group(1) == "find-links" else str(Path(path).parent))
    return paths


# --- the cached root ----------------------------------------------------------------------


def apt_source_files() -> dict[str, str]:
    """This machine's apt source files (path -> text), deb822 and one-line."""
    paths = sorted(SOURCES_DIR.glob("*.sources")) + [SOURCES_LIST] + sorted(SOURCES_DIR.glob("*.list"))
    return {str(p): p.read_text() for p in paths if p.is_file()}


def machine_mirrors() -> dict[str, str]:
    return choose_mirrors(apt_source_files())[0]


def mirror_note() -> str:
    """Which mirror the roots come from, and where that was read (for the logs)."""
    found, origin = choose_mirrors(apt_source_files())
    extra = f", security {found['security']}" if "security" in found else ""
    return f"apt mirror {found['debian']}{extra} (from {origin})"


def root_path(suite: str) -> Path:
    if suite not in SUITES:
        raise RootError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
    return CACHE / "roots" / f"{suite}-{root_key(suite, machine_mirrors())}"


def _run(argv: list[str], timeout: float, **kw) -> None:
    done = subprocess.run(argv, timeout=timeout, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise RootError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


_ANNOUNCED: set[Path] = set()


def build_root(suite: str) -> Path:
    """The cached root of `suite` (debootstrap on first use, under a lock); its path."""
    final = root_path(suite)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{suite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "etc" / "debian_version").is_file():
            if final not in _ANNOUNCED:         # stderr: `debroot.py root` prints only the path on stdout
                print(f"debroot: {suite} root {final.name} (cached), {mirror_note()}", file=sys.stderr, flush=True)
                _ANNOUNCED.add(final)
            return final
        if shutil.which("debootstrap") is None:
            _run([str(PROJECT / "scripts" / "install.sh"), "--debroot"], 900)
        found = machine_mirrors()
        tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        print(f"debroot: debootstrap {suite} into {final} (first run on this machine), {mirror_note()}",
              file=sys.stderr, flush=True)
        try:
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", suite, str(tmp),
                  found["debian"]], DEBOOTSTRAP_TIMEOUT)
            _setup(tmp, suite, found)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, final)
        print(f"debroot: {suite} root ready in {time.monotonic() - started:.0f} s", flush=True)
        return final


def _setup(root: Path, suite: str, found: dict[str, str]) -> None:
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(sources_for(suite, found))
    confs = {p.name: p.read_text() for p in Path("/etc/apt/apt.conf.d").iterdir() if p.is_file()}
    for name, text in acquire_options(confs, packaged_files(Path("/etc/apt/apt.conf.d"), confs)).items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text)
    # package scripts must not start daemons on Debian's configs (scripts/install.sh does the
    # same on a host; here it stays: nothing in the root is ever started by a package)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    # after ca-certificates was installed (it regenerates the bundle): the machine's own
    if CA_BUNDLE.is_file():
        shutil.copyfile(CA_BUNDLE, root / CA_BUNDLE.relative_to("/"))
    for conf in PIP_CONFIGS:
        if conf.exists():
            dest = root / conf.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if conf.is_dir():
                shutil.copytree(conf, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(conf, dest)
    (root / "etc/hostname").write_text(f"kemi-{suite}\n")


# --- the server root: systemd, MariaDB, and the kemi package's dependencies ready to install -----

# what a Debian VoIP server has before kemi: systemd as init (the package's test boots it as PID
# 1), MariaDB (kemi's database), rtpengine (the media relay; without its own Recommends, the
# call-recording daemon and its NFS and video-driver stack, which would triple the packages the
# test installs), iproute2. Kamailio is not there: `apt install ./kemi.deb` brings it.
SERVER_PACKAGES = ("systemd", "systemd-sysv", "dbus", "mariadb-server", "rtpengine-daemon", "iproute2")
SERVER_SETUP_VERSION = "3"               # 3: /etc/hosts
SERVER_TIMEOUT = 1800
CONTROL = Path("debian") / "control"

SERVER_SETUP = r"""
set -euo pipefail
root=$1; shift
mount --make-rprivate /
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }
# what Debian's installer writes and debootstrap does not (Debian 13's rtpengine resolves its
# listen-ng = localhost:2223 through it: "Invalid IP or port 'localhost:2223'" without)
hosts='127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n'
[[ -e "$root/etc/hosts" ]] || printf "$hosts" "$(cat "$root/etc/hostname")" > "$root/etc/hosts"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends $SERVER_PACKAGES >/dev/null
# downloaded, not installed: `apt install ./kemi.deb` takes them from the archive folder
in_root apt-get install -y -qq --download-only "$@" >/dev/null
"""


def package_names(control_text: str, fields: tuple[str, ...] = ("Depends", "Recommends")) -> list[str]:
    """The packages a binary package of debian/control names in `fields` (first alternative,
    without versions; substitution variables such as ${misc:Depends} left out)."""
    names: list[str] = []
    for stanza in re.split(r"\n\s*\n", control_text):
        if not re.search(r"^Package:", stanza, re.M):
            continue
        lines = [line for line in stanza.splitlines() if not line.startswith("#")]
        text = "\n".join(lines)
        for field in fields:
            m = re.search(rf"^{field}:(.*(?:\n[ \t].*)*)", text, re.M)
            if not m:
                continue
            for item in m.group(1).replace("\n", " ").split(","):
                first = item.split("|")[0].strip()
                name = re.split(r"[\s(\[:]", first, maxsplit=1)[0] if first else ""
                if name and not name.startswith("$"):
                    names.append(name)
    return list(dict.fromkeys(names))


def server_root(suite: str, prefetch: list[str]) -> Path:
    """The cached server root of `suite` for a package that depends on `prefetch`; its path."""
    base = build_root(suite)
    key = hashlib.sha256("\n".join([base.name, " ".join(SERVER_PACKAGES), " ".join(sorted(prefetch)),
                                     SERVER_SETUP_VERSION]).encode()).hexdigest()[:12]
    final = CACHE / "roots" / f"{suite}-server-{key}"
    with open(final.parent / f"{suite}-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "etc" / "debian_version").is_file():
            return final
        tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        print(f"debroot: server root {final.name}: {suite} root + {', '.join(SERVER_PACKAGES)}; downloading "
              f"{', '.join(prefetch)} ({mirror_note()})", file=sys.stderr, flush=True)
        try:
            _run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], 600)
            env = dict(os.environ, SERVER_PACKAGES=" ".join(SERVER_PACKAGES))
            _run(["unshare", "--mount", "--fork", "/bin/bash", "-c", SERVER_SETUP, "server", str(tmp), *prefetch],
                 SERVER_TIMEOUT, env=env)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, final)
        print(f"debroot: server root ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        return final


def checkout_server_root(suite: str, checkout: Path) -> Path | None:
    """server_root() for the package `checkout` builds (None: it has no debian/control)."""
    control = checkout / CONTROL
    if not control.is_file():
        return None
    return server_root(suite, package_names(control.read_text()))


def packaged_files(folder: Path, names) -> frozenset[str]:
    """The names in `folder` that an installed package owns (dpkg -S)."""
    owned = set()
    for name in names:
        done = subprocess.run(["dpkg-query", "-S", str(folder / name)], capture_output=True, timeout=60)
        if done.returncode == 0:
            owned.add(name)
    return frozenset(owned)


def pip_local_folders() -> list[str]:
    """Local package folders the machine's pip configuration names (bound read-only)."""
    texts = []
    for conf in PIP_CONFIGS:
        files = sorted(conf.glob("*.conf")) if conf.is_dir() else [conf]
        texts += [f.read_text() for f in files if f.is_file()]
    texts.append("\n".join(f"find-links = {v}" for k, v in os.environ.items() if k == "PIP_FIND_LINKS"))
    return sorted({p for t in texts for p in local_pip_paths(t) if Path(p).is_dir()})


# --- a run in a throwaway overlay, own mount/PID (and, for the tests, network) namespaces -----

INNER = r"""
set -euo pipefail
lower=$1 upper=$2 work=$3 root=$4 command=$5; shift 5
binds=("$@")
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
undo() { umount -R "$root" 2>/dev/null || umount -R -l "$root" 2>/dev/null || true; }
trap undo EXIT
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
for spec in "${binds[@]}"; do
    src=${spec%%=*}; rest=${spec#*=}; dst=${rest%:*}; mode=${rest##*:}
    mkdir -p "$root$dst"
    mount --bind "$src" "$root$dst"
    [[ $mode == ro ]] && mount -o remount,bind,ro "$root$dst"
done
in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH="$PATH_IN_ROOT" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    "${PASS_ENV[@]}" /bin/bash -c "$1"; }
PASS_ENV=()
for v in $(compgen -e); do
    case $v in PIP_*|KEMI_TEST_SLOT|CI|KEMI_FUZZ_COUNT|KEMI_SERVER_ROOT) PASS_ENV+=("$v=${!v}");; esac
done
PASS_ENV+=("KEMI_DEBROOT=$SUITE")
# the install step needs the mirror: the machine's network
in_root "cd $CHECKOUT && $PREPARE"
# the tests: a network namespace of their own, loopback only; sysfs of that namespace
status=0
unshare --net /bin/bash -c '
    set -e
    mount -t sysfs sysfs "$1/sys"
    ip link set lo up 2>/dev/null || chroot "$1" ip link set lo up
    shift; exec "$@"' _ "$root" chroot "$root" /usr/bin/env -i HOME=/root PATH="$PATH_IN_ROOT" LANG=C.UTF-8 \
    TERM="${TERM:-dumb}" "${PASS_ENV[@]}" /bin/bash -c "cd $CHECKOUT && $command" || status=$?
exit $status
"""


def checkout_files(checkout: Path) -> list[str]:
    """The checkout's files as git sees them (tracked and new, not ignored: no .venv, no caches)."""
    done = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RootError(f"{checkout} is not a git checkout: {done.stderr.decode().strip()}")
    return [f for f in done.stdout.decode().split("\0") if f and (checkout / f).exists()]


RUN_PARENT = "/var/tmp"


def sweep_run_dirs() -> None:
    """Remove the overlay folders of runs whose process is gone (killed with SIGKILL: their
    mounts went with their namespace, the folder stayed)."""
    for old in Path(RUN_PARENT).glob("kemi-debroot-*-*-*"):
        pid = old.name.split("-")[3]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)


def run(suite: str, checkout: Path, command: str, prepare: str = "scripts/install.sh --test",
        interactive: bool = False, timeout: float = RUN_TIMEOUT, outputs: dict | None = None,
        server: bool = False) -> int:
    """`outputs`: host folder -> folder in the root, bound read-write (what must outlive the run);
    `server`: the server root of the checkout's package bound read-only ($KEMI_SERVER_ROOT)."""
    lower = build_root(suite)
    server_path = checkout_server_root(suite, checkout) if server else None
    sweep_run_dirs()
    run_dir = Path(tempfile.mkdtemp(prefix=f"kemi-debroot-{suite}-{os.getpid()}-", dir=RUN_PARENT))
    try:
        upper, work, root = (run_dir / n for n in ("upper", "work", "root"))
        for d in (upper, work, root):
            d.mkdir()
        # the checkout is written straight into the overlay's upper layer (the root's /root/kemi)
        dest = upper / CHECKOUT_IN_ROOT.lstrip("/")
        dest.mkdir(parents=True)
        (upper / "root").chmod(0o700)
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for rel in checkout_files(checkout):
                    tar.add(checkout / rel, arcname=rel, recursive=False)
            buf.seek(0)
            with tarfile.open(fileobj=buf) as tar:
                tar.extractall(dest)       # our own archive, just made
        binds = []
        for name, inside in ((f"apt-{suite}", "/var/cache/apt/archives"), (f"pip-{suite}", "/root/.cache/pip")):
            (CACHE / name / "partial").mkdir(parents=True, exist_ok=True)
            binds.append(f"{CACHE / name}={inside}:rw")
        binds += [f"{p}={p}:ro" for p in pip_local_folders()]
        for host, inside in (outputs or {}).items():
            Path(host).mkdir(parents=True, exist_ok=True)
            binds.append(f"{host}={inside}:rw")
        env = dict(os.environ, SUITE=suite, CHECKOUT=CHECKOUT_IN_ROOT, PREPARE=prepare, PATH_IN_ROOT=PATH_IN_ROOT)
        if server_path:
            binds.append(f"{server_path}={server_path}:ro")
            env["KEMI_SERVER_ROOT"] = str(server_path)
        argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "/bin/bash", "-c", INNER, "inner",
                str(lower), str(upper), str(work), str(root), "exec bash -i" if interactive else command, *binds]
        proc = subprocess.Popen(argv, env=env, start_new_session=not interactive)
        try:
            return proc.wait(None if interactive else timeout)
        except subprocess.TimeoutExpired:
            print(f"debroot: {suite} run exceeded {timeout:.0f} s: stopped", file=sys.stderr)
            os.killpg(proc.pid, 9)      # unshare's child is PID 1 of the run: all of it ends
            proc.wait(30)
            return 124
        except KeyboardInterrupt:
            os.killpg(proc.pid, 9)
            proc.wait(30)
            return 130
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/debroot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("root", "server", "test", "shell", "run", "bench"))
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("checkout", nargs="?", type=Path, default=PROJECT)
    parser.add_argument("command", nargs="?", default="make test", help="run: the command (default make test)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("debroot: needs root (debootstrap, mounts, namespaces)", file=sys.stderr)
        return 1
    try:
        if args.action == "root":
            print(build_root(args.suite))
            return 0
        if args.action == "server":
            print(checkout_server_root(args.suite, args.checkout.resolve()))
            return 0
        started = time.monotonic()
        if args.action == "shell":
            return run(args.suite, args.checkout.resolve(), "", interactive=True)
        if args.action == "bench":
            out = args.checkout.resolve() / "bench" / f"results-{args.suite}"
            extra = os.environ.get("KEMI_BENCH_ARGS", "")
            target = os.environ.get("KEMI_BENCH_TARGET", "bench")      # or bench-instructions
            if target not in BENCH_TARGETS:
                raise RootError(f"KEMI_BENCH_TARGET={target}: one of {', '.join(BENCH_TARGETS)}")
            command = f"make {target} BENCH_ARGS='--out /root/bench-out {extra}'"
            # the compiled routing (--configs ...python-compiled) builds with the venv's mypyc:
            # made while the network is there (the run itself has none)
            prepare = "scripts/install.sh --bench" + (" && scripts/install.sh --compile"
                                                      if "python-compiled" in extra else "")
            status = run(args.suite, args.checkout.resolve(), command, prepare=prepare,
                         outputs={out: "/root/bench-out"})
            print(f"debroot: {command} on Debian {SUITES[args.suite]} exited {status} after "
                  f"{time.monotonic() - started:.0f} s; results in {out}", flush=True)
            return status
        command = args.command if args.action == "run" else "make test"
        status = run(args.suite, args.checkout.resolve(), command, server=True)
        print(f"debroot: {command} on Debian {SUITES[args.suite]} ({args.suite}) exited {status} "
              f"after {time.monotonic() - started:.0f} s", flush=True)
        return status
    except RootError as exc:
        print(f"debroot: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
