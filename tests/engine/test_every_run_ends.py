"""Every run ends (SPEC section 4): whatever stops a run, the journal shows it in a final
state or `interrupted`, no lock is held by a dead run, no traceback is printed, and the
next `rollback` or `resume` finishes the job.

The faults are staged as they happen: a SIGKILL after each transition of a rollback
started by `migrate rollback` and by `watch`; SIGTERM and Ctrl-C while an undo is in
flight; a step whose log directory cannot be made; a runner that cannot start in the
middle of a phase; a monitor thread that dies.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.core.clock import CancelToken
from orchestrator.core.outcomes import RunOutcome
from orchestrator.core.states import PhaseState, StepState
from orchestrator.engine.context import NullMonitor
from orchestrator.runners.base import CommandRequest, Result
from tests.support.fake_runners import Recorder
from tests.support.lifecycles import lifecycle, run
from tests.support.projects import Proj, make_project
from tests.support.state_probes import locks, status_of

THREE_STEPS = """\
phase: 1
name: Three steps
steps:
  - id: a
    command: 'echo do a >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/a'
    rollback_command: 'echo undo a >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/a'
  - id: b
    command: 'echo do b >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/b'
    rollback_command: '{slow}echo undo b >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/b'
  - id: c
    command: 'echo do c >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/c'
    rollback_command: 'echo undo c >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/c'
"""

#: the slow undo of b announces itself, then waits: the moment to cut the rollback
SLOW = "touch {{ vars.marker_dir }}/undoing-b && sleep 30 && "

#: events a `migrate rollback` of THREE_STEPS commits: rollback_requested, rollback_started,
#: 3 x (step rollback started, rolled back), rollback_completed
ROLLBACK_EVENTS = 9

WATCHED = """\
name: test-migration
inventory: inventory/hosts.yml
poll_interval: 1s
metrics:
  level:
    source: command
    command: 'cat {{ vars.marker_dir }}/level'
    parse: number
triggers:
  level_high: {metric: level, above: 100}
"""


def build(tmp_path: Path, slow: bool = False, migration: str | None = None) -> Proj:
    proj = make_project(tmp_path, migration, hosts=("main",))
    proj.phase(1, "three", THREE_STEPS.replace("{slow}", SLOW if slow else ""))
    return proj


def markers(proj: Proj) -> list[str]:
    return sorted(p.name for p in proj.markers.iterdir()
                  if p.name not in ("order.log", "level", "undoing-b"))


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr


# --- SIGKILL of `migrate rollback` after each of its transitions ------------------------------
@pytest.mark.parametrize("kill_at", range(1, ROLLBACK_EVENTS))
def test_sigkill_of_migrate_rollback_at_every_transition(tmp_path: Path, kill_at: int) -> None:
    proj = build(tmp_path)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    res = proj.migrate("rollback", "--host", "main", "--yes",
                       env={"MIGRATE_FAULT_KILL_AFTER_EVENT": str(kill_at)})
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)

    # the next command finds the rollback run dead: interrupted, its lock freed
    state = status_of(proj)
    assert state in ("interrupted", "completed"), state  # killed before it moved the phase
    assert locks(proj) == []
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    rollback_runs = {e["run_id"] for e in events if e["kind"] == "rollback_requested"}
    assert len(rollback_runs) == 1
    if state == "interrupted":
        assert events[-1]["kind"] == "run_interrupted"
        assert events[-1]["run_id"] in rollback_runs  # the lock's run id is the phase's

    # `migrate rollback` run again finishes what is left, undoing nothing twice
    done = proj.migrate("rollback", "--host", "main", "--yes")
    assert done.returncode == 0, done.stderr
    clean(done.stderr)
    assert status_of(proj) == "rolled_back"
    assert markers(proj) == []
    undone = Counter(line.split()[1] for line in proj.order() if line.startswith("undo "))
    assert all(n == 1 for n in undone.values()) or kill_at >= 3, undone
    assert set(undone) == {"a", "b", "c"}
    assert locks(proj) == []


# --- signals during an undo -------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "times"), [(signal.SIGTERM, 1), (signal.SIGINT, 1),
                                               (signal.SIGTERM, 2)])
def test_a_signal_during_migrate_rollback_leaves_the_phase_interrupted(
        tmp_path: Path, signum: int, times: int) -> None:
    proj = build(tmp_path, slow=True)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    child = proj.spawn("rollback", "--host", "main", "--yes")
    wait_for(proj.markers / "undoing-b")
    for _ in range(times):
        child.send_signal(signum)
        time.sleep(0.2)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    clean(err)
    assert "left interrupted" in err
    assert status_of(proj) == "interrupted"
    assert locks(proj) == []
    assert markers(proj) == ["a", "b"]  # c was undone before the signal, b was cut

    (proj.markers / "undoing-b").unlink()
    proj.phase(1, "three", THREE_STEPS.replace("{slow}", ""))  # b's undo is quick now
    done = proj.migrate("rollback", "--host", "main", "--yes")
    assert done.returncode == 0, done.stderr
    assert status_of(proj) == "rolled_back"
    assert markers(proj) == []
    assert [line for line in proj.order() if line == "undo c"] == ["undo c"]  # not twice


def test_a_signal_during_watch_rollback_leaves_the_phase_interrupted(tmp_path: Path) -> None:
    proj = build(tmp_path, slow=True, migration=WATCHED)
    (proj.markers / "level").write_text("5\n")
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    (proj.markers / "level").write_text("500\n")  # the fault, after the phase completed
    child = proj.spawn("watch", "--host", "main")
    wait_for(proj.markers / "undoing-b")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    clean(err)
    assert status_of(proj) == "interrupted"
    assert locks(proj) == []
    (proj.markers / "undoing-b").unlink()
    proj.phase(1, "three", THREE_STEPS.replace("{slow}", ""))
    done = proj.migrate("rollback", "--host", "main", "--yes")
    assert done.returncode == 0, done.stderr
    assert status_of(proj) == "rolled_back" and markers(proj) == []


def test_sigkill_of_watch_mid_undo_is_finished_by_the_next_rollback(tmp_path: Path) -> None:
    proj = build(tmp_path, slow=True, migration=WATCHED)
    (proj.markers / "level").write_text("5\n")
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    (proj.markers / "level").write_text("500\n")
    child = proj.spawn("watch", "--host", "main")
    wait_for(proj.markers / "undoing-b")
    child.kill()
    child.communicate(timeout=30)
    # the orphaned undo: this test's own (another worker may be mid-undo of its own b)
    subprocess.run(["pkill", "-f", re.escape(str(proj.markers / "undoing-b"))], check=False)
    assert status_of(proj) == "interrupted"  # not rolling_back: the reaper saw it die
    assert locks(proj) == []
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    watch_runs = [e for e in events if e["kind"] == "watch_started"]
    assert watch_runs  # the watch's own run record was ended too
    (proj.markers / "undoing-b").unlink()
    proj.phase(1, "three", THREE_STEPS.replace("{slow}", ""))
    done = proj.migrate("rollback", "--host", "main", "--yes")
    assert done.returncode == 0, done.stderr
    assert status_of(proj) == "rolled_back" and markers(proj) == []


# --- exceptions after the first step ----------------------------------------------------------
def test_a_step_whose_log_directory_cannot_be_made_fails_and_rolls_back(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("main",))
    runs = proj.root / ".migrate" / "runs"
    proj.phase(1, "logs", f"""\
