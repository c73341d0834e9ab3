"""SIGKILL the orchestrator right after each journal transition of a phase and of its
rollback, then check the journal and that resume/rollback reach a defined state.

The kill points come from the journal itself (MIGRATE_FAULT_KILL_AFTER_EVENT=N kills
the process with SIGKILL right after its Nth event is committed), not from sleeps.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project

PHASE = """\
phase: 1
name: Crashable
steps:
  - id: a
    command: 'echo do a >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/a'
    rollback_command: 'echo undo a >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/a'
  - id: b
    command: 'echo do b >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/b'
    rollback_command: 'echo undo b >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/b'
  - id: c
    command: 'echo do c >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/c{fail}'
    rollback_command: 'echo undo c >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/c'
"""

SUCCESS_EVENTS = 8  # run_started, 3 x (started, succeeded), phase_completed
FAILURE_EVENTS = 15  # ... step_failed, rollback_started, 3 x (rollback started, done), completed
CASES = [("success", n, "resume") for n in range(1, SUCCESS_EVENTS + 1)] + \
        [("failure", n, "resume" if n % 2 else "rollback") for n in range(1, FAILURE_EVENTS + 1)]


def build(tmp_path: Path, variant: str) -> Proj:
    proj = make_project(tmp_path, hosts=("main",))
    proj.phase(1, "crash", PHASE.replace("{fail}", " && exit 1" if variant == "failure" else ""))
    return proj


def journal_counts(proj: Proj) -> tuple[list[dict[str, object]], Counter[str]]:
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    started = Counter(str(e["step"]) for e in events if e["kind"] == "step_started")
    return events, started


@pytest.mark.parametrize(("variant", "kill_at", "recover"), CASES)
def test_sigkill_at_every_transition(tmp_path: Path, variant: str, kill_at: int,
                                     recover: str) -> None:
    proj = build(tmp_path, variant)
    res = proj.migrate("phase", "1", "--host", "main",
                       env={"MIGRATE_FAULT_KILL_AFTER_EVENT": str(kill_at)})
    total = SUCCESS_EVENTS if variant == "success" else FAILURE_EVENTS
    if kill_at < total:
        assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)

    # 1. the journal is consistent and says what was in flight
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    state = status["hosts"]["main"]["phases"]["1"]["state"]
    events, started = journal_counts(proj)
    if kill_at < total:
        assert state == "interrupted", events
        assert events[-1]["kind"] == "run_interrupted"
        assert len(events) == kill_at + 1  # every committed transition, then the reaping
    stamps = [str(e["at"]) for e in events]
    assert stamps == sorted(stamps)
    # no step's effect was applied more often than the journal recorded it starting
    applied = Counter(line.split()[1] for line in proj.order() if line.startswith("do "))
    for step, times in applied.items():
        assert times <= started[step], (step, times, started, proj.order())

    # 2. a new phase on the host is refused until the run is resumed or rolled back
    if state == "interrupted":
        refused = proj.migrate("phase", "1", "--host", "main")
        assert refused.returncode == 4 and "migrate resume --host main" in refused.stderr

        # 3. resume or rollback brings the host to a defined state
        if recover == "resume":
            done = proj.migrate("resume", "--host", "main")
            expected_code = 0 if variant == "success" else 1
        else:
            done = proj.migrate("rollback", "--host", "main", "--yes")
            expected_code = 0
        assert done.returncode == expected_code, done.stderr

    final = json.loads(proj.migrate("--output", "json", "status").stdout)
    state = final["hosts"]["main"]["phases"]["1"]["state"]
    markers = sorted(p.name for p in proj.markers.iterdir() if p.name != "order.log")
    if state == "completed":
        assert markers == ["a", "b", "c"]
    else:
        assert state == "rolled_back", final
        assert markers == []
    events, started = journal_counts(proj)
    applied = Counter(line.split()[1] for line in proj.order() if line.startswith("do "))
    for step, times in applied.items():
        assert times <= started[step], (step, times, started)


def test_resume_refuses_changed_definitions_unless_accepted(tmp_path: Path) -> None:
    proj = build(tmp_path, "success")
    res = proj.migrate("phase", "1", "--host", "main",
                       env={"MIGRATE_FAULT_KILL_AFTER_EVENT": "3"})
    assert res.returncode == -signal.SIGKILL
    path = proj.root / "phases" / "1-crash.yaml"
    path.write_text(path.read_text().replace("name: Crashable", "name: Changed"))
    refused = proj.migrate("resume", "--host", "main")
    assert refused.returncode == 4
    assert "phases/1-crash.yaml" in refused.stderr and "--accept-changes" in refused.stderr
    accepted = proj.migrate("resume", "--host", "main", "--accept-changes")
    assert accepted.returncode == 0, accepted.stderr
    events, _ = journal_counts(proj)
    assert "changes_accepted" in [e["kind"] for e in events]
    assert os.path.exists(proj.markers / "c")
