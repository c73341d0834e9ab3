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
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        current = todo.pop(0)
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_trees(roots: list[int]) -> list[int]:
    """SIGKILL each root and everything below it; returns the pids signalled.

    The trees are read in full before the first signal, because a killed parent's
    children are handed to init at once and could no longer be told apart.
    """
    doomed: list[int] = []
    for root in roots:
        for pid in [root, *descendants(root)]:
            if pid not in doomed:
                doomed.append(pid)
    signalled = []
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        signalled.append(pid)
    return signalled


def kill_descendants(pid: int | None = None) -> list[int]:
    """SIGKILL the whole tree below `pid` (default: this process), not `pid` itself."""
    me = os.getpid() if pid is None else pid
    return kill_trees([child for child, parent in _parents().items() if parent == me])
