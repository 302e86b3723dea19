"""A Debian machine booted with systemd as PID 1, in namespaces of its own (no podman, no
systemd-nspawn: neither runs here): tests/e2e/test_deb_package.py.

The machine's disk is a throwaway overlay (its writes in a tmpfs) over a read-only root, the
server root of scripts/debroot.py. It runs in its own mount, PID, UTS, IPC, network and cgroup
namespaces: systemd is PID 1 there and manages its services in a cgroup2 hierarchy of its own
(a child of the machine's, made for it and removed after), its network is loopback only (the
test's SIPp enters it by `ip netns exec`; a NIC with a documentation address on request), its
/dev a tmpfs with the few devices a server
needs, so nothing it does (journald's /dev/log, MariaDB's port 3306, Kamailio's 5060) touches
the host's. Everything ends with its PID 1: `halt` from the test, or a kill of the process
tree.

    with Machine(lower, "kemi2-1234-deb", nic="192.0.2.1/24") as m:
        m.sh("systemctl is-system-running")       # a command as root inside, via nsenter
        m.put("/root/kemi.deb", data)              # a file into its disk
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RUN_PARENT = Path("/var/tmp")
BOOT_TIMEOUT = 90
HALT_TIMEOUT = 60
PATH_INSIDE = "/usr/sbin:/usr/bin:/sbin:/bin"
# the devices a server's programs open (a tmpfs /dev: systemd-journald would otherwise make
# /dev/log on the host's /dev)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# stage 1: a private mount namespace; the cgroup for the machine; its disk (overlay, tmpfs upper).
# stage 2 (in new PID/UTS/IPC/network/cgroup namespaces): the API file systems, then systemd.
LAUNCH = r"""
set -euo pipefail
lower=$1 run=$2 cgname=$3 nic=$4
mount --make-rprivate /
mkdir -p "$run/cg" "$run/disk" "$run/root"
mount -t cgroup2 cgroup2 "$run/cg"
cg="$run/cg/$cgname"
mkdir "$cg"
echo $$ > "$cg/cgroup.procs"
mount -t tmpfs -o mode=755 tmpfs "$run/disk"
mkdir "$run/disk/upper" "$run/disk/work"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$run/disk/upper,workdir=$run/disk/work" "$run/root"
# package scripts start services on this machine, as on a real one (the root forbids it)
rm -f "$run/root/usr/sbin/policy-rc.d"
status=0
unshare --pid --fork --kill-child --uts --ipc --net --cgroup /bin/bash -c '
    set -euo pipefail
    r=$1 nic=$2
    # the network of the machine: loopback, and a NIC with the given address (a veth pair,
    # both ends here) when asked, up before its services start (no quote marks in here)
    ip link set lo up
    if [[ -n $nic ]]; then
        ip link add nic0 type veth peer name nic0p
        ip addr add "$nic" dev nic0
        ip link set nic0p up && ip link set nic0 up
    fi
    mount -t proc proc "$r/proc"
    mount -t sysfs -o ro sysfs "$r/sys"
    mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
    mount -t tmpfs -o mode=755 tmpfs "$r/dev"
    for n in '"${DEVICES}"'; do touch "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"; done
    mkdir "$r/dev/pts" "$r/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"; ln -s /proc/self/fd "$r/dev/fd"
    exec chroot "$r" /usr/bin/env -i container=kemi-test PATH='"$PATH_INSIDE"' /lib/systemd/systemd
