"""The engine: runs a phase on hosts as a journaled state machine, and rolls it back.

It is built from parts passed in (journal, runners, clock, prompter, monitor), so
tests hand it fakes and the CLI hands it the real ones. It never exits the
process and never prints directly: outcomes are returned as `RunOutcome`, lines
for the operator go to `say`.

Flow of `run_phase`: refuse early (requires, state, locks) -> record the run and
its checksums -> step by step on all hosts (or host by host with `serial: 1`) ->
bake while the monitor watches triggers -> completed. A failed step, a fired
trigger or an operator interrupt takes the rollback edge: every step that
started on each host is undone in reverse order.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator._exceptions import RefusedError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.config.templating import context_for, render
from orchestrator.core.clock import CancelToken, Clock, SystemClock
from orchestrator.core.model import MetricKind, Phase, Project, Step, StepAction, UndoKind
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import STARTABLE, PhaseState, StepState
from orchestrator.runners.base import (
    CommandRequest,
    CommandRunner,
    GroupResult,
    PlaybookRequest,
    PlaybookRunner,
    Result,
)
from orchestrator.state.journal import Journal
from orchestrator.state.recorder import DryRunRecorder, JournalRecorder, NotifyingRecorder, Recorder

if TYPE_CHECKING:
    from orchestrator.monitoring.notify import Notifications

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


@dataclass(frozen=True)
class Firing:
    """Why the monitor wants the phase rolled back (or paused)."""

    trigger: str
    reason: str  # e.g. "trigger vram_degradation: 1301 > 1200 (baseline 1000, +20%)"
    host: str


class Monitor(Protocol):
    """Watches a phase's triggers while it runs; `monitor.TriggerMonitor` is the real one."""

    pause_requested: str | None

    def start(self, run_id: str, phase: Phase, hosts: list[Host], cancel: CancelToken,
              dry_run: bool, recorder: Recorder | None = None) -> None: ...

    def stop(self) -> None: ...

    @property
    def firing(self) -> Firing | None: ...


class Checker(Protocol):
    """Runs `check` and `baseline` steps and post-rollback checks against metrics."""

    def check(self, metric: str, host: Host, phase: int, run_id: str, timeout: float,
              cancel: CancelToken) -> Result: ...

    def capture_baseline(self, name: str, host: Host, phase: int, run_id: str,
                         duration: float, cancel: CancelToken) -> Result: ...

    def passes_now(self, metric: str, host: Host) -> tuple[bool, str]: ...


class NullMonitor:
    pause_requested: str | None = None

    def start(self, run_id: str, phase: Phase, hosts: list[Host], cancel: CancelToken,
              dry_run: bool, recorder: Recorder | None = None) -> None:
        return None

    def stop(self) -> None:
        return None

    @property
    def firing(self) -> Firing | None:
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
    notifications: Notifications | None = None
    say: Say = lambda line: None
    undo_attempts: int = 3
    undo_retry_delay: float = 2.0


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


def file_checksums(project: Project, phase: Phase) -> dict[str, str]:
    """sha256 of the phase file and of every playbook the phase may run or undo with."""
    paths = [phase.path]
    for step in phase.steps:
        if step.action is StepAction.PLAYBOOK:
            paths.append(project.root / step.target)
        if step.undo and step.undo.kind is UndoKind.PLAYBOOK:
            paths.append(project.root / step.undo.target)
    out: dict[str, str] = {}
    for p in paths:
        rel = str(p.relative_to(project.root)) if p.is_relative_to(project.root) else str(p)
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "missing"
    return out


class _Interrupted(Exception):
    pass


