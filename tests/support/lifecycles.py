"""A `RunLifecycle` on a made project with fake runners, a fake clock and a journal the test
reads: `migrate phase N` as the CLI runs it, without a process or a real second."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.config.project import load_project
from orchestrator.core.clock import CancelToken, FakeClock
from orchestrator.core.events import RunEvent
from orchestrator.engine.context import EngineParts, Monitor, NoTty, NullMonitor
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.engine.phase_run import FleetPlan
from orchestrator.runners.base import CommandRequest, FailureKind, Result
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
              rec: Recorder | None = None, monitor: Monitor | None = None,
              clock: FakeClock | None = None, **settings: Any,
              ) -> tuple[RunLifecycle, Recorder, Journal, list[RunEvent]]:
    """The lifecycle, its fake runners, its journal and the events it published.
    `settings` are EngineParts' (undo_attempts, undo_retry_delay, ...)."""
    proj = make_project(tmp_path, hosts=hosts)
    proj.phase(1, "p", body)
    project, inventory = load_project(proj.root)
    rec = rec or Recorder()
    journal = Journal(project.state_dir / "state.db")
    parts = EngineParts(journal=journal, playbooks=rec.playbooks, commands=rec.commands,
                        clock=clock or FakeClock(), prompter=NoTty(),
                        monitor=monitor if monitor is not None else NullMonitor(),
                        **{"undo_retry_delay": 10, **settings})
    seen: list[RunEvent] = []
    parts.hooks.subscribe(seen.append)
    return RunLifecycle(project, inventory, parts), rec, journal, seen


def run(lc: RunLifecycle, plan: FleetPlan | None = None, names: tuple[str, ...] = HOSTS,
        cancel: CancelToken | None = None):  # type: ignore[no-untyped-def]
    hosts = lc.inventory.resolve(list(names))
    return lc.run_phase(lc.project.phases[1], hosts, "migrate phase 1", cancel or CancelToken(),
                        plan=plan)


Answer = Callable[[CommandRequest], Result]


def failed(req: CommandRequest) -> Result:
    """The command exited 1."""
    return Result.failed(req.host.name, FailureKind.EXIT, "exit 1")


def unreachable(req: CommandRequest) -> Result:
    """The host is gone (a lost host's undo)."""
    return Result.failed(req.host.name, FailureKind.UNREACHABLE, "host unreachable")


def answering(answers: Mapping[str | tuple[str, str], Answer], log: bool = False) -> Recorder:
    """Fake runners whose commands are answered by `answers`, looked up by (host, command)
    and then by command; every other command succeeds. `log`: each command is logged
    (`cmd HOST COMMAND`) as `Recorder` logs it."""
    rec = Recorder(answer=lambda req, cancel: answer(req))

    def answer(req: CommandRequest) -> Result:
        if log:
            with rec.lock:
                rec.log.append(f"cmd {req.host.name} {req.command}")
        how = answers.get((req.host.name, req.command)) or answers.get(req.command)
        return how(req) if how is not None else Result(req.host.name, True, "ok")

    return rec
