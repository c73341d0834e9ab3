"""The journal on SQLite vs PostgreSQL: status reads, per-step overhead, watch takeover.

Goals (issue 15): `status` <= 0.5 s with 200 hosts x 4 phases on PostgreSQL; journal
overhead per step <= 20 ms; a standby watcher takes over <= 10 s after the active
one dies.

- status: the reads `migrate status` makes (today's reporting.views pattern: the lock
  holders, then per host and phase its record, and the trigger states of phases
  running or completed), on a journal holding 200 hosts x 4 phases with their events,
  trigger states and samples. Measured warm (an open journal) and cold (a new Python
  process that imports, connects, checks the schema, reaps, reads: what `migrate
  status` pays apart from loading the project), median of N.
- step: one step's journal writes as the engine makes them (step_started, then
  step_succeeded, each its own transaction, each preceded by the check that the run
  still holds its host), on a run holding its host; mean and p95 over N steps.
- takeover: the active watcher's process is SIGKILLed (and, as root with iproute2, its
  machine is cut off the network); time until the standby, polling every second, is
  active.

A throw-away PostgreSQL (tests/support/pg.py) runs with fsync on, like a real one.
Run: python bench/team_state.py [--hosts 200] [--phases 4] [--steps 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.core.states import PhaseState, StepState  # noqa: E402
from orchestrator.state.journal import Journal  # noqa: E402
from orchestrator.state.leader import Leadership, watch_key  # noqa: E402
from orchestrator.state.open import StateSettings, open_state  # noqa: E402
from tests.support.pg import running_server, spawn_holder  # noqa: E402

TRIGGERS = ("vram_degradation", "health_failure", "model_load_failure", "cross_machine_failure")
SHOWS_TRIGGERS = {"running", "baking", "completed", "rolling_back"}

COLD = r"""
import sys, time
from pathlib import Path
from orchestrator.state.open import StateSettings, open_state
target, hosts, phases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
url = target if target.startswith("postgresql://") else None
journal = open_state(Path(target).parent if url is None else Path("/nonexistent"),
                     StateSettings(url=url))
journal.holders()
for h in range(hosts):
    for p in range(1, phases + 1):
        rec = journal.phase_record(f"host{h:03d}", p)
        if rec.state.value in ("running", "baking", "completed", "rolling_back"):
            journal.trigger_states(f"host{h:03d}", p)
