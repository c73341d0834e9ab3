"""Regenerate the README's screenshots from real runs: python docs/screenshots.py

- docs/live-view.txt and .png: `migrate phase` in a 120x34 tmux terminal, captured
  right after a trigger fired (the tests' live-view project: two local hosts, a real
  playbook, a scripted VRAM metric that breaches its limit 6 s in);
- docs/report.png: that run's `report --format html` in headless Chromium.

Needs tmux and chromium (both installed by .ci/run). The PNG of the terminal is the
captured screen, colours included, drawn by rich's SVG export and Chromium.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from tests.reporting.conftest import MIGRATION, PHASE  # noqa: E402
from tests.support.projects import Proj, make_project  # noqa: E402


def live_project(tmp: Path) -> Proj:
    """The tests' live-view project (tests/reporting/conftest.py): two local hosts, a real
    playbook, a scripted VRAM metric that breaches its limit 6 s in."""
    proj = make_project(tmp, MIGRATION)
    proj.phase(1, "live", PHASE)
    return proj


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "migrate-docs", *args], capture_output=True,
                          text=True, check=False).stdout


def chromium(*args: str) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--virtual-time-budget=3000", *args],
                   capture_output=True, check=True, timeout=120)


def main() -> None:
    from rich.console import Console
    from rich.text import Text

    with tempfile.TemporaryDirectory() as tmp:
        proj = live_project(Path(tmp))
        cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "orchestrator",
                                                "--project", str(proj.root)])
        tmux("new-session", "-d", "-x", "120", "-y", "34", "-s", "docs",
             f"cd {shlex.quote(str(proj.root))} && env -u CI TERM=xterm-256color "
             f"{cmd} phase 1 --host all; sleep 60")
        try:
            deadline = time.monotonic() + 120
            while "undo" not in tmux("capture-pane", "-p", "-t", "docs"):
                if time.monotonic() > deadline:
                    raise SystemExit("the trigger never fired")
                time.sleep(0.2)
            time.sleep(0.6)
            ansi = tmux("capture-pane", "-p", "-e", "-t", "docs").rstrip() + "\n"
            while "EXIT" not in tmux("capture-pane", "-p", "-t", "docs") and \
                    "outcome:" not in tmux("capture-pane", "-p", "-t", "docs"):
                time.sleep(0.5)
        finally:
            tmux("kill-server")
        plain = Text.from_ansi(ansi).plain
        (DOCS / "live-view.txt").write_text(
            "\n".join(line.rstrip() for line in plain.splitlines()).strip() + "\n")
        console = Console(record=True, width=120, file=open(os.devnull, "w"),  # noqa: SIM115
                          force_terminal=True, color_system="truecolor")
        console.print(Text.from_ansi(ansi))
        svg = Path(tmp) / "live.svg"
        text = console.export_svg(title="migrate phase 1 --host all")
        width, height = (math.ceil(float(v)) for v in
                         re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', text).groups())  # type: ignore[union-attr]
        page = Path(tmp) / "live.html"
        page.write_text("<html><body style='margin:0;background:#fff'>" + text
                        + "</body></html>")
        del svg
        chromium(f"--screenshot={DOCS / 'live-view.png'}", f"--window-size={width},{height}",
                 page.as_uri())

        history = proj.migrate("--output", "json", "history")
        run_id = json.loads(history.stdout)["events"][-1]["run_id"]
        written = proj.migrate("report", run_id, "--format", "html")
        report = Path(written.stdout.strip().splitlines()[-1])  # the page's path
        if not report.is_file():
            raise SystemExit(f"no report page: {written.stdout[-300:]} {written.stderr[-300:]}")
        chromium(f"--screenshot={DOCS / 'report.png'}", "--window-size=1200,1500",
                 report.as_uri())
    print("wrote", *(DOCS / n for n in ("live-view.txt", "live-view.png", "report.png")))


if __name__ == "__main__":
    main()