' stage2 "$run/root" "$nic" &
echo $! > "$run/unshare.pid"
wait $! || status=$?
# the machine is gone: its cgroups are empty, remove them (children first)
find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
exit $status
"""


class MachineError(RuntimeError):
    pass


@dataclass
class Done:
    rc: int
    out: str

    def __str__(self) -> str:
        return f"exit {self.rc}:\n{self.out[-4000:]}"


class Machine:
    def __init__(self, lower: Path, name: str, nic: str = ""):
        """`nic`: an address/prefix for the machine's one NIC (documentation ranges only)."""
        if nic:
            from kemi_tools.stack.netns import check_documentation_address
            check_documentation_address(nic)
        self.lower, self.name, self.nic = Path(lower), name, nic
        self.run_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.netns: str | None = None

    # -- start / stop --

    def start(self) -> Machine:
        sweep()
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"kemi-machine-{os.getpid()}-", dir=RUN_PARENT))
        env = dict(os.environ, DEVICES=" ".join(DEVICES), PATH_INSIDE=PATH_INSIDE)
        self.log = open(self.run_dir / "launch.log", "w")  # noqa: SIM115  (closed by stop())
        self.proc = subprocess.Popen(["unshare", "--mount", "--fork", "/bin/bash", "-c", LAUNCH, "launch",
                                      str(self.lower), str(self.run_dir), f"{self.name}-{self.run_dir.name}", self.nic],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        (self.run_dir / "launcher.pid").write_text(str(self.proc.pid))
        try:
            self._boot()
        except BaseException:
            self.stop()
            raise
        return self

    def _boot(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.pid1 is None:
            self._check_alive()
            pid_file = self.run_dir / "unshare.pid"
            if pid_file.is_file() and pid_file.read_text().strip():
                children = Path(f"/proc/{pid_file.read_text().strip()}/task/{pid_file.read_text().strip()}/children")
                kids = children.read_text().split() if children.exists() else []
                if kids:
                    self.pid1 = int(kids[0])
            if time.monotonic() > deadline:
                raise MachineError(f"the machine did not start in {BOOT_TIMEOUT} s: {self.launch_log()}")
            time.sleep(0.1)
        state = ""
        while state not in ("running", "degraded"):
            if time.monotonic() > deadline:
                raise MachineError(f"systemd did not finish booting in {BOOT_TIMEOUT} s (state {state!r}):\n"
                                   f"{self.sh('systemctl list-jobs --no-pager; systemctl --failed --no-pager')}")
            self._check_alive()
            state = self.sh("systemctl is-system-running 2>/dev/null", check=False).out.strip()
            time.sleep(0.3)
        # the machine's network by name, for `ip netns exec` (SIPp)
        attached = subprocess.run(["ip", "netns", "attach", self.name, str(self.pid1)], capture_output=True, text=True)
        if attached.returncode != 0:
            raise MachineError(f"ip netns attach {self.name} {self.pid1}: {attached.stderr.strip()}")
        self.netns = self.name

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise MachineError(f"the machine exited ({self.proc.returncode}): {self.launch_log()}")

    def launch_log(self) -> str:
        self.log.flush()
        return (self.run_dir / "launch.log").read_text(errors="replace")[-3000:]

    def stop(self) -> list[str]:
        """Halt the machine (systemd stops its services), then make sure every process is gone;
        what could not be cleaned up."""
        problems = []
        if self.netns:
            done = subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"ip netns delete {self.netns}: {done.stderr.strip()}")
            self.netns = None
        if self.proc is None:
            return problems
        if self.pid1 and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGRTMIN + 3)      # systemd: halt (a container exits)
            try:
                self.proc.wait(HALT_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"the machine did not power off in {HALT_TIMEOUT} s: killed")
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)        # --kill-child: PID 1 and all below go
            self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.proc = None
        return problems

    def __enter__(self) -> Machine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inside --

    def sh(self, script: str, check: bool = True, timeout: float = 300, user: str | None = None) -> Done:
        """`script` by bash inside the machine, as root (or `user`), with a clean environment."""
        argv = ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
                "/usr/bin/env", "-i", f"PATH={PATH_INSIDE}", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb",
                "DEBIAN_FRONTEND=noninteractive"]
        argv += ["runuser", "-u", user, "--", "/bin/bash", "-c", script] if user else ["/bin/bash", "-c", script]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        result = Done(done.returncode, done.stdout + done.stderr)
        if check and done.returncode != 0:
            raise MachineError(f"in the machine: {script}\n{result}")
        return result

    def path(self, inside: str) -> Path:
        """A path inside the machine, as this process can reach it (through PID 1's root)."""
        return Path(f"/proc/{self.pid1}/root") / inside.lstrip("/")

    def put(self, inside: str, data: bytes, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)


def sweep() -> None:
    """Remove the run folders of machines whose test process and launcher are both gone (killed
    with SIGKILL: their mounts went with their namespace, the folder stayed)."""
    for old in RUN_PARENT.glob("kemi-machine-*-*"):
        owner = old.name.split("-")[2]
        launcher = (old / "launcher.pid").read_text().strip() if (old / "launcher.pid").is_file() else ""
        alive = [p for p in (owner, launcher) if p.isdigit() and Path(f"/proc/{p}").exists()]
        if owner.isdigit() and not alive:
            shutil.rmtree(old, ignore_errors=True)
