"""[runtime]: where Kamailio keeps its pid file and control sockets, its log level, its memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kemi.schema import require

if TYPE_CHECKING:
    from kemi.settings.model import Settings

LOG_LEVELS = {-3: "alert", -2: "crit", -1: "err", 0: "warn", 1: "notice", 2: "info", 3: "debug"}


@dataclass(frozen=True)
class RuntimeSettings:
    # where Kamailio puts its pid file and control sockets (kamcmd / kamctl use them)
    dir: str = "/run/kamailio"
    # Kamailio debug level: -3 alert .. 3 debug
    log_level: int = 2
    # Kamailio's shared memory (MB, its shm_mem_size); 0 = Kamailio's default (64). A cluster
    # node with many contacts needs more: each replicated save holds shm per peer for seconds
    shm_mb: int = 0

    @property
    def ctl_socket(self) -> str:
        return f"{self.dir}/kamailio_ctl"

    @property
    def rpc_fifo(self) -> str:
        return f"{self.dir}/kamailio_rpc.fifo"

    @property
    def rpc_socket(self) -> str:
        # jsonrpcs' datagram socket: its default is relative to Kamailio's compiled-in run dir,
        # shared by every Kamailio on the host; two starting at once fail to bind it
        return f"{self.dir}/kamailio_rpc.sock"

    @property
    def pid_file(self) -> str:
        return f"{self.dir}/kamailio.pid"


def validate(s: Settings, source: str) -> None:
    rt = s.runtime
    require(rt.dir.startswith("/") and '"' not in rt.dir, "runtime.dir", f"{rt.dir!r} is not an absolute path",
            'write e.g. "/run/kamailio"', source)
    require(rt.log_level in LOG_LEVELS, "runtime.log_level", f"{rt.log_level} is not a Kamailio debug level",
            "use -3 (alert) to 3 (debug)", source)
    require(rt.shm_mb == 0 or 16 <= rt.shm_mb <= 65536, "runtime.shm_mb", f"{rt.shm_mb} is out of range",
            "use 0 (Kamailio's default, 64 MB) or 16 to 65536 MB", source)


def process_lines(s: Settings) -> list[str]:
    rt = s.runtime
    return [
        f"#!define LOG_LEVEL {rt.log_level}",
        f'#!define CTL_SOCKET "unix:{rt.ctl_socket}"',
        f'#!define RPC_FIFO "{rt.rpc_fifo}"',
        f'#!define RPC_SOCKET "{rt.rpc_socket}"',
    ]


def memory_lines(s: Settings) -> list[str]:
    return [f"shm_mem_size={s.runtime.shm_mb}"] if s.runtime.shm_mb else []
