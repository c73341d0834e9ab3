"""The process tree walk that a hard stop uses, on real processes."""

from __future__ import annotations

import os
import subprocess
import time

from orchestrator.runners.descendants import descendants, kill_descendants, kill_trees


def started(tree: subprocess.Popen[bytes], count: int) -> list[int]:
    """The pids below `tree` once there are `count` of them (at most 20 s)."""
    deadline = time.monotonic() + 20
    while len(below := descendants(tree.pid)) < count:
        assert time.monotonic() < deadline, below
        time.sleep(0.02)
    return below


def running(pid: int) -> bool:
    """Is `pid` a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2:][:1] not in ("Z", "X", "")


def test_finds_and_kills_grandchildren_but_not_the_parent_or_strangers() -> None:
    stranger = subprocess.Popen(["sleep", "31.5"])
    tree = subprocess.Popen(["bash", "-c", "sleep 32.5 & sleep 33.5 & wait"])
    try:
        below = started(tree, 2)
        deadline = time.monotonic() + 10
        mine = descendants(os.getpid())
        assert tree.pid in mine and stranger.pid in mine and set(below) <= set(mine)
        assert mine.index(tree.pid) < min(mine.index(p) for p in below)  # parents first
        killed = kill_descendants(tree.pid)
        assert sorted(killed) == sorted(below)
        while descendants(tree.pid):  # bash reaps its killed children, then ends
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)
        assert tree.wait(timeout=10) == 0
        assert stranger.poll() is None  # not below the tree: untouched
    finally:
        stranger.kill()
        tree.kill()
        stranger.wait()
        tree.wait()


def test_a_tree_that_forks_setsid_children_while_it_is_killed_leaves_none() -> None:
    """A child forked between the read of the tree and the kill (ansible-playbook starting
    the next task's worker, which calls setsid()) would be handed to init and run on."""
    from tests.support.projects import running

    token = "sleep 311.25"
    tree = subprocess.Popen(["bash", "-c", f"while :; do setsid {token} & done"])
    try:
        deadline = time.monotonic() + 10
        while len(running(token)) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        kill_trees([tree.pid])
        assert tree.wait(timeout=10) != 0
        deadline = time.monotonic() + 10
        while running(token):  # killed ones leave /proc once init has reaped them
            assert time.monotonic() < deadline, running(token)
            time.sleep(0.05)
    finally:
        tree.kill()
        tree.wait()
        subprocess.run(["pkill", "-KILL", "-f", token], check=False)


def test_the_killed_processes_are_dead_when_it_returns() -> None:
    """A SIGKILL is carried out when its process is next scheduled: the caller that then
    says the step's work has stopped (and a check of /proc just after) must be right."""
    tree = subprocess.Popen(["bash", "-c", "for i in $(seq 300); do sleep 312.5 & done; wait"])
    try:
        started(tree, 300)
        killed = kill_trees([tree.pid])
        assert len(killed) == 301
        assert [pid for pid in killed if running(pid)] == []
    finally:
        tree.kill()
        tree.wait()
        subprocess.run(["pkill", "-KILL", "-f", "sleep 312.5"], check=False)
