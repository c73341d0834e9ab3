"""`migrate validate` of the repository's own project (goal: at most 0.5 s).

Prints the median of N runs of the whole command (interpreter start-up, imports, every
file loaded and checked against its schema and the inventory), next to the in-process
time of loading and checking the project alone, so a slow start-up and a slow
validation are told apart.
Run: python bench/validate.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.5


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    entry = Path(sys.executable).parent / "migrate"
    migrate = [str(entry)] if entry.exists() else [sys.executable, "-m", "orchestrator"]
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run([*migrate, "--project", str(ROOT), "validate"],
                             capture_output=True, text=True, check=False)
        wall.append(time.perf_counter() - t0)
        if res.returncode != 0:
            sys.exit(f"validate failed: {res.stderr.strip()}")
    sys.path.insert(0, str(ROOT))
    import orchestrator.metrics.sources  # noqa: F401 - registers the sources, as App does
    from orchestrator.config.project import checked_project

    inner = []
    for _ in range(runs):
        t0 = time.perf_counter()
        checked_project(ROOT)
        inner.append(time.perf_counter() - t0)
    median = statistics.median(wall)
    print(f"migrate validate (root project)  {median:.3f} s   goal <= {GOAL} s  "
          f"{'ok' if median <= GOAL else 'OVER'}")
    print(f"  load and check in-process      {statistics.median(inner) * 1000:.1f} ms")
    print(f"(median of {runs}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
