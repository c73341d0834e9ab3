"""Undo a phase on hosts: every step that started there in the run, in reverse order.

`Rollback` is only the mechanics. Deciding *that* hosts roll back, for what
reason, and with which lock and run record, is `engine.lifecycle.RunLifecycle`'s
job: that is the one place a rollback begins.

Undos that failed because the host was unreachable or timed out are retried by a
tenacity policy (`defaults: {undo_retries, undo_retry_delay, undo_deadline}`) that
sleeps on the injected clock. The deadline counts from the start of the rollback (SPEC
section 2, "Connections"): no attempt on a lost host starts past it, and one in flight
then is cut, so a run whose host is cut mid-step ends within keepalive x count +
undo_deadline + a few seconds. An undo that failed on its own merits (a task failed,
exit 1) would fail the same way again and is not retried.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.stop import stop_base

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.events import EventKind
from orchestrator.core.model import MetricKind, Step
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState, PhaseTransition, StepState, StepTransition
from orchestrator.core.supervision import describe
from orchestrator.engine.actions import UNDOS
from orchestrator.engine.context import StepContext
from orchestrator.runners.base import FailureKind, Result
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.recorder import Recorder


class RollbackCause(enum.Enum):
    """Who or what asked for a rollback (journaled as the events' `origin`)."""

    STEP_FAILURE = "step_failure"
    TRIGGER = "trigger"
    OPERATOR = "operator"  # `migrate rollback`, or Ctrl-C
    WATCH = "watch"
    RESUME = "resume"  # a run that died while rolling back, finished by `migrate resume`
    BUDGET = "budget"  # the failure budget of a fleet run was exhausted
    WORKER = "worker"  # a background worker of the run died (monitor, receiver, waiter)


@dataclass(frozen=True)
class Reason:
    cause: RollbackCause
    text: str  # the human reason, as `status` shows it
    trigger: str | None = None
    host: str | None = None  # the host that fired or failed, if one did

    def payload(self) -> dict[str, str | None]:
        return {"origin": self.cause.value, "trigger": self.trigger, "culprit": self.host}


_UNDO_STARTED = frozenset({StepState.RUNNING, StepState.SUCCEEDED, StepState.FAILED,
                           StepState.ROLLING_BACK, StepState.ROLLBACK_FAILED})


def _retryable(result: Result) -> bool:
    """Only what may pass next time: an unreachable host, a timeout."""
    return not result.ok and result.failure is not None and result.failure.retryable


class Rollback:
    """Undo one phase on hosts within one run. `ctx.cancel` is the run's undo token: when
    the operator cancels it, the undo in flight stops and the phase is left `interrupted`
    (what was undone stays undone; `migrate rollback` run again finishes the rest)."""

    def __init__(self, ctx: StepContext, recorder: Recorder, started: float | None = None) -> None:
        """`started`: when the rollback began (its hosts may be undone in several groups,
        one per origin run); default now."""
        self.ctx = ctx
        self.recorder = recorder
        #: when the undo deadline falls: `undo_deadline` after the rollback's start
        self.deadline = (ctx.parts.clock.monotonic() if started is None else started) \
            + ctx.parts.undo_deadline
        self.lost: set[str] = set()  # hosts whose last undo found them unreachable

    def started_steps(self, host: Host) -> list[tuple[int, Step]]:
        out = [(idx, step) for idx, step in enumerate(self.ctx.phase.steps)
               if self.recorder.step_state(self.ctx.origin_run, host.name, step.id)
               in _UNDO_STARTED]
        return list(reversed(out))

    def execute(self, hosts: list[Host], reason: Reason) -> RunReport:
        ctx, rec = self.ctx, self.recorder
        phase = ctx.phase.number
        started = {h.name: self._started(h) for h in hosts}
        touched = [h for h in hosts if any(ctx.phase.steps[i].undo is not None
                                           for i in started[h.name])]
        ctx.say(f"rolling back phase {phase}"
                + (f" on {_names(touched)}" if touched else " (nothing to undo)")
                + f": {reason.text}")
        with rec.batch():
            for host in hosts:
                rec.move_phase(PhaseTransition.ROLL_BACK, ctx.run_id, host.name, phase,
                               reason.text, reason=reason.text, **reason.payload())
        failures: dict[str, list[str]] = {h.name: [] for h in hosts}
        # step by step in reverse, each undo once for all the hosts where its step started
        # (one Ansible run per step, as forward), every undo attempted even after one failed
        for idx in reversed(range(len(ctx.phase.steps))):
            if ctx.cancel.cancelled:
                return self._interrupted(hosts, reason)
            step = ctx.phase.steps[idx]
            if step.undo is None:
                continue  # check, wait, pause, baseline: nothing to undo
            targets = [h for h in hosts if idx in started[h.name]]
            if not targets:
                continue
            for name, why in self._undo_step(idx, step, targets).items():
                failures[name].append(why)
        if ctx.cancel.cancelled:
            return self._interrupted(hosts, reason)
        needs_human: list[str] = []
        with rec.batch():
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
        # a host whose undo failed needs a human, not a re-check (a lost host would only
        # make the operator wait for another connect timeout)
        self._recheck([h for h in hosts if not failures[h.name]])
        undone = [h for h in touched if not failures[h.name]]
        if needs_human:
            ctx.say("ROLLBACK FAILED; a human is needed for: " + "; ".join(needs_human))
            outcome = RunOutcome.ROLLBACK_FAILED
        else:
            ctx.say(f"phase {phase} rolled back" + (f" on {_names(undone)}" if undone
                                                     else ": nothing had run"))
            outcome = RunOutcome.ROLLED_BACK
        return RunReport(ctx.run_id, phase, [h.name for h in hosts], outcome, reason.text,
                         needs_human)

    def _interrupted(self, hosts: list[Host], reason: Reason) -> RunReport:
        """The operator stopped the undo: the phase is left `interrupted`, for `migrate
        rollback` (or `resume`) to finish what is left."""
        ctx, rec = self.ctx, self.recorder
        why = ctx.cancel.reason or "interrupted by the operator"
        with rec.batch():
            for host in hosts:
                if rec.phase_state(host.name, ctx.phase.number) is PhaseState.ROLLING_BACK:
                    rec.move_phase(PhaseTransition.INTERRUPT, ctx.run_id, host.name,
                                   ctx.phase.number, f"rollback stopped: {why}",
                                   reason=f"{reason.text}; rollback stopped: {why}")
        ctx.say(f"rollback of phase {ctx.phase.number} stopped ({why}); the phase is left "
                "interrupted: `migrate rollback` finishes what is left")
        return RunReport(ctx.run_id, ctx.phase.number, [h.name for h in hosts],
                         RunOutcome.INTERRUPTED, f"{reason.text}; rollback stopped: {why}")

    def _started(self, host: Host) -> set[int]:
        return {idx for idx, _ in self.started_steps(host)}

    def _recheck(self, hosts: list[Host]) -> None:
        """After the undos, read the phase's pass/fail metrics once and journal what they say.

        A failing re-check is reported, not turned into rollback_failed: the fault that
        fired the trigger (a partitioned peer, say) may outlive the rollback.
        """
        ctx = self.ctx
        checker = ctx.parts.checker
        if checker is None or not hosts:
            return
        project = ctx.project
        metrics = sorted({project.triggers[t].metric for t in ctx.phase.triggers
                          if project.triggers[t].metric in project.metrics
                          and project.metrics[project.triggers[t].metric].kind
                          is MetricKind.PASSFAIL} | set(ctx.phase.preconditions))
        for host in hosts:
            for metric in metrics:
                if ctx.cancel.cancelled:
                    return
                ok, why = checker.passes_now(metric, host)
                kind = EventKind.ROLLBACK_VERIFIED if ok else EventKind.ROLLBACK_VERIFY_FAILED
                self.recorder.event(kind, ctx.run_id, host.name, ctx.phase.number, None,
                                    f"{metric}: {why}", metric=metric, passes=ok)
                if not ok:
                    ctx.say(f"  after rollback, {metric} on {host.name}: {why}")

    def _undo_step(self, idx: int, step: Step, hosts: list[Host]) -> dict[str, str]:
        """Undo one step on `hosts`; {host: why} for those where the undo failed for good."""
        ctx, rec = self.ctx, self.recorder
        assert step.undo is not None
        # the origin run's step rows move; the events are this (rollback) run's
        owner = ctx.run_id if ctx.origin_run != ctx.run_id else None
        with rec.batch():
            for host in hosts:
                rec.move_step(StepTransition.UNDO, ctx.origin_run, host.name, ctx.phase.number,
                              step.id, idx, step.undo.describe(), owner=owner)
        results = self._undo_with_retries(step, hosts)
        failed: dict[str, str] = {}
        if ctx.cancel.cancelled:  # stopped by the operator: the step stays rolling_back
            return failed
        with rec.batch():
            for host in hosts:
                result = results[host.name]
                if result.ok:
                    rec.move_step(StepTransition.UNDONE, ctx.origin_run, host.name,
                                  ctx.phase.number, step.id, idx, result.detail, owner=owner)
                    ctx.say(f"  undone {host.name}: {step.id}")
                else:
                    rec.move_step(StepTransition.UNDO_FAILED, ctx.origin_run, host.name,
                                  ctx.phase.number, step.id, idx, result.detail, owner=owner,
                                  failure=result.failure.value if result.failure else None,
                                  log=result.log or None)
                    ctx.say(f"  UNDO FAILED {host.name}: {step.id}: {result.describe()}")
                    failed[host.name] = (f"{host.name}: step {step.id} ({step.undo.describe()}: "
                                         f"{result.describe()})")
        return failed

    def _undo_with_retries(self, step: Step, hosts: list[Host]) -> dict[str, Result]:
        """Run the undo on all `hosts`, then again on those that were unreachable or timed
        out, on the policy's schedule; the last answer of each host stands.

        `self.deadline` (the rollback's start + `undo_deadline`) bounds the lost hosts:
        past it no attempt on a lost host starts (not even this step's first: it is
        failed as not attempted), a retry starts only if its backoff ends before the
        deadline, and an attempt on a lost host still in flight at the deadline is cut (its
        token is cancelled by a timer): a host that comes back before the deadline is
        still undone. A host that is gone costs the rollback at most the deadline, not retries
        x connect timeouts; a reachable host's undo is never cut by it.
        """
        ctx = self.ctx
        assert step.undo is not None
        undo = UNDOS[step.undo.kind]
        clock = ctx.parts.clock
        deadline_s = ctx.parts.undo_deadline
        results: dict[str, Result] = {}
        pending = list(hosts)
        if clock.monotonic() >= self.deadline:
            for h in [h for h in pending if h.name in self.lost]:
                results[h.name] = Result.failed(
                    h.name, FailureKind.UNREACHABLE, f"not attempted: the host was lost and "
                    f"the undo deadline ({deadline_s:g}s from the rollback's start) passed")
            pending = [h for h in pending if h.name not in self.lost]
        timers: list[threading.Timer] = []

        def attempt_token() -> CancelToken:
            token = ctx.cancel.child()
            if any(h.name in self.lost for h in pending):
                timer = threading.Timer(max(0.0, self.deadline - clock.monotonic()),
                                        token.cancel,
                                        args=(f"undo deadline ({deadline_s:g}s) reached",))
                timer.daemon = True
                timer.start()
                timers.append(timer)
            return token

        def once() -> list[Host]:
            nonlocal pending
            if not pending:
                return []
            token = attempt_token()
            try:
                answers = undo.undo(ctx.with_cancel(token), step, pending)
            except JournalUnavailableError:
                raise
            except Exception as exc:  # an undo that cannot even start is that undo failing
                answers = {h.name: Result.failed(h.name, FailureKind.EXIT,
                                                 f"the undo could not run: {describe(exc)}")
                           for h in pending}
            for name, result in answers.items():
                results[name] = result
            for h in pending:
                results.setdefault(h.name, Result.failed(h.name, FailureKind.EXIT, "no result"))
                if _retryable(results[h.name]):
                    self.lost.add(h.name)
                elif results[h.name].ok:
                    self.lost.discard(h.name)
            pending = [h for h in pending if _retryable(results[h.name])]
            if ctx.cancel.cancelled:
                return []
            return pending

        def backoff(state: RetryCallState) -> float:
            """delay, 1.5 x delay, ...: the wait before the next attempt."""
            return max(0.0, ctx.parts.undo_retry_delay * 1.5 ** (state.attempt_number - 1))

        def past_deadline(state: RetryCallState) -> bool:
            """Stop when the next attempt would start past the deadline (SPEC: no attempt
            on a lost host starts past it; one in flight then is cut, which bounds the
            rollback at the deadline either way)."""
            return clock.monotonic() + backoff(state) >= self.deadline

        def before_retry(state: RetryCallState) -> None:
            for host in pending:
                self.recorder.event(EventKind.STEP_ROLLBACK_RETRY, ctx.run_id, host.name,
                                    ctx.phase.number, step.id,
                                    f"attempt {state.attempt_number} failed: "
                                    f"{results[host.name].detail}",
                                    attempt=state.attempt_number)

        def sleep(seconds: float) -> None:
            clock.sleep(seconds, ctx.cancel)

        try:
            Retrying(stop=stop_after_attempt(max(1, ctx.parts.undo_attempts))
                     | stop_when(past_deadline),
                     wait=backoff, retry=retry_if_result(bool), sleep=sleep,
                     before_sleep=before_retry, retry_error_callback=_give_up)(once)
        finally:
            for timer in timers:
                timer.cancel()
        return results


class stop_when(stop_base):  # noqa: N801 - named like tenacity's own strategies
    """tenacity stop strategy: stop once `predicate()` holds (the undo deadline)."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.predicate(retry_state)


def _give_up(state: RetryCallState) -> list[Host]:
    return []


def _names(hosts: list[Host]) -> str:
    if len(hosts) > 8:
        return f"{', '.join(h.name for h in hosts[:6])} and {len(hosts) - 6} more"
    return ", ".join(h.name for h in hosts)
