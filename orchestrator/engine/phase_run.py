"""The forward run of one phase on a run's hosts: wave by wave, step by step, then bake.

A wave runs each step on its live hosts at once (one Ansible run per step per
wave), then bakes while the monitor watches every host that started in the run.
A failed step or a fired trigger is a failed *host*: the `FailureBudget` decides
whether the run absorbs it (that host alone is rolled back, the run goes on) or
stops (the current wave, or the whole run with `on_fire: run`, is rolled back).
With no `waves:` the run is one wave and the budget is 0, which is the classic
behaviour: the first failure rolls back every host that started.

This module never starts a rollback itself: it asks `RunLifecycle.roll_back`
(passed in as `roll_back`), the one place a rollback begins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_none

from orchestrator.config.inventory import Host
from orchestrator.config.templating import context_for, render
from orchestrator.core.bus import Fire, WorkerDied
from orchestrator.core.events import EventKind, Firing
from orchestrator.core.model import Step, StepAction
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState, PhaseTransition, StepState, StepTransition
from orchestrator.core.supervision import describe
from orchestrator.engine.actions import ACTIONS
from orchestrator.engine.context import StepContext, clock_sleep
from orchestrator.engine.rollback import Reason, RollbackCause
from orchestrator.engine.waves import FailureBudget, plan_waves
from orchestrator.runners.base import FailureKind, GroupResult, Result
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.recorder import Recorder

if TYPE_CHECKING:
    from orchestrator.engine.analysis import RunAnalysis

RollBack = Callable[[list[Host], Reason], RunReport]


@dataclass
class FleetPlan:
    """How the run spreads over its hosts; from the phase file, overridden by the CLI."""

    waves: tuple[int | str, ...] = ()
    max_failed: int | str = 0
    on_fire: str = "wave"


class PhaseRun:
    def __init__(self, ctx: StepContext, hosts: list[Host], recorder: Recorder,
                 roll_back: RollBack, plan: FleetPlan, command: str,
                 resume: bool = False) -> None:
        self.ctx = ctx
        self.hosts = hosts
        self.recorder = recorder
        self.roll_back = roll_back
        self.plan = plan
        self.command = command
        self.resume = resume
        self.budget = FailureBudget.of(plan.max_failed, len(hosts))
        self.fleet = bool(plan.waves) or self.budget.allowed > 0
        self.rolled: list[RunReport] = []  # hosts rolled back on their own, within budget
        self.out: set[str] = set()  # hosts no longer in the run (rolled back)
        self.started: list[Host] = []  # every host that started, in order
        self.stop: Reason | None = None
        self.pause: str | None = None  # an `action: pause` fire, answered before the next step
        self.death: Reason | None = None  # a background worker of the run died
        self.analysis: RunAnalysis | None = None  # the phase's `analysis:`, for this run

    # --- the bus's screen (the posting thread) -----------------------------------------------
    def _stops(self, fire: Fire) -> bool:
        """Does this fire stop the run at once, the step in flight included? Past the
        failure budget (or without a fleet) it does; within it only that host rolls back,
        at the next safe point."""
        return not self.fleet or not self.budget.would_absorb(fire.firing.host)

    # --- the run -----------------------------------------------------------------------------
    def drive(self) -> RunReport:
        with self.ctx.bus.screening(self._stops):
            return self._drive()

    def _drive(self) -> RunReport:
        ctx = self.ctx
        phase = ctx.phase
        mode = " (dry run: check mode, nothing changes)" if ctx.dry_run else ""
        ctx.say(f"run {ctx.run_id}: phase {phase.number} ({phase.name}) on "
                f"{self._names(self.hosts)}{mode}")
        specs = self.plan.waves or (tuple(range(1, len(self.hosts) + 1)) if phase.serial == 1
                                    else ())
        waves = plan_waves(specs, self.hosts)
        if phase.analysis is not None:
            from orchestrator.engine.analysis import RunAnalysis

            self.analysis = RunAnalysis(ctx, phase.analysis, self.hosts, waves)
        ctx.parts.monitor.start(ctx.bus, phase, [], ctx.dry_run, self.recorder,
                                self.analysis.samples() if self.analysis is not None else None)
        current: list[Host] = []
        concluded = False  # False: an exception is leaving; the monitor must stop now
        try:
            for number, wave in enumerate(waves, 1):
                todo = [h for h in wave if not self._finished(h)]
                if not todo:
                    continue
                current = todo
                self._run_wave(number, len(waves), todo)
                if self.stop is not None:
                    break
            concluded = True
        except JournalUnavailableError:
            raise  # no undo without a record: the run stops, exit 3
        except Exception as exc:  # after the first step: that step failing on its hosts
            if self.stop is None:
                self.stop = Reason(RollbackCause.STEP_FAILURE, f"unexpected error: {describe(exc)}")
            ctx.say(f"FAILED: unexpected error: {describe(exc)}")
            ctx.cancel.cancel(self.stop.text)
            concluded = True
        finally:
            if not concluded:
                ctx.parts.monitor.stop()
        self._after_waves()
        try:
            self._absorb()
            return self._conclude(current)
        finally:
            ctx.parts.monitor.stop()

    def _after_waves(self) -> None:
        """A run that stopped keeps its monitor sampling (acting on nothing) through the
        rollback, so the report shows whether the metric recovered; otherwise it stops."""
        monitor = self.ctx.parts.monitor
        if self.stop is not None and not self.ctx.dry_run and self.death is None:
            monitor.record_only()
        else:
            monitor.stop()

    def _run_wave(self, number: int, count: int, wave: list[Host]) -> None:
        ctx, phase = self.ctx, self.ctx.phase
        if count > 1:
            ctx.say(f"wave {number}/{count}: {self._names(wave)}")
            self.recorder.event(EventKind.WAVE_STARTED, ctx.run_id, None, phase.number, None,
                                f"wave {number} of {count}: {self._names(wave)}",
                                wave=number, waves=count, hosts=[h.name for h in wave])
        with self.recorder.batch():
            for host in wave:
                resumed = self.resume and self.recorder.phase_state(host.name, phase.number) \
                    is PhaseState.INTERRUPTED
                self.recorder.move_phase(
                    PhaseTransition.RESUME if resumed else PhaseTransition.START, ctx.run_id,
                    host.name, phase.number, f"{self.command} (run {ctx.run_id})",
                    wave=number if count > 1 else None)
                self.started.append(host)
        ctx.parts.monitor.watch_more(wave)
        if self.analysis is not None:
            self._sample_before(number)
        self._run_steps(wave)
        live = self._live(wave)
        if self.stop is None and live and phase.bake > 0:
            self._bake(live)
        self._absorb()
        if self.stop is None and self.analysis is not None and number in self.analysis.judged:
            self._judge(number, count, self._live(wave))
        if self.stop is not None:
            return
        live = self._live(wave)
        with self.recorder.batch():
            for host in live:
                self.recorder.move_phase(PhaseTransition.COMPLETE, ctx.run_id, host.name,
                                         phase.number, f"all {len(phase.steps)} steps succeeded")
        if live:
            ctx.say(f"phase {phase.number} completed on {self._names(live)}")
        if count > 1:
            self.recorder.event(EventKind.WAVE_COMPLETED, ctx.run_id, None, phase.number, None,
                                f"wave {number} of {count} completed: {self._names(live)}",
                                wave=number, waves=count, hosts=[h.name for h in live])

    def _run_steps(self, wave: list[Host]) -> None:
        ctx = self.ctx
        for idx, step in enumerate(ctx.phase.steps):
            self._absorb()
            if self.stop is not None:
                return
            if self._answer_pause():
                return
            live = self._live(wave)
            if not live:
                return
            allowed = self._allowed(step)
            targets = [h for h in live if allowed is None or h.name in allowed]
            if self.resume:
                targets = [h for h in targets
                           if self.recorder.step_state(ctx.run_id, h.name, step.id)
                           is not StepState.SUCCEEDED]
            chosen = {h.name for h in targets}  # a set: 10,000 hosts x a list scan was
            with self.recorder.batch():            # 10^8 Host comparisons per step
                for h in live:
                    if h.name not in chosen and self.recorder.step_state(
                            ctx.run_id, h.name, step.id) is StepState.PENDING:
                        self.recorder.move_step(StepTransition.SKIP, ctx.run_id, h.name,
                                                ctx.phase.number, step.id, idx,
                                                f"hosts: {', '.join(step.hosts or ())}")
            if not targets:
                continue
            result = self._run_step(idx, step, targets)
            if ctx.cancel.cancelled:
                self._absorb()
                if self.stop is None:
                    self.stop = self._cancel_reason(step)
                return
            for name, r in result.failed.items():
                self._host_failed(Reason(RollbackCause.STEP_FAILURE,
                                         f"step {step.id} failed on {name}: {r.detail}",
                                         host=name))
                if self.stop is not None:
                    return

    def _run_step(self, idx: int, step: Step, targets: list[Host]) -> GroupResult:
        """Run a step on `targets`, retrying the hosts that failed (tenacity policy)."""
        ctx, rec = self.ctx, self.recorder
        final = GroupResult()
        pending = list(targets)
        attempts = step.retries + 1
        attempt = 0

        def once() -> list[Host]:
            nonlocal pending, attempt
            attempt += 1
            with rec.batch():
                for h in pending:
                    detail = self._describe(step, h) + (f" (attempt {attempt})" if attempt > 1
                                                        else "")
                    rec.move_step(StepTransition.START, ctx.run_id, h.name, ctx.phase.number,
                                  step.id, idx, detail, attempt=attempt)
            ctx.say(f"step {step.id} on {self._names(pending)}: {step.describe()}")
            try:
                result = ACTIONS[step.action].run(ctx, step, pending)
            except JournalUnavailableError:
                raise
            except Exception as exc:  # a runner that cannot start, a log dir that cannot be
                # made: the step failed on these hosts, and the phase rolls back what ran
                result = GroupResult({h.name: Result.failed(
                    h.name, FailureKind.EXIT, f"the step could not run: {describe(exc)}")
                    for h in pending})
            retry: list[Host] = []
            ok_hosts: list[str] = []
            with rec.batch():
                for h in pending:
                    r = result.results.get(h.name) or Result(h.name, False, "no result")
                    failure = r.failure.value if r.failure else None
                    last = attempt >= attempts or ctx.cancel.cancelled or r.cancelled
                    if r.ok:
                        final.results[h.name] = r
                        rec.move_step(StepTransition.SUCCEED, ctx.run_id, h.name, ctx.phase.number,
                                      step.id, idx, r.detail)
                        ok_hosts.append(h.name)
                    elif last:
                        final.results[h.name] = r
                        rec.move_step(StepTransition.FAIL, ctx.run_id, h.name, ctx.phase.number,
                                      step.id, idx, r.detail, failure=failure,
                                      log=r.log or None)
                        ctx.say(f"  {'STOPPED' if r.cancelled else 'FAILED'} {h.name}: "
                                f"{step.id}: {r.detail}")
                    else:
                        rec.event(EventKind.STEP_RETRY, ctx.run_id, h.name, ctx.phase.number,
                                  step.id, f"attempt {attempt} failed: {r.detail}",
                                  attempt=attempt, failure=failure)
                        ctx.say(f"  retry  {h.name}: {step.id}: {r.detail}")
                        retry.append(h)
            if len(ok_hosts) > 3:  # a fleet: one line, failures still one per host
                ctx.say(f"  ok     {step.id} on {len(ok_hosts)} hosts")
            elif ok_hosts:  # one line a step, so a drill fits a screen
                ctx.say(f"  ok     {', '.join(ok_hosts)}: {step.id}")
            pending = retry
            return retry

        def give_up(state: RetryCallState) -> list[Host]:
            return []

        Retrying(stop=stop_after_attempt(attempts), wait=wait_none(),
                 retry=retry_if_result(bool), sleep=clock_sleep(ctx),
                 retry_error_callback=give_up)(once)
        return final

    def _bake(self, live: list[Host]) -> None:
        ctx, phase = self.ctx, self.ctx.phase
        with self.recorder.batch():
            for host in live:
                self.recorder.move_phase(PhaseTransition.BAKE, ctx.run_id, host.name, phase.number,
                                         f"watching triggers for {phase.bake:g}s",
                                         bake_s=phase.bake)
        ctx.say(f"baking {phase.bake:g}s: triggers are watched")
        clock = ctx.parts.clock
        end = clock.monotonic() + phase.bake
        slice_ = max(0.05, min(ctx.project.poll_interval, 1.0))
        while True:
            left = end - clock.monotonic()
            if left <= 0:
                return
            cut = clock.sleep(min(slice_, left), ctx.cancel)
            self._absorb()
            if self.stop is not None:
                return
            if cut or ctx.cancel.cancelled:
                self.stop = self._cancel_reason(None)
                return

    # --- canary analysis (SPEC section 2) -----------------------------------------------------
    def _sample_before(self, number: int) -> None:
        """Control `before`: sample the wave's hosts for `window` before its first step
        (triggers watched meanwhile); then note when the steps begin."""
        assert self.analysis is not None
        owed = self.analysis.before_steps(number)
        if owed > 0 and self.stop is None:
            self.ctx.say(f"sampling the control (before) for {owed:.1f}s before the first step")
            clock = self.ctx.parts.clock
            end = clock.monotonic() + owed
            while self.stop is None and (left := end - clock.monotonic()) > 0:
                cut = clock.sleep(min(max(0.05, min(self.ctx.project.poll_interval, 1.0)),
                                      left), self.ctx.cancel)
                self._absorb()
                if self.stop is None and (cut or self.ctx.cancel.cancelled):
                    self.stop = self._cancel_reason(None)
        self.analysis.steps_begin(number)

    def _judge(self, number: int, count: int, canary: list[Host]) -> None:
        """The end of a judged wave's bake: judge, journal `analysis_completed`, then act:
        pass goes on, marginal asks as a `pause:` step does, fail is a trigger named
        `analysis` firing on each canary host (`on_fire`, `max_failed`); `dry_run` never acts."""
        assert self.analysis is not None
        if not canary:
            return
        ctx, spec = self.ctx, self.analysis.spec
        result, boxes = self.analysis.judge(number, canary, {h.name for h in self.started},
                                            self.out)
        detail = result.detail()  # SPEC's JSON; the payload adds the report's box plots
        self.recorder.event(EventKind.ANALYSIS_COMPLETED, ctx.run_id, None, ctx.phase.number,
                            None, json.dumps(detail), **detail, distributions=boxes,
                            canary_hosts=[h.name for h in canary],
                            failing=[m.name for m in result.metrics
                                     if m.counted and (m.failed or m.nodata)])
        where = f"wave {number}" if count > 1 else f"phase {ctx.phase.number}"
        failed = ", ".join(f"{m.name} {m.cls}" + ("" if m.counted else " (dry run)")
                           for m in result.metrics if m.failed or m.nodata) or "none"
        summary = (f"canary analysis of {where}: score {result.score:g} ({result.result}; "
                   f"pass {spec.pass_score:g}, marginal {spec.marginal:g}; failed: {failed})")
        ctx.say(summary + (" -- dry run: not acting" if spec.dry_run else ""))
        if spec.dry_run or result.result == "pass":
            return
        text = f"analysis: {summary}"
        if result.result == "marginal":
            answer = ctx.parts.prompter.confirm(f"{summary}: continue the phase?")
            said = "continue" if answer else ("roll back" if answer is False else
                                              "no terminal to ask and --yes not given")
            for host in canary:
                self.recorder.event(EventKind.OPERATOR_ANSWER, ctx.run_id, host.name,
                                    ctx.phase.number, None, f"{summary}: {said}",
                                    answer="continue" if answer else "roll back")
            if answer:
                return
            text = f"analysis: {summary}; {said}"
        failing = [h.name for h in canary if h.name not in self.out]
        if self.fleet and len(set(self.budget.failed) | set(failing)) > self.budget.allowed:
            for name in failing[1:]:  # failed together: the budget line counts them all
                self.budget.absorbs(name)
        for host in canary:
            if self.stop is not None:
                return
            self._host_failed(Reason(RollbackCause.TRIGGER, text, trigger="analysis",
                                     host=host.name))

    # --- failures ----------------------------------------------------------------------------
    def _absorb(self) -> None:
        """A safe point: drain the run's bus and act on what came (a dead worker stops the
        whole run; a fire fails its host; a pause is asked before the next step). A lost
        journal or a cancel has already cancelled the run's token: the step in flight
        stopped, and the next write raises."""
        fires: list[Firing] = []
        for msg in self.ctx.bus.drain():
            if isinstance(msg, WorkerDied) and self.death is None:
                self.death = Reason(RollbackCause.WORKER, msg.text)
            elif isinstance(msg, Fire) and msg.firing.action == "pause":
                self.pause = self.pause or msg.firing.reason
            elif isinstance(msg, Fire):
                fires.append(msg.firing)
        if self.death is not None and self.stop is None:
            self.stop = self.death
        for firing in fires:
            if firing.host in self.out or self.stop is not None:
                continue
            self._host_failed(Reason(RollbackCause.TRIGGER, firing.reason, trigger=firing.trigger,
                                     host=firing.host))

    def _host_failed(self, reason: Reason) -> None:
        assert reason.host is not None
        if self.ctx.dry_run:
            self.stop = reason
            return
        if self.fleet and self.budget.absorbs(reason.host):
            host = next(h for h in self.hosts if h.name == reason.host)
            self.ctx.say(f"host {host.name} failed, within the failure budget "
                         f"({len(self.budget.failed)}/{self.budget.allowed}): {reason.text}")
            self.out.add(host.name)
            self.ctx.parts.monitor.forget([host.name])
            self.rolled.append(self.roll_back([host], reason))
            return
        if self.fleet:
            self.budget.absorbs(reason.host)
            text = (f"failure budget exhausted: {len(self.budget.failed)} of "
                    f"{len(self.hosts)} hosts failed, {self.budget.allowed} allowed")
            self.recorder.event(EventKind.BUDGET_EXHAUSTED, self.ctx.run_id, None,
                                self.ctx.phase.number, None, f"{text}; last: {reason.text}",
                                failed=list(self.budget.failed), allowed=self.budget.allowed)
        self.stop = reason
        self.ctx.cancel.cancel(reason.text)

    def _cancel_reason(self, step: Step | None) -> Reason:
        cancel = self.ctx.cancel
        if cancel.cancelled:
            cause = RollbackCause.OPERATOR if cancel.by_operator else RollbackCause.STEP_FAILURE
            return Reason(cause, cancel.reason)
        return Reason(RollbackCause.STEP_FAILURE, f"step {step.id if step else '?'} cancelled")

    def _answer_pause(self) -> bool:
        """A trigger with `action: pause` fired: ask the operator before the next step."""
        reason, self.pause = self.pause, None
        if reason is None:
            return False
        answer = self.ctx.parts.prompter.confirm(f"{reason} (action: pause): continue the phase?")
        for host in self.started:
            self.recorder.event(EventKind.OPERATOR_ANSWER, self.ctx.run_id, host.name,
                                self.ctx.phase.number, None,
                                f"{reason}: {'continue' if answer else 'roll back'}",
                                answer="continue" if answer else "roll back")
        if answer:
            return False
        self.stop = Reason(RollbackCause.OPERATOR, f"{reason} (paused; operator chose rollback)")
        return True

    # --- the end -----------------------------------------------------------------------------
    def _conclude(self, current: list[Host]) -> RunReport:
        ctx = self.ctx
        names = [h.name for h in self.hosts]
        if self.stop is None:
            if ctx.dry_run:
                return RunReport(ctx.run_id, ctx.phase.number, names, RunOutcome.DRY_RUN_PASSED)
            return self._merge(RunReport(ctx.run_id, ctx.phase.number, names,
                                         RunOutcome.COMPLETED))
        if ctx.dry_run:
            ctx.say(f"dry run: would roll back phase {ctx.phase.number}: {self.stop.text}")
            return RunReport(ctx.run_id, ctx.phase.number, names, RunOutcome.DRY_RUN_FAILED,
                             self.stop.text)
        in_run = [h for h in self.started if h.name not in self.out
                  and self.recorder.phase_state(h.name, ctx.phase.number)
                  in (PhaseState.RUNNING, PhaseState.BAKING, PhaseState.COMPLETED)]
        if self.plan.on_fire == "run" or not self.fleet \
                or self.stop.cause is RollbackCause.OPERATOR:
            targets = in_run
        else:
            wave = {h.name for h in current}
            targets = [h for h in in_run if h.name in wave or h.name == self.stop.host]
        if not targets:
            return self._merge(RunReport(ctx.run_id, ctx.phase.number, names,
                                         RunOutcome.ROLLED_BACK, self.stop.text))
        report = self.roll_back(targets, self.stop)
        if ctx.cancel.by_operator and report.outcome is RunOutcome.ROLLED_BACK:
            report.outcome = RunOutcome.INTERRUPTED_ROLLED_BACK
        return self._merge(report)

    def _merge(self, report: RunReport) -> RunReport:
        """Fold the hosts rolled back within budget into the run's report."""
        report.hosts = [h.name for h in self.hosts]
        for r in self.rolled:
            report.needs_human += r.needs_human
            if r.outcome is RunOutcome.ROLLBACK_FAILED:
                report.outcome = RunOutcome.ROLLBACK_FAILED
            elif report.outcome is RunOutcome.COMPLETED:
                report.outcome = RunOutcome.ROLLED_BACK
                report.reason = report.reason or r.reason
        return report

    # --- small helpers -----------------------------------------------------------------------
    def _finished(self, host: Host) -> bool:
        """On resume: a host whose phase completed (or was rolled back) before the crash."""
        if not self.resume:
            return False
        return self.recorder.phase_state(host.name, self.ctx.phase.number) in (
            PhaseState.COMPLETED, PhaseState.ROLLED_BACK, PhaseState.ROLLBACK_FAILED)

    def _live(self, wave: list[Host]) -> list[Host]:
        return [h for h in wave if h.name not in self.out]

    def _describe(self, step: Step, host: Host) -> str:
        """What runs on this host, rendered, so the journal says exactly what ran."""
        if step.action is not StepAction.COMMAND:
            return step.describe()
        ctx = context_for(host.name, self.ctx.hostvars, self.ctx.phase.number, self.ctx.run_id)
        return f"command: {render(step.target, ctx, shell=True)}"

    def _allowed(self, step: Step) -> set[str] | None:
        """The hosts a step's `hosts:` names (None: every host of the run), resolved once
        per step, not once per host."""
        if step.hosts is None:
            return None
        return {h.name for h in self.ctx.inventory.resolve(list(step.hosts))}

    @staticmethod
    def _names(hosts: list[Host]) -> str:
        if len(hosts) > 8:
            return f"{', '.join(h.name for h in hosts[:6])} and {len(hosts) - 6} more"
        return ", ".join(h.name for h in hosts)
