"""Step actions and undos: one small class each, looked up in a table by kind.

An action runs one step on a set of hosts and returns a `GroupResult` (successes
and failures per host, each failure with its `FailureKind`). It is handed a
`StepContext` and nothing else, so the same classes serve a phase, a dry run, a
resume and, for undos, a rollback. Adding a step kind is one class and one row
of `ACTIONS`; the table is checked against `StepAction` at import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orchestrator.config.inventory import Host
from orchestrator.config.templating import context_for, render
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import Step, StepAction, UndoKind
from orchestrator.engine.context import StepContext
from orchestrator.engine.fanout import fan_out
from orchestrator.runners.base import (
    CommandRequest,
    GroupResult,
    PlaybookRequest,
    Result,
)


class Action(Protocol):
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult: ...


def _output_sink(ctx: StepContext) -> Callable[[str, str], None]:
    """Task lines reach the operator only with -v; they are always in the artifacts."""
    if not ctx.parts.verbose:
        return lambda host, line: None

    def emit(host: str, line: str) -> None:
        ctx.say(f"    {host + ': ' if host else ''}{line}")
    return emit


def step_timeout(ctx: StepContext, step: Step) -> float | None:
    """A step's own `timeout:` wins; otherwise `defaults: {step_timeout}`."""
    return step.timeout if step.timeout is not None else ctx.parts.step_timeout


def playbook_request(ctx: StepContext, playbook: str, hosts: list[Host], step: Step,
                     artifacts: Path, check: bool) -> PlaybookRequest:
    return PlaybookRequest(
        playbook=(ctx.project.root / playbook).resolve(), hosts=tuple(hosts),
        inventory=ctx.inventory.path, artifacts_dir=artifacts, check=check,
        timeout=step_timeout(ctx, step),
        extravars={"migrate_run_id": ctx.run_id, "migrate_phase": ctx.phase.number,
                   "migrate_step": step.id, "migrate_dry_run": ctx.dry_run,
                   "migrate_artifacts_dir": str(artifacts)},
        on_output=_output_sink(ctx))


def rendered_command(ctx: StepContext, template: str, host: Host) -> str:
    return render(template, context_for(host.name, ctx.hostvars, ctx.phase.number, ctx.run_id),
                  shell=True)


def run_commands(ctx: StepContext, template: str, hosts: list[Host], timeout: float | None,
                 artifacts: Path, cancel: CancelToken) -> GroupResult:
    """Render per host (shell-quoted) and run concurrently."""
    def one(host: Host) -> Result:
        req = CommandRequest(host=host, command=rendered_command(ctx, template, host),
                             artifacts_dir=artifacts, timeout=timeout,
                             on_output=_output_sink(ctx))
        return ctx.parts.commands.run_command(req, cancel)

    return GroupResult(fan_out(hosts, one, ctx.parts.forks))


class PlaybookAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        req = playbook_request(ctx, step.target, hosts, step, ctx.artifacts(step.id),
                               ctx.dry_run)
        return ctx.parts.playbooks.run_playbook(req, ctx.cancel)


class CommandAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        if ctx.dry_run:
            for h in hosts:
                ctx.say(f"    {h.name}: would run: {rendered_command(ctx, step.target, h)}")
            return GroupResult({h.name: Result(h.name, True, "dry run: not run") for h in hosts})
        return run_commands(ctx, step.target, hosts, step_timeout(ctx, step),
                            ctx.artifacts(step.id), ctx.cancel)


class WaitAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        seconds = 0.0 if ctx.dry_run else step.wait_seconds
        cut = ctx.parts.clock.sleep(seconds, ctx.cancel)
        return GroupResult({h.name: Result(h.name, not cut,
                                           f"cut short: {ctx.cancel.reason}" if cut
                                           else f"waited {seconds:g}s", cancelled=cut)
                            for h in hosts})


class PauseAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        answer = True if ctx.dry_run else ctx.parts.prompter.confirm(
            f"{step.target} -- continue phase {ctx.phase.number} on "
            f"{', '.join(h.name for h in hosts)}?")
        if answer is None:
            detail = f"manual gate: no terminal to ask and --yes not given ({step.target!r})"
        else:
            detail = "operator said yes" if answer else "operator declined"
        return GroupResult({h.name: Result(h.name, bool(answer), detail) for h in hosts})


class CheckAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        checker = ctx.parts.checker
        timeout = step.timeout if step.timeout is not None else 120.0

        def one(host: Host) -> Result:
            if checker is None:
                return Result(host.name, False, "no metric checker configured")
            return checker.check(step.target, host, ctx.phase.number, ctx.run_id, timeout,
                                 ctx.cancel, ctx.t0)

        return GroupResult(fan_out(hosts, one, ctx.parts.forks))


class BaselineAction:
    def run(self, ctx: StepContext, step: Step, hosts: list[Host]) -> GroupResult:
        checker = ctx.parts.checker

        def one(host: Host) -> Result:
            if checker is None:
                return Result(host.name, False, "no metric checker configured")
            if ctx.dry_run:
                return Result(host.name, True, f"dry run: would capture baseline {step.target}")
            return checker.capture_baseline(step.target, host, ctx.phase.number, ctx.run_id,
                                            step.capture_seconds, ctx.cancel)

        return GroupResult(fan_out(hosts, one, ctx.parts.forks))


ACTIONS: dict[StepAction, Action] = {
    StepAction.PLAYBOOK: PlaybookAction(),
    StepAction.COMMAND: CommandAction(),
    StepAction.WAIT: WaitAction(),
    StepAction.PAUSE: PauseAction(),
    StepAction.CHECK: CheckAction(),
    StepAction.BASELINE: BaselineAction(),
}
assert set(ACTIONS) == set(StepAction), "every step action needs a class"


# --- undos ---------------------------------------------------------------------------------
class Undo(Protocol):
    def undo(self, ctx: StepContext, step: Step, hosts: list[Host]) -> dict[str, Result]: ...


class NoUndo:
    def undo(self, ctx: StepContext, step: Step, hosts: list[Host]) -> dict[str, Result]:
        return {h.name: Result(h.name, True, "rollback: none") for h in hosts}


class PlaybookUndo:
    """One Ansible run for every host the step is undone on, as the forward step ran."""

    def undo(self, ctx: StepContext, step: Step, hosts: list[Host]) -> dict[str, Result]:
        assert step.undo is not None
        req = playbook_request(ctx, step.undo.target, hosts, step,
                               ctx.artifacts(f"rollback-{step.id}"), False)
        group = ctx.parts.playbooks.run_playbook(req, ctx.cancel)
        return {h.name: group.results.get(h.name) or Result(h.name, False, "no result")
                for h in hosts}


class CommandUndo:
    def undo(self, ctx: StepContext, step: Step, hosts: list[Host]) -> dict[str, Result]:
        assert step.undo is not None
        group = run_commands(ctx, step.undo.target, hosts, step_timeout(ctx, step),
                             ctx.artifacts(f"rollback-{step.id}"), ctx.cancel)
        return group.results


UNDOS: dict[UndoKind, Undo] = {
    UndoKind.NONE: NoUndo(),
    UndoKind.PLAYBOOK: PlaybookUndo(),
    UndoKind.COMMAND: CommandUndo(),
}
assert set(UNDOS) == set(UndoKind), "every undo kind needs a class"