class PhaseRun:
    """One invocation of `migrate phase N` (or of a dry run) on a list of hosts."""

    def __init__(self, project: Project, inventory: Inventory, phase: Phase, hosts: list[Host],
                 parts: EngineParts, dry_run: bool = False, command: str = "migrate phase",
                 cancel: CancelToken | None = None, run_id: str | None = None,
                 resume: bool = False) -> None:
        self.resume = resume  # continue `run_id` from the step that was in flight
        self.project = project
        self.inventory = inventory
        self.phase = phase
        self.hosts = hosts
        self.parts = parts
        self.dry_run = dry_run
        self.command = command
        self.cancel = cancel or CancelToken()
        self.run_id = run_id or new_run_id()
        self.recorder: Recorder = (DryRunRecorder(parts.journal) if dry_run
                                   else JournalRecorder(parts.journal))
        if parts.notifications is not None and not dry_run:
            self.recorder = NotifyingRecorder(self.recorder, parts.notifications)
        self.hostvars = inventory.hostvars()
        self._tmp: Path | None = None

    # --- refusals ---------------------------------------------------------------------------
    def refuse_if_not_ready(self) -> None:
        journal = self.parts.journal
        problems: list[str] = []
        for host in self.hosts:
            for number in sorted(self.project.phases):
                rec = journal.phase_record(host.name, number)
                if rec.state is PhaseState.INTERRUPTED:
                    problems.append(
                        f"host {host.name}: phase {number} was interrupted (run {rec.run_id}); "
                        f"run `migrate resume --host {host.name}` or "
                        f"`migrate rollback --host {host.name} --phase {number}` first")
            if self.dry_run:
                continue
            for required in self.phase.requires:
                state = journal.phase_record(host.name, required).state
                if state is not PhaseState.COMPLETED:
                    problems.append(f"host {host.name}: phase {self.phase.number} requires "
                                    f"phase {required} completed, and it is {state.value}")
            state = journal.phase_record(host.name, self.phase.number).state
            if state not in STARTABLE:
                hint = {PhaseState.COMPLETED: "already completed; roll it back to run it again",
                        PhaseState.ROLLBACK_FAILED: "its rollback failed: a human must look, "
                        f"then `migrate rollback --host {host.name} --phase {self.phase.number}`"
                        }.get(state, f"it is {state.value}")
                problems.append(f"host {host.name}: phase {self.phase.number} is {state.value}: "
                                f"{hint}")
        if problems:
            raise RefusedError("; ".join(dict.fromkeys(problems)))
        self._refuse_failing_preconditions()

    def _refuse_if_not_resumable(self) -> None:
        for host in self.hosts:
            rec = self.parts.journal.phase_record(host.name, self.phase.number)
            if rec.state is not PhaseState.INTERRUPTED or rec.run_id != self.run_id:
                raise RefusedError(f"host {host.name}: phase {self.phase.number} is "
                                   f"{rec.state.value} (run {rec.run_id}); nothing to resume")

    def _refuse_failing_preconditions(self) -> None:
        checker = self.parts.checker
        if not self.phase.preconditions or checker is None:
            return
        failing = []
        for host in self.hosts:
            for metric in self.phase.preconditions:
                ok, why = checker.passes_now(metric, host)
                if not ok:
                    failing.append(f"{metric} on {host.name} ({why})")
        if failing:
            raise RefusedError(f"phase {self.phase.number}: preconditions failing, nothing was "
                               f"run: {'; '.join(failing)}")

    # --- the run ----------------------------------------------------------------------------
    def execute(self) -> RunReport:
        names = [h.name for h in self.hosts]
        journal = self.parts.journal
        journal.acquire(names, self.run_id, self.command)  # first: a holder is named, not its state
        try:
            if self.resume:
                self._refuse_if_not_resumable()
            else:
                self.refuse_if_not_ready()  # under the lock, so no other run changes it meanwhile
            if self.dry_run:
                self._tmp = Path(tempfile.mkdtemp(prefix="migrate-dry-run-"))
            elif not self.resume:
                journal.create_run(self.run_id, self.phase.number, names, self.command, "phase",
                                   False, file_checksums(self.project, self.phase))
            report = self._execute()
            self.recorder.finish(self.run_id, report.outcome.value)
            return report
        finally:
            self.parts.monitor.stop()
            journal.release(self.run_id)
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def _execute(self) -> RunReport:
        say = self.parts.say
        mode = " (dry run: check mode, nothing changes)" if self.dry_run else ""
        say(f"run {self.run_id}: phase {self.phase.number} ({self.phase.name}) on "
            f"{', '.join(h.name for h in self.hosts)}{mode}")
        groups = [[h] for h in self.hosts] if self.phase.serial == 1 else [self.hosts]
        self.parts.monitor.start(self.run_id, self.phase, self.hosts, self.cancel, self.dry_run,
                                 self.recorder)
        failure: str | None = None
        for group in groups:
            if self.resume and all(self.recorder.phase_state(h.name, self.phase.number)
                                   is PhaseState.COMPLETED for h in group):
                continue  # serial: this host finished before the run was interrupted
            for host in group:
                self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                         PhaseState.RUNNING,
                                         "run_resumed" if self.resume else "run_started",
                                         f"{self.command} (run {self.run_id})")
            failure = self._run_steps(group)
            if failure is None and self.phase.bake > 0:
                failure = self._bake(group)
            if failure is not None:
                break
            for host in group:
                self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                         PhaseState.COMPLETED, "phase_completed",
                                         f"all {len(self.phase.steps)} steps succeeded")
            say(f"phase {self.phase.number} completed on {', '.join(h.name for h in group)}")
        self.parts.monitor.stop()
        if failure is None:
            outcome = RunOutcome.DRY_RUN_PASSED if self.dry_run else RunOutcome.COMPLETED
            return RunReport(self.run_id, self.phase.number, [h.name for h in self.hosts],
                             outcome)
        if self.dry_run:
            say(f"dry run: would roll back phase {self.phase.number}: {failure}")
            return RunReport(self.run_id, self.phase.number, [h.name for h in self.hosts],
                             RunOutcome.DRY_RUN_FAILED, failure)
        started = [h for h in self.hosts
                   if self.recorder.phase_state(h.name, self.phase.number)
                   in (PhaseState.RUNNING, PhaseState.BAKING, PhaseState.COMPLETED)]
        report = Rollback(self.project, self.inventory, self.phase, started, self.parts,
                          self.run_id, self.recorder).execute(failure)
        if self.cancel.by_operator and report.outcome is RunOutcome.ROLLED_BACK:
            report.outcome = RunOutcome.INTERRUPTED_ROLLED_BACK
        report.hosts = [h.name for h in self.hosts]
        return report

    def _failure_reason(self, fallback: str) -> str:
        firing = self.parts.monitor.firing
        if firing is not None:
            return firing.reason
        if self.cancel.cancelled:
            return self.cancel.reason
        return fallback

    def _bake(self, hosts: list[Host]) -> str | None:
        for host in hosts:
            self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                     PhaseState.BAKING, "bake_started",
                                     f"watching triggers for {self.phase.bake:g}s")
        self.parts.say(f"baking {self.phase.bake:g}s: triggers are watched")
        if self.parts.clock.sleep(self.phase.bake, self.cancel) or self.cancel.cancelled:
            return self._failure_reason("bake interrupted")
        return None

    def _run_steps(self, hosts: list[Host]) -> str | None:
        """Run every step on `hosts`; return why the phase must roll back, or None."""
        for idx, step in enumerate(self.phase.steps):
            if self.cancel.cancelled:
                return self._failure_reason("cancelled")
            paused = self._answer_pause()
            if paused is not None:
                return paused
            targets = [h for h in hosts if self._applies(step, h)]
            if self.resume:
                targets = [h for h in targets
                           if self.recorder.step_state(self.run_id, h.name, step.id)
                           is not StepState.SUCCEEDED]
            for h in hosts:
                if h not in targets and self.recorder.step_state(
                        self.run_id, h.name, step.id) is StepState.PENDING:
                    self.recorder.move_step(self.run_id, h.name, self.phase.number, step.id, idx,
                                            StepState.SKIPPED, "step_skipped",
                                            f"hosts: {', '.join(step.hosts or ())}")
            if not targets:
                continue
            result = self._run_step_with_retries(idx, step, targets)
            if not result.ok or self.cancel.cancelled:
                failed = result.failed
                if failed:
                    why = "; ".join(f"{h}: {r.detail}" for h, r in failed.items())
                    return self._failure_reason(f"step {step.id} failed on {why}")
                return self._failure_reason(f"step {step.id} cancelled")
        return None

    def _answer_pause(self) -> str | None:
        """A trigger with `action: pause` fired: ask the operator before the next step."""
        reason = self.parts.monitor.pause_requested
        if reason is None:
            return None
        self.parts.monitor.pause_requested = None
        answer = self.parts.prompter.confirm(f"{reason} (action: pause): continue the phase?")
        for host in self.hosts:
            self.recorder.event(self.run_id, host.name, self.phase.number, None, "operator_answer",
                                f"{reason}: {'continue' if answer else 'roll back'}")
        return None if answer else f"{reason} (paused; operator chose rollback)"

    def _describe(self, step: Step, host: Host) -> str:
        """What runs on this host, rendered, so the journal says exactly what ran."""
        if step.action is not StepAction.COMMAND:
            return step.describe()
        ctx = context_for(host.name, self.hostvars, self.phase.number, self.run_id)
        return f"command: {render(step.target, ctx, shell=True)}"

    def _applies(self, step: Step, host: Host) -> bool:
        if step.hosts is None:
            return True
        allowed = {h.name for h in self.inventory.resolve(list(step.hosts))}
        return host.name in allowed

    def _run_step_with_retries(self, idx: int, step: Step, targets: list[Host]) -> GroupResult:
        say = self.parts.say
        final = GroupResult()
        pending = list(targets)
        for attempt in range(step.retries + 1):
            for h in pending:
                detail = self._describe(step, h) + (f" (attempt {attempt + 1})" if attempt else "")
                self.recorder.move_step(self.run_id, h.name, self.phase.number, step.id, idx,
                                        StepState.RUNNING, "step_started", detail)
            say(f"step {step.id} on {', '.join(h.name for h in pending)}: {step.describe()}")
            result = self._dispatch(step, pending)
            retry: list[Host] = []
            for h in pending:
                r = result.results.get(h.name) or Result(h.name, False, "no result")
                last = attempt == step.retries or self.cancel.cancelled or r.cancelled
                if r.ok:
                    final.results[h.name] = r
                    self.recorder.move_step(self.run_id, h.name, self.phase.number, step.id, idx,
                                            StepState.SUCCEEDED, "step_succeeded", r.detail)
                    say(f"  ok     {h.name}: {step.id}")
                elif last:
                    final.results[h.name] = r
                    self.recorder.move_step(self.run_id, h.name, self.phase.number, step.id, idx,
                                            StepState.FAILED, "step_failed", r.detail)
                    say(f"  FAILED {h.name}: {step.id}: {r.detail}")
                else:
                    self.recorder.event(self.run_id, h.name, self.phase.number, step.id,
                                        "step_retry", f"attempt {attempt + 1} failed: {r.detail}")
                    say(f"  retry  {h.name}: {step.id}: {r.detail}")
                    retry.append(h)
            pending = retry
            if not pending:
                break
        return final

    # --- step kinds -------------------------------------------------------------------------
    def _artifacts(self, name: str) -> Path:
        base = self._tmp if self._tmp is not None else \
            self.project.state_dir / "runs" / self.run_id
        path = base / name
        private_dirs(base.parent if self._tmp is None else base, path)
        return path

    def _dispatch(self, step: Step, hosts: list[Host]) -> GroupResult:
        return dispatch_action(self, step, hosts)


