"""What a step needs to run, in one object that the forward run and the rollback share.

`EngineParts` are the long-lived collaborators an `App` builds once (journal,
runners, clock, prompter, monitor, checker, hooks). `StepContext` is one run's view
of them: project, inventory, phase, run id, hostvars, the artifacts directory, the
cancel token and `say`. Step actions (`engine.actions`) and undos take only a
`StepContext`, so neither knows whether it runs forward or backward.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import CancelToken, Clock, SystemClock
from orchestrator.core.events import EventHooks, FireSink
from orchestrator.core.http import HttpClient
from orchestrator.core.model import Phase, Project
from orchestrator.runners.base import CommandRunner, PlaybookRunner, Result
from orchestrator.state.journal import Journal

Say = Callable[[str], None]


class Prompter(Protocol):
    def confirm(self, message: str) -> bool | None:
        """Ask the operator; None when nobody can be asked (no TTY)."""
        ...


class AutoYes:
    def confirm(self, message: str) -> bool | None:
        return True


class NoTty:
    def confirm(self, message: str) -> bool | None:
        return None




class Monitor(Protocol):
    """Watches a run's triggers while it runs; `monitor.trigger_monitor.TriggerMonitor` is real."""

    def start(self, run_id: str, phase: Phase, hosts: list[Host], on_fire: FireSink,
              dry_run: bool, recorder: Any = None) -> None: ...

    def watch_more(self, hosts: list[Host]) -> None: ...

    def forget(self, hosts: list[str]) -> None: ...

    def record_only(self) -> None:
        """The run stopped: keep sampling through its rollback, act on nothing."""
        ...

    def stop(self) -> None: ...


class Checker(Protocol):
    """Runs `check` and `baseline` steps and post-rollback checks against metrics."""

    def check(self, metric: str, host: Host, phase: int, run_id: str, timeout: float,
              cancel: CancelToken, t0: float | None = None) -> Result: ...

    def capture_baseline(self, name: str, host: Host, phase: int, run_id: str,
                         duration: float, cancel: CancelToken) -> Result: ...

    def passes_now(self, metric: str, host: Host) -> tuple[bool, str]: ...


class NullMonitor:
    def start(self, run_id: str, phase: Phase, hosts: list[Host], on_fire: FireSink,
              dry_run: bool, recorder: Any = None) -> None:
        return None

    def watch_more(self, hosts: list[Host]) -> None:
        return None

    def forget(self, hosts: list[str]) -> None:
        return None

    def record_only(self) -> None:
        return None

    def stop(self) -> None:
        return None


@dataclass
class EngineParts:
    journal: Journal
    playbooks: PlaybookRunner
    commands: CommandRunner
    clock: Clock = field(default_factory=SystemClock)
    prompter: Prompter = field(default_factory=NoTty)
    monitor: Monitor = field(default_factory=NullMonitor)
    checker: Checker | None = None
    hooks: EventHooks = field(default_factory=EventHooks)
    say: Say = lambda line: None
    undo_attempts: int = 4  # the first try and `defaults: {undo_retries: 3}`
    undo_retry_delay: float = 10.0
    undo_deadline: float = 30.0  # `defaults: {undo_deadline}`: from the first failed undo
    step_timeout: float | None = 1800.0  # default for playbook/command steps and undos
    forks: int = 50
    verbose: bool = False
    #: the pooled client of `http`/`exporter` reads, shared by every monitor of the app
    http: HttpClient | None = None


def private_dirs(top: Path, path: Path) -> None:
    """mkdir -p `path` below `top`, every directory created owner-only (mkdir's mode obeys
    the umask and skips parents, so chmod each one)."""
    todo = [path, *path.parents]
    for d in reversed(todo[: todo.index(top) + 1] if top in todo else [path]):
        if not d.exists():
            d.mkdir(mode=0o700)
            d.chmod(0o700)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class StepContext:
    """One run of one phase: what every step action and every undo is given."""

    project: Project
    inventory: Inventory
    phase: Phase
    run_id: str
    parts: EngineParts
    cancel: CancelToken
    dry_run: bool = False
    artifacts_root: Path | None = None  # a dry run's temporary directory
    t0: float = 0.0  # the clock's reading at phase start: `elapsed` of scripted timelines
    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the run whose step rows this context acts on, when not `run_id` itself: a rollback
    #: run owns the phase (and its lock) under its own id and undoes another run's steps
    steps_run: str | None = None

    def __post_init__(self) -> None:
        if not self.hostvars:
            self.hostvars = self.inventory.hostvars()

    @property
    def say(self) -> Say:
        return self.parts.say

    def artifacts(self, name: str) -> Path:
        base = self.artifacts_root if self.artifacts_root is not None else \
            self.project.state_dir / "runs" / self.run_id
        path = base / name
        # `.migrate/` itself may not exist yet: with `state.url` nothing else creates it
        private_dirs(self.project.root if self.artifacts_root is None else base, path)
        return path

    @property
    def step_run_id(self) -> str:
        """The run whose steps are run or undone here."""
        return self.steps_run or self.run_id

    @property
    def owner(self) -> str | None:
        """The run journaling another run's step moves (a rollback run), else None."""
        return self.run_id if self.steps_run and self.steps_run != self.run_id else None

    def undoing(self, cancel: CancelToken, steps_run: str | None = None) -> StepContext:
        """The same run for its rollback, with the run's undo token: undo work must not be
        cut short by the cancel that stopped the forward steps, only by the operator."""
        return StepContext(self.project, self.inventory, self.phase, self.run_id, self.parts,
                           cancel, False, None, self.t0, self.hostvars,
                           steps_run if steps_run is not None else self.steps_run)

    def with_cancel(self, cancel: CancelToken) -> StepContext:
        """The same context under another token (an undo attempt cut at its deadline)."""
        return StepContext(self.project, self.inventory, self.phase, self.run_id, self.parts,
                           cancel, self.dry_run, self.artifacts_root, self.t0, self.hostvars,
                           self.steps_run)


def clock_sleep(ctx: StepContext) -> Callable[[float], None]:
    """tenacity's `sleep`, on the run's own clock (a FakeClock in tests: no real waiting)."""
    def sleep(seconds: float) -> None:
        ctx.parts.clock.sleep(seconds)
    return sleep
