"""The live view on a real terminal: `migrate phase` in tmux, the screen read at three moments.

tmux is the terminal emulator: `capture-pane` gives the screen as a person sees it
(the redrawn region, not the escape codes). The project is sandbox-like: two
local-connection hosts, a real playbook step, a command step and a wait, and a
scripted VRAM metric that breaches its limit 6 s into the phase, so the trigger fires
while a step runs and the phase rolls back. Under CI=true a missing tmux fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.projects import Proj
from tests.support.real_parts import require

pytestmark = pytest.mark.integration

class Screen:
    """A tmux server of our own (its own socket), one window of 120 x 40."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"migrate-live-{os.getpid()}"
        self.log = tmp_path / "screens.txt"

    def tmux(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                             text=True, timeout=30)
        return res.stdout

    def start(self, command: str) -> None:
        # CI=true would (rightly) turn the live view off; this terminal is a person's
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "live",
                  f"env -u CI TERM=xterm-256color {command}; echo EXIT=$?; sleep 120")

    def text(self) -> str:
        screen = self.tmux("capture-pane", "-p", "-t", "live")
        with self.log.open("a") as f:
            f.write(screen + "\n" + "=" * 120 + "\n")
        return screen

    def wait_for(self, what: str, ok: Callable[[str], bool], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if ok(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {what}:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[Screen]:
    require(shutil.which("tmux") is not None, "tmux is not installed")
    s = Screen(tmp_path)
    try:
        yield s
    finally:
        s.close()


def grid_row(screen: str, host: str) -> str:
    return next((line for line in screen.splitlines() if line.startswith(f"{host} ")), "")


def test_live_view_while_running_after_the_fire_and_at_the_end(live_project: Proj,
                                                               screen: Screen) -> None:
    proj = live_project
    migrate = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "orchestrator",
                                                 "--project", str(proj.root)])
    screen.start(f"{migrate} phase 1 --host all")

    # 1. while a step runs: the grid with the running step and its elapsed time, every
    # step of the phase as a column, the triggers with their values against their limits
    running = screen.wait_for("a running step and trigger values",
                              lambda s: "▶" in grid_row(s, "main") and "5000" in s)
    assert "migrate phase · run " in running and "phase 1" in running
    header = next(line for line in running.splitlines() if line.startswith("host "))
    assert header.split()[:5] == ["host", "state", "backup", "deploy", "soak"]
    assert "running" in grid_row(running, "main") and "running" in grid_row(running, "pc2")
    row = next(line for line in running.splitlines() if line.startswith("vram_degradation"))
    assert row.split()[1:5] == ["main", "5000", "6000", "—"] or \
        row.split()[1:5] == ["pc2", "5000", "6000", "—"], row
    assert "triggers: " not in running  # the old every-2-s value lines are gone

    # 2. after the trigger fired: FIRING with value, limit and how long it has breached;
    # the fire's own line scrolled above the region; the hosts rolling back
    fired = screen.wait_for("the fire", lambda s: "FIRING" in s and "-> rollback" in s)
    row = next(line for line in fired.splitlines()
               if line.startswith("vram_degradation") and "FIRING" in line)
    assert row.split()[2:5] == ["6500", "6000", "—"], row
    assert row.split()[-1].endswith("s")  # breaching for
    # both hosts breach together: whichever the poll folds first fires, after 2-3 s
    assert re.search(r"trigger vram_degradation: 6500 > 6000 for [23]s on (main|pc2) "
                     r"-> rollback", fired), fired

    # 3. at the end: the grid as it ended and the outcome in one line
    end = screen.wait_for("the end", lambda s: "EXIT=" in s)
    assert "EXIT=1" in end
    assert "rolled back" in grid_row(end, "main") and "rolled back" in grid_row(end, "pc2")
    assert "↩ undone" in grid_row(end, "main")
    outcome = [line for line in end.splitlines() if line.startswith("outcome: ")]
    assert len(outcome) == 1, end
    assert "phase 1 rolled_back: trigger vram_degradation: 6500 > 6000" in outcome[0]
    assert not (proj.markers / "main-backup").exists()  # the rollback really ran


def test_in_a_pipe_plain_lines_without_escape_codes(live_project: Proj) -> None:
    proj = live_project
    res = proj.migrate("phase", "1", "--host", "all", timeout=180)
    assert res.returncode == 1, res.stderr
    assert "\x1b" not in res.stderr and "\x1b" not in res.stdout
    lines = res.stderr.splitlines()
    assert "  trigger vram_degradation pending on main: 6500 vs limit 6000" in lines
    assert not any(line.lstrip().startswith("triggers:") for line in lines)
    assert len(lines) < 30, res.stderr
