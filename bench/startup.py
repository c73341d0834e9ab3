"""Start-up time of `migrate --help`, `migrate status` and `migrate plan` (goals: help and
status under 0.3 s; plan no dearer than status).

Prints the median of N runs of each, next to a bare `python -c pass` and to
`ansible-playbook --version` for reference, and each command's time as a share of
ansible-playbook's (a ratio stays comparable on a loaded machine, where seconds do not).
The runs are interleaved, so a burst of load falls on every command alike. Uses the
interpreter's own `migrate` entry point (not a version-manager shim).
Run: python bench/startup.py [N]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def timed(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """The median seconds of each command, the commands taking turns run after run."""
    seen: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            seen[name].append(once(cmd))
    return {name: statistics.median(times) for name, times in seen.items()}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    entry = Path(sys.executable).parent / "migrate"
    migrate = [str(entry)] if entry.exists() else [sys.executable, "-m", "orchestrator"]
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "proj"
        for part in ("migration.yaml", "phases", "playbooks", "rollback", "inventory"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, proj / part)
            elif src.exists():
                proj.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, proj / part)
        env_project = ["--project", str(proj)]
        commands = {"python -c pass": [sys.executable, "-c", "pass"],
                    "migrate --help": [*migrate, "--help"],
                    "migrate status": [*migrate, *env_project, "status"],
                    "migrate plan 1": [*migrate, *env_project, "plan", "1", "--host", "main"]}
        ansible = shutil.which("ansible-playbook")
        if ansible is not None:
            commands["ansible-playbook --version"] = [ansible, "--version"]
        medians = timed(commands, runs)
    reference = medians.get("ansible-playbook --version")
    for name, seconds in medians.items():
        share = f"  {seconds / reference:.2f}x ansible-playbook --version" \
            if reference and name.startswith("migrate") else ""
        print(f"{name:<27} {seconds:.3f} s{share}")
    if not (ROOT / "migration.yaml").exists():
        print("(no project: status and plan took their error path)")
    print(f"(median of {runs}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
