"""Undo a phase on hosts: every step that started there in the run, in reverse order.

`Rollback` is only the mechanics. Deciding *that* hosts roll back, for what
reason, and with which lock and run record, is `engine.lifecycle.RunLifecycle`'s
job: that is the one place a rollback begins.

Undos that failed because the host was unreachable or timed out are retried by a
tenacity policy (`defaults: {undo_retries, undo_retry_delay}`) that sleeps on the
injected clock; an undo that failed on its own merits (a task failed, exit 1)
would fail the same way again and is not retried.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_fixed

from orchestrator.config.inventory import Host
from orchestrator.core.events import EventKind
from orchestrator.core.model import MetricKind, Step
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseTransition, StepState, StepTransition
from orchestrator.engine.actions import UNDOS
from orchestrator.engine.context import StepContext, clock_sleep
from orchestrator.engine.fanout import fan_out
from orchestrator.runners.base import Result
from orchestrator.state.recorder import Recorder


class Origin(enum.Enum):
    """Who or what asked for a rollback."""

    STEP_FAILURE = "step_failure"
    TRIGGER = "trigger"
    OPERATOR = "operator"  # `migrate rollback`, or Ctrl-C
    WATCH = "watch"
    RESUME = "resume"  # a run that died while rolling back, finished by `migrate resume`
    BUDGET = "budget"  # the failure budget of a fleet run was exhausted


@dataclass(frozen=True)
class Reason:
    origin: Origin
    text: str  # the human reason, as `status` shows it
    trigger: str | None = None
    host: str | None = None  # the host that fired or failed, if one did

    def payload(self) -> dict[str, str | None]:
        return {"origin": self.origin.value, "trigger": self.trigger, "culprit": self.host}


_UNDO_STARTED = frozenset({StepState.RUNNING, StepState.SUCCEEDED, StepState.FAILED,
                           StepState.ROLLING_BACK, StepState.ROLLBACK_FAILED})


def _retryable(result: Result) -> bool:
    """Only what may pass next time: an unreachable host, a timeout."""
    failure = getattr(result, "failure", None)
    return not result.ok and failure is not None and failure.value in ("unreachable", "timeout")


class Rollback:
    def __init__(self, ctx: StepContext, recorder: Recorder) -> None:
        self.ctx = ctx
        self.recorder = recorder

    def started_steps(self, host: Host) -> list[tuple[int, Step]]:
        out = [(idx, step) for idx, step in enumerate(self.ctx.phase.steps)
               if self.recorder.step_state(self.ctx.run_id, host.name, step.id) in _UNDO_STARTED]
        return list(reversed(out))

    def execute(self, hosts: list[Host], reason: Reason) -> RunReport:
        ctx, rec = self.ctx, self.recorder
        phase = ctx.phase.number
        ctx.say(f"rolling back phase {phase} on {', '.join(h.name for h in hosts)}: "
                f"{reason.text}")
        for host in hosts:
            rec.move_phase(PhaseTransition.ROLL_BACK, ctx.run_id, host.name, phase,
                           reason.text, reason=reason.text, **reason.payload())
        failures = fan_out(hosts, self._undo_host, ctx.parts.forks)
        needs_human: list[str] = []
        for host in hosts:
            mine = failures[host.name]
            if mine:
                needs_human += mine
                rec.move_phase(PhaseTransition.ROLLBACK_FAILED, ctx.run_id, host.name, phase,
                               "a human is needed: " + "; ".join(mine),
                               reason=f"{reason.text}; rollback failed: {'; '.join(mine)}",
                               **reason.payload())
            else:
                rec.move_phase(PhaseTransition.ROLLED_BACK, ctx.run_id, host.name, phase,
                               reason.text, reason=reason.text, **reason.payload())
        self._recheck(hosts)
        if needs_human:
            ctx.say("ROLLBACK FAILED; a human is needed for: " + "; ".join(needs_human))
            outcome = RunOutcome.ROLLBACK_FAILED
        else:
            ctx.say(f"phase {phase} rolled back on {', '.join(h.name for h in hosts)}")
            outcome = RunOutcome.ROLLED_BACK
        return RunReport(ctx.run_id, phase, [h.name for h in hosts], outcome, reason.text,
                         needs_human)

    def _recheck(self, hosts: list[Host]) -> None:
        """After the undos, read the phase's pass/fail metrics once and journal what they say.

        A failing re-check is reported, not turned into rollback_failed: the fault that
        fired the trigger (a partitioned peer, say) may outlive the rollback.
        """
        ctx = self.ctx
        checker = ctx.parts.checker
        if checker is None:
            return
        project = ctx.project
        metrics = sorted({project.triggers[t].metric for t in ctx.phase.triggers
                          if project.triggers[t].metric in project.metrics
                          and project.metrics[project.triggers[t].metric].kind
                          is MetricKind.PASSFAIL} | set(ctx.phase.preconditions))
        for host in hosts:
            for metric in metrics:
                ok, why = checker.passes_now(metric, host)
                kind = EventKind.ROLLBACK_VERIFIED if ok else EventKind.ROLLBACK_VERIFY_FAILED
                self.recorder.event(kind, ctx.run_id, host.name, ctx.phase.number, None,
                                    f"{metric}: {why}", metric=metric, passes=ok)
                if not ok:
                    ctx.say(f"  after rollback, {metric} on {host.name}: {why}")

    def _undo_host(self, host: Host) -> list[str]:
        ctx, rec = self.ctx, self.recorder
        failed: list[str] = []
        for idx, step in self.started_steps(host):
            if step.undo is None:
                continue  # check, wait, pause, baseline: nothing to undo
            rec.move_step(StepTransition.UNDO, ctx.run_id, host.name, ctx.phase.number, step.id,
                          idx, step.undo.describe())
            result = self._undo_with_retries(host, step)
            if result.ok:
                rec.move_step(StepTransition.UNDONE, ctx.run_id, host.name, ctx.phase.number,
                              step.id, idx, result.detail)
                ctx.say(f"  undone {host.name}: {step.id}")
            else:
                rec.move_step(StepTransition.UNDO_FAILED, ctx.run_id, host.name,
                              ctx.phase.number, step.id, idx, result.detail,
                              failure=getattr(getattr(result, "failure", None), "value", None))
                ctx.say(f"  UNDO FAILED {host.name}: {step.id}: {result.detail}")
                failed.append(f"{host.name}: step {step.id} ({step.undo.describe()}: "
                              f"{result.detail})")
        return failed

    def _undo_with_retries(self, host: Host, step: Step) -> Result:
        ctx = self.ctx
        assert step.undo is not None
        undo = UNDOS[step.undo.kind]

        def before_retry(state: RetryCallState) -> None:
            last = state.outcome.result() if state.outcome else None
            self.recorder.event(EventKind.STEP_ROLLBACK_RETRY, ctx.run_id, host.name,
                                ctx.phase.number, step.id,
                                f"attempt {state.attempt_number} failed: "
                                f"{last.detail if last else '?'}",
                                attempt=state.attempt_number)

        policy = Retrying(stop=stop_after_attempt(max(1, ctx.parts.undo_attempts)),
                          wait=wait_fixed(ctx.parts.undo_retry_delay),
                          retry=retry_if_result(_retryable),
                          sleep=clock_sleep(ctx),
                          before_sleep=before_retry, retry_error_callback=_last_result,
                          reraise=False)
        return policy(undo.undo, ctx, step, host)


def _last_result(state: RetryCallState) -> Result:
    assert state.outcome is not None
    return state.outcome.result()  # type: ignore[no-any-return]