phase: 1
name: A full disk, staged
steps:
  - id: a
    command: 'touch {{{{ vars.marker_dir }}}}/a && mkdir -p {runs}/{{{{ run_id }}}} && touch {runs}/{{{{ run_id }}}}/b'
    rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/a'
  - id: b
    command: 'touch {{{{ vars.marker_dir }}}}/b'
    rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/b'
""")
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr  # a step failure that rolled back, never 2
    clean(res.stderr)
    assert "nothing ran" not in res.stderr
    assert status_of(proj) == "rolled_back"
    assert locks(proj) == []
    assert not (proj.markers / "a").exists()  # the step that had completed was undone
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    failed = [e for e in events if e["kind"] == "step_failed"]
    assert [e["step"] for e in failed] == ["b"]


def test_a_runner_that_cannot_start_mid_phase_is_that_step_failing(tmp_path: Path) -> None:
    def on_command(req: CommandRequest, cancel: CancelToken) -> Result:
        if req.command == "do two":
            from orchestrator._exceptions import RunnerError

            raise RunnerError("ansible-playbook: not found")
        return Result(req.host.name, True, "ok")

    lc, _, journal, _ = lifecycle(tmp_path, hosts=("main",), rec=Recorder(answer=on_command))
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert "could not run" in (report.reason or "") and "not found" in (report.reason or "")
    assert journal.phase_record("main", 1).state is PhaseState.ROLLED_BACK
    run_id = journal.phase_record("main", 1).run_id
    assert run_id is not None
    assert journal.step_state(run_id, "main", "one") is StepState.ROLLED_BACK
    assert journal.holders() == []
    assert journal.run_info(run_id)["outcome"] == "rolled_back"  # type: ignore[index]


def test_a_dead_monitor_thread_stops_the_run_naming_it(tmp_path: Path) -> None:
    """A worker that dies (here the trigger monitor, as when NVML goes away or the
    journal cannot take its samples) stops the phase as a failure that names it."""

    class DyingMonitor(NullMonitor):
        def start(self, bus, phase, hosts, dry_run, recorder=None, samples=None):  # type: ignore[no-untyped-def]
            from orchestrator.core.supervision import spawn

            def die() -> None:
                raise RuntimeError("NVML Shared Library Not Found")

            spawn("trigger-monitor", die).join()

    lc, _, journal, _ = lifecycle(tmp_path, hosts=("main",), monitor=DyingMonitor())
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert "trigger-monitor" in (report.reason or "") and "NVML" in (report.reason or "")
    assert journal.phase_record("main", 1).state is PhaseState.ROLLED_BACK
    assert journal.holders() == []


# --- SIGKILL of watch after each transition of the rollback it started --------------------------
@pytest.mark.parametrize("kill_at", range(2, 11))
def test_sigkill_of_watch_at_every_transition_of_its_rollback(tmp_path: Path,
                                                              kill_at: int) -> None:
    proj = build(tmp_path, migration=WATCHED)
    (proj.markers / "level").write_text("5\n")
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    (proj.markers / "level").write_text("500\n")  # the fault, after the phase completed
    res = proj.migrate("watch", "--host", "main",
                       env={"MIGRATE_FAULT_KILL_AFTER_EVENT": str(kill_at)})
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)

    # the next command finds the watch's rollback dead: never rolling_back, no lock left
    state = status_of(proj)
    assert state in ("completed", "interrupted"), state
    assert locks(proj) == []
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    if state == "interrupted":
        assert events[-1]["kind"] == "run_interrupted"

    # `migrate rollback` finishes what is left, undoing nothing twice
    done = proj.migrate("rollback", "--host", "main", "--yes")
    assert done.returncode == 0, done.stderr
    clean(done.stderr)
    assert status_of(proj) == "rolled_back"
    assert markers(proj) == []
    undone = Counter(line.split()[1] for line in proj.order() if line.startswith("undo "))
    assert set(undone) == {"a", "b", "c"}
    assert locks(proj) == []
