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
import signal
import time


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
    signalled = []
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        signalled.append(pid)
    deadline = time.monotonic() + settle
    alive = [pid for pid in signalled if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [pid for pid in alive if is_alive(pid)]
    return signalled


def is_alive(pid: int) -> bool:
    """Is `pid` still a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except OSError:
        return False
    state = raw[raw.rfind(")") + 2:][:1]
    return state not in ("Z", "X", "")


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