def dispatch_action(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    """Run one step's action on hosts; a table of handlers rather than an if/elif chain."""
    return _HANDLERS[step.action](run, step, hosts)


def _on_output(run: PhaseRun) -> Callable[[str, str], None]:
    def emit(host: str, line: str) -> None:
        run.parts.say(f"    {host + ': ' if host else ''}{line}")
    return emit


def playbook_request(run: PhaseRun, playbook: str, hosts: list[Host], step: Step,
                     artifacts: Path, check: bool, timeout: float | None) -> PlaybookRequest:
    return PlaybookRequest(
        playbook=(run.project.root / playbook).resolve(), hosts=tuple(hosts),
        inventory=run.inventory.path, artifacts_dir=artifacts, check=check, timeout=timeout,
        extravars={"migrate_run_id": run.run_id, "migrate_phase": run.phase.number,
                   "migrate_step": step.id, "migrate_dry_run": run.dry_run,
                   "migrate_artifacts_dir": str(artifacts)},
        on_output=_on_output(run))


def _run_playbook(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    req = playbook_request(run, step.target, hosts, step, run._artifacts(step.id),
                           run.dry_run, step.timeout)
    return run.parts.playbooks.run_playbook(req, run.cancel)


def run_commands(run: PhaseRun, template: str, hosts: list[Host], timeout: float | None,
                 artifacts: Path, cancel: CancelToken) -> GroupResult:
    """Render per host (shell-quoted) and run concurrently, one thread per host."""
    def one(host: Host) -> Result:
        command = render(template, context_for(host.name, run.hostvars, run.phase.number,
                                               run.run_id), shell=True)
        req = CommandRequest(host=host, command=command, artifacts_dir=artifacts,
                             timeout=timeout, on_output=_on_output(run))
        return run.parts.commands.run_command(req, cancel)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        results = list(pool.map(one, hosts))
    return GroupResult({r.host: r for r in results})


def _run_command(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    if run.dry_run:
        out: dict[str, Result] = {}
        for h in hosts:
            cmd = render(step.target, context_for(h.name, run.hostvars, run.phase.number,
                                                  run.run_id), shell=True)
            run.parts.say(f"    {h.name}: would run: {cmd}")
            out[h.name] = Result(h.name, True, "dry run: not run")
        return GroupResult(out)
    return run_commands(run, step.target, hosts, step.timeout, run._artifacts(step.id),
                        run.cancel)


def _run_wait(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    seconds = 0.0 if run.dry_run else step.wait_seconds
    cut = run.parts.clock.sleep(seconds, run.cancel)
    return GroupResult({h.name: Result(h.name, not cut,
                                       f"cut short: {run.cancel.reason}" if cut
                                       else f"waited {seconds:g}s", cancelled=cut)
                        for h in hosts})


def _run_pause(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    answer = True if run.dry_run else run.parts.prompter.confirm(
        f"{step.target} -- continue phase {run.phase.number} on "
        f"{', '.join(h.name for h in hosts)}?")
    if answer is None:
        detail = ("manual gate: no terminal to ask and --yes not given "
                  f"({step.target!r})")
    elif answer:
        detail = "operator said yes"
    else:
        detail = "operator declined"
    return GroupResult({h.name: Result(h.name, bool(answer), detail) for h in hosts})


def _run_check(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    checker = run.parts.checker
    timeout = step.timeout if step.timeout is not None else 120.0

    def one(host: Host) -> Result:
        if checker is None:
            return Result(host.name, False, "no metric checker configured")
        return checker.check(step.target, host, run.phase.number, run.run_id, timeout,
                             run.cancel)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return GroupResult({r.host: r for r in pool.map(one, hosts)})


def _run_baseline(run: PhaseRun, step: Step, hosts: list[Host]) -> GroupResult:
    checker = run.parts.checker

    def one(host: Host) -> Result:
        if checker is None:
            return Result(host.name, False, "no metric checker configured")
        if run.dry_run:
            return Result(host.name, True, f"dry run: would capture baseline {step.target}")
        return checker.capture_baseline(step.target, host, run.phase.number, run.run_id,
                                        step.capture_seconds, run.cancel)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return GroupResult({r.host: r for r in pool.map(one, hosts)})


_HANDLERS: dict[StepAction, Callable[[PhaseRun, Step, list[Host]], GroupResult]] = {
    StepAction.PLAYBOOK: _run_playbook,
    StepAction.COMMAND: _run_command,
    StepAction.WAIT: _run_wait,
    StepAction.PAUSE: _run_pause,
    StepAction.CHECK: _run_check,
    StepAction.BASELINE: _run_baseline,
}
assert set(_HANDLERS) == set(StepAction), "every step action needs a handler"


class Rollback:
    """Undo a phase on hosts: every step that started there in `run_id`, in reverse order."""

    def __init__(self, project: Project, inventory: Inventory, phase: Phase, hosts: list[Host],
                 parts: EngineParts, run_id: str, recorder: Recorder | None = None) -> None:
        self.project = project
        self.inventory = inventory
        self.phase = phase
        self.hosts = hosts
        self.parts = parts
        self.run_id = run_id
        if recorder is None:
            recorder = JournalRecorder(parts.journal)
            if parts.notifications is not None:
                recorder = NotifyingRecorder(recorder, parts.notifications)
        self.recorder = recorder
        # undo work must not be cut short by the cancel that stopped the forward steps
        self.cancel = CancelToken()
        self._run = PhaseRun(project, inventory, phase, hosts, parts, run_id=run_id,
                             cancel=self.cancel)
        self._run.recorder = self.recorder

    def started_steps(self, host: Host) -> list[tuple[int, Step]]:
        out = []
        for idx, step in enumerate(self.phase.steps):
            state = self.recorder.step_state(self.run_id, host.name, step.id)
            if state in (StepState.RUNNING, StepState.SUCCEEDED, StepState.FAILED,
                         StepState.ROLLING_BACK, StepState.ROLLBACK_FAILED):
                out.append((idx, step))
        return list(reversed(out))

    def execute(self, reason: str) -> RunReport:
        say = self.parts.say
        say(f"rolling back phase {self.phase.number} on "
            f"{', '.join(h.name for h in self.hosts)}: {reason}")
        for host in self.hosts:
            self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                     PhaseState.ROLLING_BACK, "rollback_started", reason,
                                     reason=reason)
        needs_human: list[str] = []
        lock = threading.Lock()

        def one(host: Host) -> None:
            failed = self._undo_host(host)
            with lock:
                needs_human.extend(failed)

        with ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
            list(pool.map(one, self.hosts))
        for host in self.hosts:
            mine = [n for n in needs_human if n.startswith(f"{host.name}: ")]
            if mine:
                self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                         PhaseState.ROLLBACK_FAILED, "rollback_failed",
                                         "a human is needed: " + "; ".join(mine),
                                         reason=f"{reason}; rollback failed: {'; '.join(mine)}")
            else:
                self.recorder.move_phase(self.run_id, host.name, self.phase.number,
                                         PhaseState.ROLLED_BACK, "rollback_completed", reason,
                                         reason=reason)
        self._recheck()
        if needs_human:
            say("ROLLBACK FAILED; a human is needed for: " + "; ".join(needs_human))
            outcome = RunOutcome.ROLLBACK_FAILED
        else:
            say(f"phase {self.phase.number} rolled back")
            outcome = RunOutcome.ROLLED_BACK
        return RunReport(self.run_id, self.phase.number, [h.name for h in self.hosts], outcome,
                         reason, needs_human)

    def _recheck(self) -> None:
        """After the undos, read the phase's pass/fail metrics once and journal what they say.

        A failing re-check is reported, not turned into rollback_failed: the fault that
        fired the trigger (a partitioned peer, say) may outlive the rollback.
        """
        checker = self.parts.checker
        if checker is None:
            return
        metrics = sorted({self.project.triggers[t].metric for t in self.phase.triggers
                          if self.project.metrics[self.project.triggers[t].metric].kind
                          is MetricKind.PASSFAIL} | set(self.phase.preconditions))
        for host in self.hosts:
            for metric in metrics:
                ok, why = checker.passes_now(metric, host)
                kind = "rollback_verified" if ok else "rollback_verify_failed"
                self.recorder.event(self.run_id, host.name, self.phase.number, None, kind,
                                    f"{metric}: {why}")
                if not ok:
                    self.parts.say(f"  after rollback, {metric} on {host.name}: {why}")

    def _undo_host(self, host: Host) -> list[str]:
        failed: list[str] = []
        for idx, step in self.started_steps(host):
            undo = step.undo
            if undo is None:
                continue  # check, wait, pause, baseline: nothing to undo
            self.recorder.move_step(self.run_id, host.name, self.phase.number, step.id, idx,
                                    StepState.ROLLING_BACK, "step_rollback_started",
                                    undo.describe())
            result = self._undo_with_retries(host, step)
            if result.ok:
                self.recorder.move_step(self.run_id, host.name, self.phase.number, step.id, idx,
                                        StepState.ROLLED_BACK, "step_rolled_back", result.detail)
                self.parts.say(f"  undone {host.name}: {step.id}")
            else:
                self.recorder.move_step(self.run_id, host.name, self.phase.number, step.id, idx,
                                        StepState.ROLLBACK_FAILED, "step_rollback_failed",
                                        result.detail)
                self.parts.say(f"  UNDO FAILED {host.name}: {step.id}: {result.detail}")
                failed.append(f"{host.name}: step {step.id} ({undo.describe()}: {result.detail})")
        return failed

    def _undo_with_retries(self, host: Host, step: Step) -> Result:
        result = Result(host.name, False, "not attempted")
        for attempt in range(self.parts.undo_attempts):
            if attempt:
                self.recorder.event(self.run_id, host.name, self.phase.number, step.id,
                                    "step_rollback_retry",
                                    f"attempt {attempt} failed: {result.detail}")
                self.parts.clock.sleep(self.parts.undo_retry_delay * attempt)
            result = self._undo_once(host, step)
            if result.ok or "task(s) failed" in result.detail or "exit " in result.detail:
                # a failing playbook or command fails the same way again; retry only
                # what may pass next time (unreachable host, timeout)
                break
        return result

    def _undo_once(self, host: Host, step: Step) -> Result:
        assert step.undo is not None
        if step.undo.kind is UndoKind.NONE:
            return Result(host.name, True, "rollback: none")
        artifacts = self._run._artifacts(f"rollback-{step.id}")
        if step.undo.kind is UndoKind.PLAYBOOK:
            req = playbook_request(self._run, step.undo.target, [host], step, artifacts, False,
                                   step.timeout)
            return self.parts.playbooks.run_playbook(req, self.cancel).results.get(
                host.name, Result(host.name, False, "no result"))
        group = run_commands(self._run, step.undo.target, [host], step.timeout, artifacts,
                             self.cancel)
        return group.results[host.name]
