"""The process tree walk that a hard stop uses, on real processes."""

from __future__ import annotations

import os
import subprocess
import time

from orchestrator.runners.descendants import descendants, kill_descendants


def test_finds_and_kills_grandchildren_but_not_the_parent_or_strangers() -> None:
    stranger = subprocess.Popen(["sleep", "31.5"])
    tree = subprocess.Popen(["bash", "-c", "sleep 32.5 & sleep 33.5 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(descendants(tree.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        below = descendants(tree.pid)
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
