"""Start-up time of `migrate --help` and `migrate status` (goal: under 0.3 s each).

Prints the median of N runs of each, next to a bare `python -c pass` for reference,
using the interpreter's own `migrate` entry point (not a version-manager shim).
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


def timed(cmd: list[str], runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


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
        print(f"python -c pass        {timed([sys.executable, '-c', 'pass'], runs):.3f} s")
        print(f"migrate --help        {timed([*migrate, '--help'], runs):.3f} s")
        print(f"migrate status        {timed([*migrate, *env_project, 'status'], runs):.3f} s"
              + ("" if (proj / "migration.yaml").exists() else "  (no project: error path)"))
    print(f"(median of {runs}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
