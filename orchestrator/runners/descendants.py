"""The processes started under us, so that stopping a step stops all of its work.

Two things escape a plain kill. ansible-runner starts `ansible-playbook` in a session
of its own (on a pty), so a second Ctrl-C that ends the orchestrator at once would
leave the playbook going on behind an `interrupted` run. And ansible-core's task
workers call setsid(), so ansible-runner's own cancel (SIGKILL to the playbook's
process group) kills the playbook but not the worker running the task: the cancelled
step would go on changing the host while its rollback runs. Walking the tree by
parent pid finds them all. Linux only (/proc); elsewhere nothing is found.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    table: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                raw = fh.read()
        except OSError:
            continue  # gone meanwhile
        # the command name (field 2) may hold spaces and parentheses; split after the last ')'
        fields = raw[raw.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            table[int(name)] = int(fields[1])
    return table


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before their children."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    return _below([pid], children)[1:]


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_trees(roots: list[int], settle: float = 5.0) -> list[int]:
    """SIGKILL each root and everything below it; returns the pids signalled.

    The trees are frozen (SIGSTOP) before the first kill, and read again until a read
    finds nothing new: a process forking while the tree is read (ansible-playbook
    starting the next task's worker, which calls setsid()) would otherwise leave a child
    that nobody saw, handed to init once its parent dies and running on. A stopped
    process forks no more, and its children keep it as their parent until it dies.

    It returns once every killed process has died, or after `settle` seconds: a SIGKILL
    is carried out when its process is next scheduled, later than `kill()` returns on a
    busy machine, and a runner that reports the step stopped must be right (CI listed
    a cancelled play's `sleep` just after). The wait is on each process's pidfd, opened
    while it is frozen (so its pid cannot have been reused), which becomes readable when
    the process exits.
    """
    frozen: list[int] = []
    while True:
        children: dict[int, list[int]] = {}
        for child, parent in _parents().items():
            children.setdefault(parent, []).append(child)
        new = [pid for pid in _below(roots, children) if pid not in frozen]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                continue  # gone meanwhile
            frozen.append(pid)
    exits = _exit_waiter(frozen)
    signalled = []
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        signalled.append(pid)
    exits(settle)
    return signalled


def _exit_waiter(pids: list[int]) -> Callable[[float], None]:
    """A wait, of at most the seconds it is given, for `pids` to exit (pidfds opened now;
    a pid already gone, or one past the open-file limit, is not waited for)."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            continue

    def wait(limit: float) -> None:
        try:
            waiting = select.poll()
            for fd in fds:
                waiting.register(fd, select.POLLIN)
            left, deadline = len(fds), time.monotonic() + limit
            while left and (ms := (deadline - time.monotonic()) * 1000) > 0:
                for fd, _ in waiting.poll(ms):
                    waiting.unregister(fd)
                    left -= 1
        finally:
            for fd in fds:
                os.close(fd)

    return wait


def _below(roots: list[int], children: dict[int, list[int]]) -> list[int]:
    """The roots and everything below them, parents before their children."""
    found: list[int] = []
    todo = list(roots)
    while todo:
        current = todo.pop(0)
        if current not in found:
            found.append(current)
            todo.extend(children.get(current, ()))
    return found


def kill_descendants(pid: int | None = None) -> list[int]:
    """SIGKILL the whole tree below `pid` (default: this process), not `pid` itself."""
    me = os.getpid() if pid is None else pid
    return kill_trees([child for child, parent in _parents().items() if parent == me])
