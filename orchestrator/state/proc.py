"""Who holds a lock: a process identified so that a recycled pid is not mistaken for it."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses; split after the last ')'
    rest = raw[raw.rfind(")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start: int  # clock ticks since boot, 0 when unknown
    machine: str

    @classmethod
    def current(cls) -> ProcessId:
        pid = os.getpid()
        return cls(pid=pid, start=_start_ticks(pid) or 0, machine=socket.gethostname())

    def is_alive(self) -> bool:
        """True unless we can prove the process is gone (only provable on this machine)."""
        if self.machine != socket.gethostname():
            return True
        if sys.platform != "linux":  # pragma: no cover
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        ticks = _start_ticks(self.pid)
        if ticks is None:
            return False
        if self.start and ticks != self.start:
            return False  # the pid was reused by another process
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")  # a zombie has finished its work