"""

COLD_BULK = COLD.split("journal.holders()")[0] + r"""
names = [f"host{h:03d}" for h in range(hosts)]
journal.holders()
records = journal.phase_records(names)
triggers = journal.all_trigger_states(names)
"""


def populate(journal: Journal, hosts: int, phases: int) -> None:
    """Phases 1..n-1 completed, the last one running on every tenth host, else pending;
    each with its run, 8 events, 3 steps, 4 trigger states and samples. Written in one
    transaction (the rows the engine would have written one by one)."""
    stamp = "2026-11-23T23:59:00.000Z"
    runs: list[tuple[Any, ...]] = []
    run_hosts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    steps: list[tuple[Any, ...]] = []
    phase_rows: list[tuple[Any, ...]] = []
    triggers: list[tuple[Any, ...]] = []
    samples: list[tuple[Any, ...]] = []
    for h in range(hosts):
        host = f"host{h:03d}"
        for p in range(1, phases + 1):
            if p == phases and h % 10:
                continue
            run = f"run-{host}-{p}"
            done = p < phases
            runs.append((run, p, f'["{host}"]', f"migrate phase {p} --host {host}", "phase", 1,
                         1, "bench", stamp, stamp if done else None, 0,
                         "completed" if done else None, "{}"))
            run_hosts.append((run, host))
            events.append((stamp, run, host, p, None, "run_started", run, None))
            for i, step in enumerate(("a", "b", "c")):
                events.append((stamp, run, host, p, step, "step_started", "x", None))
                events.append((stamp, run, host, p, step, "step_succeeded", "ok", '{"rc": 0}'))
                steps.append((run, host, p, step, i, "succeeded", 1, stamp, stamp, "ok"))
            if done:
                events.append((stamp, run, host, p, None, "phase_completed", "done", None))
            phase_rows.append((host, p, "completed" if done else "running", run, stamp, None))
            for t in TRIGGERS:
                triggers.append((host, p, t, run, "ok", 1000.0, 1200.0, 1000.0, None, stamp,
                                 f"{t} ok"))
                samples.append((run, host, p, t, "m", stamp, 1.0, 1000.0, 0, "ok", 1200.0,
                                1000.0))
    with journal.transaction() as db:
        for sql, rows in (
                ("INSERT INTO runs (id, phase, hosts, command, kind, pid, pid_start, machine, "
                 "started_at, ended_at, dry_run, outcome, checksums) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs),
                ("INSERT INTO run_hosts (run_id, host) VALUES (?,?)", run_hosts),
                ("INSERT INTO events (at, run_id, host, phase, step, kind, detail, payload) "
                 "VALUES (?,?,?,?,?,?,?,?)", events),
                ("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?)", steps),
                ("INSERT INTO phase_states VALUES (?,?,?,?,?,?)", phase_rows),
                ("INSERT INTO trigger_states VALUES (?,?,?,?,?,?,?,?,?,?,?)", triggers),
                ("INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, "
                 "breaching, state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                 samples)):
            db.executemany(sql, rows)
    if journal.store.dialect.name == "postgresql":  # as autovacuum would have by now
        with journal.transaction() as db:
            db.execute("ANALYZE")


def status_reads(journal: Journal, hosts: int, phases: int) -> int:
    journal.holders()
    reads = 1
    for h in range(hosts):
        for p in range(1, phases + 1):
            rec = journal.phase_record(f"host{h:03d}", p)
            reads += 1
            if rec.state.value in SHOWS_TRIGGERS:
                journal.trigger_states(f"host{h:03d}", p)
                reads += 1
    return reads


def status_bulk(journal: Journal, hosts: int, phases: int) -> int:
    """The same answers in three queries (Journal.phase_records, all_trigger_states)."""
    names = [f"host{h:03d}" for h in range(hosts)]
    journal.holders()
    records = journal.phase_records(names)
    triggers = journal.all_trigger_states(names)
    for name in names:
        for p in range(1, phases + 1):
            rec = records.get((name, p))
            if rec is not None and rec.state.value in SHOWS_TRIGGERS:
                triggers.get((name, p), [])
    return 3


def median_time(fn: Callable[[], object], runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def cold(target: str, hosts: int, phases: int, runs: int, bulk: bool) -> float:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = COLD_BULK if bulk else COLD
    return median_time(lambda: subprocess.run(
        [sys.executable, "-c", script, target, str(hosts), str(phases)], env=env, check=True),
        runs)


def step_overhead(journal: Journal, steps: int) -> tuple[float, float]:
    run = f"bench-{time.monotonic_ns()}"
    journal.acquire(["bench-host"], run, "migrate phase 1 --host bench-host")
    journal.create_run(run, 1, ["bench-host"], "bench", "phase", False, {})
    journal.move_phase(run, "bench-host", 1, PhaseState.RUNNING, "run_started")
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        journal.move_step(run, "bench-host", 1, f"s{i}", i, StepState.RUNNING, "step_started",
                          f"run step {i}")
        journal.move_step(run, "bench-host", 1, f"s{i}", i, StepState.SUCCEEDED,
                          "step_succeeded", "ok")
        times.append(time.perf_counter() - t0)
    journal.move_phase(run, "bench-host", 1, PhaseState.COMPLETED, "phase_completed")
    journal.release(run)
    times.sort()
    return statistics.mean(times), times[int(len(times) * 0.95) - 1]


def takeover(target: str, journal: Journal, prefix: tuple[str, ...] = (),
             cut: Callable[[], None] | None = None) -> float:
    key = watch_key([f"bench-{time.monotonic_ns()}"])
    leader = spawn_holder(target, "leader", key, prefix=prefix)
    standby = Leadership(journal, key)
    try:
        assert not standby.try_acquire()
        stop = threading.Event()
        won: list[float] = []
        def stand_by() -> None:
            if standby.wait(stop, poll=1.0):
                won.append(time.monotonic())

        t = threading.Thread(target=stand_by)
        t.start()
        died = time.monotonic()
        if cut is not None:
            cut()
        else:
            leader.send_signal(signal.SIGKILL)
        t.join(30)
        stop.set()
        return won[0] - died if won else float("inf")
    finally:
        leader.kill()
        leader.wait()
        standby.release()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--phases", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--takeovers", type=int, default=3)
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, running_server(fsync=True) as srv:
        backends = {"sqlite": (str(Path(tmp) / ".migrate" / "state.db"), None),
                    "postgresql": (srv.create_database("bench"), None)}
        for name, (target, _) in backends.items():
            url = target if name == "postgresql" else None
            journal = open_state(Path(tmp) / ".migrate", StateSettings(url=url))
            t0 = time.perf_counter()
            populate(journal, args.hosts, args.phases)
            filled = time.perf_counter() - t0
            reads = status_reads(journal, args.hosts, args.phases)
            warm = median_time(partial(status_reads, journal, args.hosts, args.phases),
                               args.runs)
            bulk = median_time(partial(status_bulk, journal, args.hosts, args.phases),
                               args.runs)
            start = cold(target, args.hosts, args.phases, args.runs, bulk=False)
            start_bulk = cold(target, args.hosts, args.phases, args.runs, bulk=True)
            mean, p95 = step_overhead(journal, args.steps)
            takes = [takeover(target, journal) for _ in range(args.takeovers)]
            rows += [
                (name, f"status reads one by one, warm ({reads} queries)",
                 f"{warm * 1000:.0f} ms"),
                (name, "status reads in bulk, warm (3 queries)", f"{bulk * 1000:.1f} ms"),
                (name, "status, new process, one by one (import+connect+reap+reads)",
                 f"{start:.3f} s"),
                (name, "status, new process, in bulk", f"{start_bulk:.3f} s"),
                (name, f"journal overhead per step (mean / p95 of {args.steps})",
                 f"{mean * 1000:.2f} / {p95 * 1000:.2f} ms"),
                (name, "takeover after the leader's process is killed",
                 " ".join(f"{t:.2f}" for t in takes) + " s"),
                (name, f"(filling {args.hosts}x{args.phases} phases in bulk took)",
                 f"{filled:.1f} s"),
            ]
            if name == "postgresql" and os.geteuid() == 0:
                rows.append((name, "takeover after the leader's machine is cut off",
                             machine_takeover() + " s"))
            journal.close()
    python = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
                         args.runs)
    width = max(len(r[1]) for r in rows)
    for backend, what, value in rows:
        print(f"{backend:<11} {what:<{width}}  {value}")
    print(f"(python -c pass: {python:.3f} s; {os.cpu_count()} cores; median of {args.runs} "
          "where not said)")


def machine_takeover() -> str:
    """The leader in another network namespace whose link is cut: the server notices the
    silent peer through the session's keepalives (idle 2 s + 3 x 1 s)."""
    from tests.support.pg import far_machine

    try:
        with far_machine() as far, running_server(listen_also=far.server_address) as srv:
            local = srv.create_database("far")
            journal = open_state(Path("/nonexistent"), StateSettings(url=local))
            target = f"postgresql://migrate@{far.server_address}:{srv.port}/far"
            took = takeover(target, journal, prefix=far.prefix, cut=far.cut)
            journal.close()
            return f"{took:.2f}"
    except BaseException as exc:  # noqa: BLE001 - a benchmark reports, it does not fail
        return f"n/a ({type(exc).__name__}: {exc})"


if __name__ == "__main__":
    main()
