"""The run lifecycle: the one service that starts a run, rolls hosts back, and ends it.

Every command that changes hosts comes through `RunLifecycle`:

- `run`: **the one place a run begins and ends**: a context manager that locks the
  hosts, records the run and, on every way out (return, exception, signal), records
  how it ended, leaves what it had in flight `interrupted` and frees its locks, in one
  transaction. A lock and the phase state it guards always carry the same run id.
- `run_phase`: refuse what may not start, record the run and the checksums of its
  definitions, drive `PhaseRun`.
- `roll_back`: **the one place a rollback begins.** A failed step, a fired trigger,
  an exhausted failure budget, Ctrl-C, `migrate rollback`, `migrate resume` and
  `migrate watch` all end up here with a `Reason` that says where they came from.
- `rollback`, `resume`, `watch_rollback`: the operator's and the watcher's entries,
  each with its lock and its own run record, each ended and notified the same way.

Notifications, the live view and /metrics are hooks on `parts.hooks`; the lifecycle
never calls them by hand.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator._exceptions import LockHeldError, RefusedError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.bus import RunBus
from orchestrator.core.clock import CancelToken
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.model import Phase, Project
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import ACTIVE, ROLLBACKABLE, PhaseState
from orchestrator.engine.checksums import changed_files, file_checksums
from orchestrator.engine.context import EngineParts, StepContext, death_text, new_run_id
from orchestrator.engine.phase_run import FleetPlan, PhaseRun
from orchestrator.engine.refusals import (
    refuse_failing_preconditions,
    refuse_if_not_ready,
    refuse_if_not_resumable,
)
from orchestrator.engine.rollback import Reason, Rollback, RollbackCause
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.recorder import DryRunRecorder, JournalRecorder, Recorder


class RunLifecycle:
    def __init__(self, project: Project, inventory: Inventory, parts: EngineParts) -> None:
        self.project = project
        self.inventory = inventory
        self.parts = parts
        self.journal = parts.journal

    # --- the one place a run begins and ends -------------------------------------------------
    @contextmanager
    def run(self, hosts: list[Host], run_id: str, command: str, kind: str,
            phase: int | None, cancel: CancelToken | None = None, *, record: bool = True,
            checksums: dict[str, str] | None = None,
            origin_runs: dict[str, list[str]] | None = None,
            before: Callable[[], None] | None = None,
            tell_refusal: bool = True) -> Iterator[RunHandle]:
        """A run's whole life: lock its hosts, record it, and end it on every way out.

        The lock and every phase state the run moves carry `run_id`. On the way out,
        whatever it is (a return, an exception, a signal's KeyboardInterrupt), one
        transaction records the outcome (`handle.outcome`, else `interrupted`), turns
        each phase the run still has in flight into `interrupted`, and frees its locks.
        `before` runs under the lock, before the run is recorded (refusals: nothing is
        recorded for a run that may not start). `record=False`: a dry run or a resume,
        whose run record exists already or is not written. A refusal (exit 4) raised
        before the run began (the lock held, `before`) is told to the subscribers
        (`phase_refused`), unless `tell_refusal` is False (a watch's rollback that another
        watcher carries out is not a refusal anyone asked for).
        """
        bus = RunBus(run_id, cancel, self.parts.hooks, log=self.parts.say,
                     death_text=death_text)
        handle = RunHandle(run_id, bus)
        names = [h.name for h in hosts]
        began = False
        try:
            with self.parts.supervisor.running(bus):  # its heartbeat and workers report to it
                self.journal.acquire(names, run_id, command)
                with self._ending(handle, phase, names):
                    if before is not None:
                        before()
                    if record:
                        self.journal.create_run(run_id, phase, names, command, kind, False,
                                                checksums or {}, origin_runs)
                    began = True
                    yield handle
        except RefusedError as exc:
            if not began and tell_refusal:
                self._announce_refusal(kind, phase, names, exc)
            raise

    @contextmanager
    def refusals(self, kind: str, phase: int | None, hosts: list[Host]) -> Iterator[None]:
        """The checks a command makes before its run begins (`migrate resume` finding the
        interrupted run, `migrate rollback` finding something to undo): a refusal they
        raise (exit 4) is told to the subscribers as `phase_refused`, as `run`'s own are."""
        try:
            yield
        except RefusedError as exc:
            self._announce_refusal(kind, phase, [h.name for h in hosts], exc)
            raise

    @contextmanager
    def _ending(self, handle: RunHandle, phase: int | None, hosts: list[str]
                ) -> Iterator[None]:
        """On every way out of a run: record its outcome, interrupt what it had in flight
        and free its locks, in one transaction (the journal tells the app's subscribers
        what it interrupted, as it does for the runs it reaps). A run that cannot record
        its end because the journal is unreachable says so on its bus
        (`journal_unavailable`): the journal cannot hold that event, and a person must
        hear that the run stopped unrecorded."""
        run_id = handle.run_id
        try:
            yield
        finally:
            outcome = handle.outcome.value if handle.outcome is not None else "interrupted"
            try:  # unavailable, it writes nothing: the lock rows stay, and the run reads
                # `interrupted` once the journal is back
                self.journal.finish_run(run_id, outcome,
                                        f"run {run_id} stopped while the phase was {{state}}")
            except JournalUnavailableError:
                pass
            lost = self.journal.unavailable
            if lost is not None:
                handle.bus.publish(journal_unavailable(run_id, phase, hosts, lost,
                                                       self.journal.location))

    # --- the one place a rollback begins -----------------------------------------------------
    def roll_back(self, ctx: StepContext, recorder: Recorder, hosts: list[Host],
                  reason: Reason) -> RunReport:
        """Undo `ctx.phase` on `hosts` for `reason`, within the run `ctx.run_id`.

        The undo obeys the run's undo token (`ctx.cancel.undo()`), which only the operator
        cancels: what stopped the forward steps never cuts the undo short. Never without
        a record: when the journal has been unwritable for longer than `state.timeout`,
        no undo starts either; the run stops (exit 3) and reads `interrupted` once the
        database is back, for `resume` or `rollback`."""
        if self.journal.unavailable:
            raise JournalUnavailableError(self.journal.unavailable)
        started = self.parts.clock.monotonic()  # the undo deadline counts from here
        undo_ctx = ctx.undoing(ctx.cancel.undo())
        named = {h.name: h for h in hosts}
        targets = self.journal.rollback_targets(list(named), ctx.run_id)
        reports = [Rollback(undo_ctx.undoing(undo_ctx.cancel, origin_run=origin), recorder,
                            started).execute([named[n] for n in group], reason)
                   for origin, group in targets.items()]
        return _worst(reports, ctx.run_id, hosts) if len(reports) > 1 else reports[0]

    # --- a phase -----------------------------------------------------------------------------
    def run_phase(self, phase: Phase, hosts: list[Host], command: str, cancel: CancelToken,
                  dry_run: bool = False, plan: FleetPlan | None = None) -> RunReport:
        plan = plan or FleetPlan(phase.waves, phase.max_failed, phase.on_fire)
        run_id = new_run_id()

        def refuse() -> None:
            refuse_if_not_ready(self.project, phase, hosts, self.journal, dry_run,
                                self.parts.say)
            refuse_failing_preconditions(self.parts.checker, phase, hosts)

        tmp = Path(tempfile.mkdtemp(prefix="migrate-dry-run-")) if dry_run else None
        try:
            with self.run(hosts, run_id, command, "phase", phase.number, cancel,
                          record=not dry_run, before=refuse,
                          checksums=None if dry_run else file_checksums(self.project, phase)
                          ) as handle:
                recorder: Recorder = (DryRunRecorder(self.journal, handle.bus) if dry_run
                                      else JournalRecorder(self.journal, handle.bus))
                ctx = self._context(phase, handle, dry_run, tmp)
                report = self._drive(ctx, recorder, hosts, plan, command, resume=False)
                if dry_run:
                    recorder.finish(run_id, report.outcome.value)
                handle.outcome = report.outcome
                return report
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _drive(self, ctx: StepContext, recorder: Recorder, hosts: list[Host], plan: FleetPlan,
               command: str, resume: bool) -> RunReport:
        def roll_back(targets: list[Host], reason: Reason) -> RunReport:
            return self.roll_back(ctx, recorder, targets, reason)

        return PhaseRun(ctx, hosts, recorder, roll_back, plan, command, resume).drive()

    # --- migrate rollback --------------------------------------------------------------------
    def rollback(self, phase: Phase, hosts: list[Host], command: str,
                 cancel: CancelToken | None = None) -> RunReport:
        """Roll back `phase` on `hosts` in a rollback run of its own, which owns the phase
        and its lock under its own id and undoes the steps of the run that made them."""
        with self.refusals("rollback", phase.number, hosts):
            for host in hosts:
                rec = self.journal.phase_record(host.name, phase.number)
                if rec.state not in ROLLBACKABLE or rec.state in ACTIVE:
                    raise RefusedError(f"host {host.name}: phase {phase.number} is "
                                       f"{rec.state.value}; there is nothing to roll back")
        run_id = new_run_id()
        cancel = cancel or CancelToken()
        targets = self.journal.rollback_targets([h.name for h in hosts], run_id, phase.number)
        with self.run(hosts, run_id, command, "rollback", phase.number, cancel,
                      origin_runs=targets) as handle:
            recorder = JournalRecorder(self.journal, handle.bus)
            for origin, group in targets.items():
                recorder.event(EventKind.ROLLBACK_REQUESTED, run_id, None, phase.number, None,
                               f"undoing run {origin} on {', '.join(group)}",
                               origin_run=origin, hosts=group)
            ctx = self._context(phase, handle)
            report = self.roll_back(ctx, recorder, hosts, Reason(
                RollbackCause.OPERATOR, f"requested by operator (migrate rollback, run {run_id})"))
            handle.outcome = report.outcome
            return report

    # --- migrate resume ----------------------------------------------------------------------
    def resume(self, hosts: list[Host], accept_changes: bool, cancel: CancelToken,
               command: str) -> RunReport:
        """Continue the interrupted run on the hosts from the step that was in flight.

        Refused (exit 4) when the phase file or a playbook changed since the run began,
        unless `accept_changes`. A run that died while rolling back, or after a step had
        failed, resumes its rollback instead; either way the run is ended.
        """
        with self.refusals("resume", None, hosts):
            run_id, number = self._interrupted_run(hosts)
        phase = self.project.phases[number]
        info = self.journal.run_info(run_id) or {}
        then = info.get("checksums", {})
        changed = changed_files(then, file_checksums(self.project, phase)) \
            if info.get("kind") == "phase" else []
        if changed and not accept_changes:
            with self.refusals("resume", number, hosts):
                raise RefusedError(f"phase {number} changed since run {run_id} began: "
                                   f"{', '.join(changed)}; review, then resume with "
                                   "--accept-changes (or roll back)")
        with self.run(hosts, run_id, command, "resume", number, cancel, record=False,
                      before=lambda: refuse_if_not_resumable(phase, hosts, self.journal,
                                                             run_id)) as handle:
            recorder = JournalRecorder(self.journal, handle.bus)
            self.journal.reopen_run(run_id)
            if changed:
                recorder.event(EventKind.CHANGES_ACCEPTED, run_id, None, number, None,
                               ", ".join(changed), files=changed)
            ctx = self._context(phase, handle)
            events = self.journal.events(run_id=run_id)
            rolling = next((e for e in events if e.kind == "rollback_started"), None)
            failed = next((e for e in events if e.kind == "step_failed"), None)
            if rolling is not None or failed is not None or info.get("kind") != "phase":
                text = rolling.detail if rolling is not None and rolling.detail else \
                    f"step {failed.step} failed on {failed.host}: {failed.detail}" \
                    if failed is not None else f"run {run_id} was interrupted"
                report = self.roll_back(ctx, recorder, hosts, Reason(
                    RollbackCause.RESUME, f"{text} (resumed after interruption)"))
            else:
                all_hosts = [self.inventory.hosts[n] for n in info.get("hosts", [])
                             if n in self.inventory.hosts] or hosts
                plan = FleetPlan(phase.waves, phase.max_failed, phase.on_fire)
                report = self._drive(ctx, recorder, all_hosts, plan, command, resume=True)
            handle.outcome = report.outcome
            return report

    def _interrupted_run(self, hosts: list[Host]) -> tuple[str, int]:
        """The one interrupted run (its id and phase) the hosts have to resume; refused
        (exit 4) when a host has none or the hosts were interrupted in different runs."""
        found = {}
        for host in hosts:
            recs = [self.journal.phase_record(host.name, n) for n in sorted(self.project.phases)]
            interrupted = [r for r in recs if r.state is PhaseState.INTERRUPTED]
            if not interrupted:
                raise RefusedError(f"host {host.name} has no interrupted run to resume")
            found[host.name] = interrupted[-1]
        runs = {(r.run_id, r.phase) for r in found.values()}
        if len(runs) != 1:
            raise RefusedError("the hosts were interrupted in different runs; resume them one "
                               "at a time: " + ", ".join(f"{h}: phase {r.phase} run {r.run_id}"
                                                         for h, r in found.items()))
        (run_id, number), = runs
        assert run_id is not None
        return run_id, number

    # --- migrate watch -----------------------------------------------------------------------
    def watch_rollback(self, host: Host, reason: Reason, watch_run: str,
                       phase_number: int | None = None,
                       cancel: CancelToken | None = None) -> RunReport | None:
        """`watch` saw a trigger fire on `host`: roll back its latest completed phase, in a
        rollback run of its own (its id owns the lock and the phase while it undoes).

        The phase is chosen again under the host's lock, so of two watchers (HA) that
        both saw the fire only the first acts; the second finds nothing completed and
        returns None, as it does when another run holds the host."""
        run_id = new_run_id()
        cancel = cancel or CancelToken()
        chosen: list[Phase] = []

        def choose() -> None:
            completed = [n for n in self.project.phases
                         if self.journal.phase_record(host.name, n).state
                         is PhaseState.COMPLETED]
            if completed and (phase_number is None or phase_number in completed):
                chosen.append(self.project.phases[max(completed)])

        try:
            with self.run([host], run_id, "migrate watch (rollback)", "rollback", phase_number,
                          cancel, record=False, before=choose, tell_refusal=False) as handle:
                if not chosen:
                    self.parts.say(f"{reason.text} on {host.name}: already rolled back "
                                   "elsewhere")
                    handle.outcome = RunOutcome.COMPLETED
                    return None
                phase = chosen[0]
                targets = self.journal.rollback_targets([host.name], run_id, phase.number)
                (origin, _), = targets.items()
                self.journal.create_run(run_id, phase.number, [host.name],
                                        "migrate watch (rollback)", "rollback", False, {},
                                        targets)
                recorder = JournalRecorder(self.journal, handle.bus)
                recorder.event(EventKind.ROLLBACK_REQUESTED, run_id, None, phase.number, None,
                               f"migrate watch (run {watch_run}) undoing run {origin} on "
                               f"{host.name}", origin_run=origin, hosts=[host.name])
                self.parts.say(f"{reason.text} on {host.name}: rolling back phase "
                               f"{phase.number}")
                ctx = self._context(phase, handle)
                report = self.roll_back(ctx, recorder, [host], reason)
                handle.outcome = report.outcome
                return report
        except LockHeldError as exc:
            self.parts.say(f"{reason.text} on {host.name}: not acting, {exc}")
            return None

    # --- plumbing ----------------------------------------------------------------------------
    def _context(self, phase: Phase, handle: RunHandle, dry_run: bool = False,
                 tmp: Path | None = None) -> StepContext:
        return StepContext(self.project, self.inventory, phase, handle.run_id, self.parts,
                           handle.bus.cancel, handle.bus, dry_run, tmp,
                           self.parts.clock.monotonic())

    def _announce_refusal(self, kind: str, phase: int | None, hosts: list[str],
                          exc: RefusedError) -> None:
        """A run that may not start (a phase, a resume, a rollback) is told to the hooks
        (a pager must hear of the migration that never started); nothing is journaled,
        as no run was recorded. `kind` says which command was refused."""
        self.parts.hooks.emit(RunEvent(
            EventKind.PHASE_REFUSED, None, hosts[0] if len(hosts) == 1 else None,
            phase, None, str(exc), {"reason": str(exc), "hosts": hosts, "command": kind}))


def journal_unavailable(run_id: str, phase: int | None, hosts: list[str], reason: str,
                        location: str) -> RunEvent:
    """The event of a run that stopped because its journal could not be written (never
    journaled: the journal is what is missing)."""
    return RunEvent(EventKind.JOURNAL_UNAVAILABLE, run_id, hosts[0] if len(hosts) == 1 else None,
                    phase, None, f"journal unreachable: {reason}",
                    {"reason": reason, "hosts": hosts, "journal": location})


@dataclass
class RunHandle:
    """A run being run: its bus, and what the body tells its end (how it came out)."""

    run_id: str
    bus: RunBus
    outcome: RunOutcome | None = None


def _worst(reports: list[RunReport], run_id: str, hosts: list[Host]) -> RunReport:
    order = {RunOutcome.INTERRUPTED: 2, RunOutcome.ROLLBACK_FAILED: 1}
    worst = max(reports, key=lambda r: order.get(r.outcome, 0))
    return RunReport(run_id, worst.phase, [h.name for h in hosts], worst.outcome, worst.reason,
                     [n for r in reports for n in r.needs_human])
