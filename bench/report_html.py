"""Time `migrate report RUN_ID --format html` of a run with 12 charts (goal: <= 3 s).

Builds, in a temporary directory, a small project and a journal holding one rolled-back
run on 4 hosts watched by 3 triggers (12 trigger/host charts, 10 minutes of samples
every 2 s each, one of them pass/fail), with a fire, the rollback's start and end and a
re-check. Then runs the real command (`python -m orchestrator report ... --format html`,
a fresh process each time: import, project load, journal read, 12 matplotlib charts,
the Jinja2 page) REPEAT times and prints each time, the median and the worst.

Run: python bench/report_html.py [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOSTS = ("main", "pc2", "pc3", "pc4")
TRIGGERS = (("vram_degradation", "vram_used_mib", 6000.0, 5000.0),
            ("latency_p95", "latency_ms", 800.0, 300.0),
            ("health_failure", "agent_health", None, None))
RUN = "20261123T235900Z-bench1"
GOAL_S = 3.0


def build(root: Path) -> Path:
    from orchestrator.state.journal import Journal, utc_stamp
    from tests.support.projects import make_project

    proj = make_project(root, hosts=HOSTS)
    proj.phase(1, "bench", "phase: 1\nname: Bench\nsteps:\n  - id: w\n    wait: 1ms\n")
    state = proj.root / ".migrate"
    state.mkdir(exist_ok=True)
    journal = Journal(state / "state.db")
    journal.create_run(RUN, 1, list(HOSTS), "migrate phase 1 --host all", "phase", False, {})
    now = datetime.now(UTC)
    start = now - timedelta(minutes=10)
    rows = []
    for i in range(300):  # 10 minutes every 2 s
        at = start + timedelta(seconds=2 * i)
        for host in HOSTS:
            for trigger, metric, limit, base in TRIGGERS:
                if limit is None:
                    value: float | None = 1.0
                elif trigger == "vram_degradation" and host == "pc3" and i > 280:
                    value = 6500.0
                else:
                    value = (base or 0) * (1 + 0.05 * ((i * 7 + len(host)) % 11) / 10)
                if i % 97 == 13:
                    value = None  # a gap: no data
                state_ = "firing" if (value or 0) > (limit or 1e18) and i > 285 else (
                    "pending" if (value or 0) > (limit or 1e18) else "ok")
                rows.append((RUN, host, 1, trigger, metric, utc_stamp(at), 2.0 * i, value,
                             int(state_ != "ok"), state_, limit, base))
    db = sqlite3.connect(state / "state.db")
    db.executemany("INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, "
                   "breaching, state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   rows)
    db.commit()
    db.close()
    why = "trigger vram_degradation: 6500 > 6000 for 10s"
    journal.event(RUN, "pc3", 1, None, "trigger_fired", why,
                  {"trigger": "vram_degradation", "value": 6500.0, "threshold": 6000.0})
    for host in HOSTS:
        journal.event(RUN, host, 1, None, "rollback_started", why, {"origin": "trigger"})
    for host in HOSTS:
        journal.event(RUN, host, 1, None, "rollback_completed", why, {"origin": "trigger"})
        journal.event(RUN, host, 1, None, "rollback_verified", "agent_health: passes",
                      {"metric": "agent_health", "passes": True})
    journal.end_run(RUN, "rolled_back")
    journal.close()
    return proj.root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="build the project here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    root = build(args.keep or tmp)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    times: list[float] = []
    cpu: list[float] = []
    try:
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(root),
                                  "report", RUN, "--format", "html"], capture_output=True,
                                 text=True, env=env)
            times.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
        page = Path(res.stdout.strip())
        charts = page.read_text().count('src="data:image/png;base64,')
        load = os.getloadavg()[0]
        print(f"report --format html, {charts} charts, {page.stat().st_size // 1024} KB: "
              + ", ".join(f"{t:.2f}s" for t in times)
              + f"; median {statistics.median(times):.2f}s, worst {max(times):.2f}s wall, "
              f"median {statistics.median(cpu):.2f}s CPU (goal <= {GOAL_S:g}s; load "
              f"{load:.1f} on {os.cpu_count()} cores: on a busy machine wall time is CPU "
              "time plus waiting for a core)")
        return 0 if charts == 12 and statistics.median(times) <= GOAL_S else 1
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
