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
from orchestrator.core.bus import RunBus, SampleRequest, Subscribers
from orchestrator.core.clock import CancelToken, Clock, SystemClock
from orchestrator.core.http import HttpClient
from orchestrator.core.model import Phase, Project
from orchestrator.core.supervision import Supervisor
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
    """Watches a run's triggers while it runs; `monitor.trigger_monitor.TriggerMonitor` is real.

    It posts fires to `bus` (`Fire`) and publishes each cycle on it (`Cycle`)."""

    def start(self, bus: RunBus, phase: Phase, hosts: list[Host], dry_run: bool,
              recorder: Any = None, samples: SampleRequest | None = None) -> None: ...

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
    def start(self, bus: RunBus, phase: Phase, hosts: list[Host], dry_run: bool,
              recorder: Any = None, samples: SampleRequest | None = None) -> None:
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
    hooks: Subscribers = field(default_factory=Subscribers)
    say: Say = lambda line: None
    #: the app's registry of its running runs (deaths of unspawned threads, journal loss)
    supervisor: Supervisor = field(default_factory=Supervisor)
    undo_attempts: int = 4  # the first try and `defaults: {undo_retries: 3}`
    undo_retry_delay: float = 10.0
    undo_deadline: float = 30.0  # `defaults: {undo_deadline}`: from the rollback's start
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
    bus: RunBus
    dry_run: bool = False
    artifacts_root: Path | None = None  # a dry run's temporary directory
    t0: float = 0.0  # the clock's reading at phase start: `elapsed` of scripted timelines
    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the run whose step rows this context acts on (`journal.rollback_targets`): the run
    #: itself, or for a rollback run, which owns the phase (and its lock) under its own
    #: id, the run whose steps it undoes
    origin_run: str = ""

    def __post_init__(self) -> None:
        if not self.hostvars:
            self.hostvars = self.inventory.hostvars()
        if not self.origin_run:
            self.origin_run = self.run_id

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

    def undoing(self, cancel: CancelToken, origin_run: str | None = None) -> StepContext:
        """The same run for its rollback, with the run's undo token: undo work must not be
        cut short by the cancel that stopped the forward steps, only by the operator."""
        return StepContext(self.project, self.inventory, self.phase, self.run_id, self.parts,
                           cancel, self.bus, False, None, self.t0, self.hostvars,
                           origin_run or self.origin_run)

    def with_cancel(self, cancel: CancelToken) -> StepContext:
        """The same context under another token (an undo attempt cut at its deadline)."""
        return StepContext(self.project, self.inventory, self.phase, self.run_id, self.parts,
                           cancel, self.bus, self.dry_run, self.artifacts_root, self.t0,
                           self.hostvars, self.origin_run)


def death_text(worker: str, exc: BaseException) -> str:
    """How a run names a dead worker: a journal that went away is named as such."""
    from orchestrator.core.supervision import describe
    from orchestrator.state.base import JournalUnavailableError

    if isinstance(exc, JournalUnavailableError):
        return f"journal unreachable: {exc}"
    return f"background worker {worker!r} died: {describe(exc)}"


def clock_sleep(ctx: StepContext) -> Callable[[float], None]:
    """tenacity's `sleep`, on the run's own clock (a FakeClock in tests: no real waiting)."""
    def sleep(seconds: float) -> None:
        ctx.parts.clock.sleep(seconds)
    return sleep
