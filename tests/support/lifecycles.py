"""A `RunLifecycle` on a made project with fake runners, a fake clock and a journal the test
reads: `migrate phase N` as the CLI runs it, without a process or a real second."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config.project import load_project
from orchestrator.core.clock import CancelToken, FakeClock
from orchestrator.core.events import RunEvent
from orchestrator.engine.context import EngineParts, NoTty
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.engine.phase_run import FleetPlan
from orchestrator.state.journal import Journal
from tests.support.fake_runners import Recorder
from tests.support.projects import make_project

TWO_STEPS = """\
phase: 1
name: Two
steps:
  - id: one
    command: 'do one'
    rollback_command: 'undo one'
  - id: two
    command: 'do two'
    rollback_command: 'undo two'
"""

HOSTS = tuple(f"h{i:02d}" for i in range(10))



def lifecycle(tmp_path: Path, body: str = TWO_STEPS, hosts: tuple[str, ...] = HOSTS,
              rec: Recorder | None = None, monitor: object = None,
              ) -> tuple[RunLifecycle, Recorder, Journal, list[RunEvent]]:
    proj = make_project(tmp_path, hosts=hosts)
    proj.phase(1, "p", body)
    project, inventory = load_project(proj.root)
    rec = rec or Recorder()
    journal = Journal(project.state_dir / "state.db")
    parts = EngineParts(journal=journal, playbooks=rec.playbooks, commands=rec.commands,
                        clock=FakeClock(), prompter=NoTty(), undo_retry_delay=10)
    if monitor is not None:
        parts.monitor = monitor  # type: ignore[assignment]
    seen: list[RunEvent] = []
    parts.hooks.subscribe(seen.append)
    return RunLifecycle(project, inventory, parts), rec, journal, seen


def run(lc: RunLifecycle, plan: FleetPlan | None = None, names: tuple[str, ...] = HOSTS,
        cancel: CancelToken | None = None):  # type: ignore[no-untyped-def]
    hosts = lc.inventory.resolve(list(names))
    return lc.run_phase(lc.project.phases[1], hosts, "migrate phase 1", cancel or CancelToken(),
                        plan=plan)
