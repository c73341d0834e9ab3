"""`migrate status --all` on a program: 2 migrations x 200 hosts x 4 phases in one journal.

Goals (issue 22): at most 0.3 s on a shared SQLite journal and 0.5 s on PostgreSQL,
measured as an operator sees it: a new `migrate status --all` process each time
(imports, project load, journal open with its schema check and reap, one query for
every phase state of every migration), median of N. Also times `migrate status` (this
migration only) for comparison.

The journal is filled through the Journal API as runs would leave it (every phase
completed on every host, with its events), then both commands run against it.
Run: python bench/status_all.py [--hosts 200] [--runs 7] [--no-pg]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.core.states import PhaseState  # noqa: E402
from orchestrator.state.journal import Journal  # noqa: E402
from orchestrator.state.open import StateSettings, open_state  # noqa: E402

MIGRATIONS = ("model-manager-agent", "tutoring-agent")


def project(top: Path, name: str, url: str, hosts: int) -> Path:
    root = top / name
    (root / "phases").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "migration.yaml").write_text(
        f"name: {name}\ninventory: inventory/hosts.yml\nstate: {{url: '{url}'}}\n")
    lines = "".join(f"    h{i:03d}:\n" for i in range(hosts))
    (root / "inventory" / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n  hosts:\n" + lines)
    for n in range(1, 5):
        (root / "phases" / f"{n}-p{n}.yaml").write_text(
            f"phase: {n}\nname: p{n}\nsteps:\n  - id: s\n    command: 'true'\n"
            "    rollback_command: 'true'\n")
    return root


def fill(journal: Journal, name: str, hosts: int) -> None:
    journal.use_migration(name)
    for n in range(1, 5):
        run_id = f"{name}-run-{n}"
        names = [f"h{i:03d}" for i in range(hosts)]
        journal.create_run(run_id, n, names, "bench", "phase", False, {})
        with journal.batch():
            for h in names:
                journal.move_phase(run_id, h, n, PhaseState.RUNNING, "run_started", "bench")
                journal.move_phase(run_id, h, n, PhaseState.COMPLETED, "phase_completed", "ok")
        journal.end_run(run_id, "completed")


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert res.returncode == 0, res.stderr
    return statistics.median(times)


def measure(label: str, url: str, top: Path, hosts: int, runs: int,
            state_dir: Path) -> None:
    roots = [project(top, name, url, hosts) for name in MIGRATIONS]
    settings = StateSettings(url=url)
    journal = open_state(state_dir, settings)
    for name in MIGRATIONS:
        fill(journal, name, hosts)
    journal.close()
    base = [sys.executable, "-m", "orchestrator", "--project", str(roots[0])]
    every = timed(base + ["status", "--all"], runs)
    own = timed(base + ["status"], runs)
    goal = 0.3 if label == "sqlite" else 0.5
    print(f"{label:10} status --all ({len(MIGRATIONS)} x {hosts} hosts x 4 phases): "
          f"{every:.3f} s (goal <= {goal} s)   status: {own:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        (top / "sqlite" / "shared").mkdir(parents=True)
        measure("sqlite", "sqlite:///../shared/migrate.db", top / "sqlite", args.hosts,
                args.runs, top / "sqlite" / MIGRATIONS[0] / ".migrate")
    if args.no_pg:
        return
    from tests.support.pg import running_server

    with tempfile.TemporaryDirectory() as tmp, running_server(fsync=True) as server:
        url = server.create_database()
        measure("postgresql", url, Path(tmp), args.hosts, args.runs, Path(tmp) / ".migrate")


if __name__ == "__main__":
    main()
