"""The run lifecycle: the one service that starts a run, rolls hosts back, and ends it.

Every command that changes hosts comes through `RunLifecycle`:

- `run_phase`: lock the hosts, refuse what may not start, record the run and the
  checksums of its definitions, drive `PhaseRun`, end the run.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator._exceptions import LockHeldError, RefusedError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import CancelToken
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.model import Phase, Project
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import ACTIVE, ROLLBACKABLE, PhaseState
from orchestrator.engine.checksums import changed_files, file_checksums
from orchestrator.engine.context import EngineParts, StepContext, new_run_id
from orchestrator.engine.phase_run import FleetPlan, PhaseRun
from orchestrator.engine.refusals import (
    refuse_failing_preconditions,
    refuse_if_not_ready,
    refuse_if_not_resumable,
)
from orchestrator.engine.rollback import Origin, Reason, Rollback
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.recorder import DryRunRecorder, JournalRecorder, Recorder


class RunLifecycle:
    def __init__(self, project: Project, inventory: Inventory, parts: EngineParts) -> None:
        self.project = project
        self.inventory = inventory
        self.parts = parts
        self.journal = parts.journal
        self._announce_reaped()

    # --- the one place a rollback begins -----------------------------------------------------
    def roll_back(self, ctx: StepContext, recorder: Recorder, hosts: list[Host],
                  reason: Reason) -> RunReport:
        """Undo `ctx.phase` on `hosts` for `reason`, within the run `ctx.run_id`.

        Never without a record: when the journal has been unwritable for longer than
        `state.timeout`, no undo starts either; the run stops (exit 3) and reads
        `interrupted` once the database is back, for `resume` or `rollback`."""
        if self.journal.unavailable:
            raise JournalUnavailableError(self.journal.unavailable)
        undo_ctx = ctx.undoing(CancelToken())
        return Rollback(undo_ctx, recorder).execute(hosts, reason)

    # --- a phase -----------------------------------------------------------------------------
    def run_phase(self, phase: Phase, hosts: list[Host], command: str, cancel: CancelToken,
                  dry_run: bool = False, plan: FleetPlan | None = None) -> RunReport:
        plan = plan or FleetPlan(phase.waves, phase.max_failed, phase.on_fire)
        run_id = new_run_id()
        with self._holding(hosts, run_id, command, cancel):  # first: a holder is named
            refuse_if_not_ready(self.project, phase, hosts, self.journal, dry_run)
            refuse_failing_preconditions(self.parts.checker, phase, hosts)
            tmp = Path(tempfile.mkdtemp(prefix="migrate-dry-run-")) if dry_run else None
            try:
                if not dry_run:
                    self.journal.create_run(run_id, phase.number, [h.name for h in hosts],
                                            command, "phase", False,
                                            file_checksums(self.project, phase))
                recorder: Recorder = (DryRunRecorder(self.journal, self.parts.hooks) if dry_run
                                      else JournalRecorder(self.journal, self.parts.hooks))
                ctx = self._context(phase, run_id, cancel, dry_run, tmp)
                report = self._drive(ctx, recorder, hosts, plan, command, resume=False)
                recorder.finish(run_id, report.outcome.value)
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
    def rollback(self, phase: Phase, hosts: list[Host], command: str) -> RunReport:
        """Roll back `phase` on `hosts`: each host from the run that last moved it."""
        for host in hosts:
            rec = self.journal.phase_record(host.name, phase.number)
            if rec.state not in ROLLBACKABLE or rec.state in ACTIVE:
                raise RefusedError(f"host {host.name}: phase {phase.number} is "
                                   f"{rec.state.value}; there is nothing to roll back")
        run_id = new_run_id()
        with self._holding(hosts, run_id, command):
            self.journal.create_run(run_id, phase.number, [h.name for h in hosts], command,
                                    "rollback", False, {})
            recorder = JournalRecorder(self.journal, self.parts.hooks)
            by_run: dict[str, list[Host]] = {}
            for host in hosts:
                origin = self.journal.phase_record(host.name, phase.number).run_id or run_id
                by_run.setdefault(origin, []).append(host)
            reports = []
            for origin, group in by_run.items():
                recorder.event(EventKind.ROLLBACK_REQUESTED, run_id, None, phase.number, None,
                               f"undoing run {origin} on {', '.join(h.name for h in group)}",
                               origin_run=origin, hosts=[h.name for h in group])
                ctx = self._context(phase, origin, CancelToken())
                reports.append(self.roll_back(ctx, recorder, group, Reason(
                    Origin.OPERATOR, f"requested by operator (migrate rollback, run {run_id})")))
            report = _worst(reports, run_id, hosts)
            self.journal.end_run(run_id, report.outcome.value)
            return report

    # --- migrate resume ----------------------------------------------------------------------
    def resume(self, hosts: list[Host], accept_changes: bool, cancel: CancelToken,
               command: str) -> RunReport:
        """Continue the interrupted run on the hosts from the step that was in flight.

        Refused (exit 4) when the phase file or a playbook changed since the run began,
        unless `accept_changes`. A run that died while rolling back, or after a step had
        failed, resumes its rollback instead; either way the run is ended.
        """
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
        phase = self.project.phases[number]
        then = (self.journal.run_info(run_id) or {}).get("checksums", {})
        changed = changed_files(then, file_checksums(self.project, phase))
        if changed and not accept_changes:
            raise RefusedError(f"phase {number} changed since run {run_id} began: "
                               f"{', '.join(changed)}; review, then resume with "
                               "--accept-changes (or roll back)")
        recorder = JournalRecorder(self.journal, self.parts.hooks)
        with self._holding(hosts, run_id, command, cancel):
            refuse_if_not_resumable(phase, hosts, self.journal, run_id)
            if changed:
                recorder.event(EventKind.CHANGES_ACCEPTED, run_id, None, number, None,
                               ", ".join(changed), files=changed)
            ctx = self._context(phase, run_id, cancel)
            events = self.journal.events(run_id=run_id)
            rolling = next((e for e in events if e.kind == "rollback_started"), None)
            failed = next((e for e in events if e.kind == "step_failed"), None)
            if rolling is not None or failed is not None:
                text = rolling.detail if rolling is not None and rolling.detail else \
                    f"step {failed.step} failed on {failed.host}: {failed.detail}"  # type: ignore[union-attr]
                report = self.roll_back(ctx, recorder, hosts, Reason(
                    Origin.RESUME, f"{text} (resumed after interruption)"))
            else:
                info = self.journal.run_info(run_id) or {}
                all_hosts = [self.inventory.hosts[n] for n in info.get("hosts", [])
                             if n in self.inventory.hosts] or hosts
                plan = FleetPlan(phase.waves, phase.max_failed, phase.on_fire)
                report = self._drive(ctx, recorder, all_hosts, plan, command, resume=True)
            recorder.finish(run_id, report.outcome.value)
            return report

    # --- migrate watch -----------------------------------------------------------------------
    def watch_rollback(self, host: Host, reason: Reason, watch_run: str,
                       phase_number: int | None = None) -> RunReport | None:
        """`watch` saw a trigger fire on `host`: roll back its latest completed phase.

        The phase is chosen again under the host's lock, so of two watchers (HA) that
        both saw the fire only the first acts; the second finds nothing completed and
        returns None, as it does when another run holds the host."""
        try:
            holding = self._holding([host], watch_run, "migrate watch (rollback)")
            holding.__enter__()
        except LockHeldError as exc:
            self.parts.say(f"{reason.text} on {host.name}: not acting, {exc}")
            return None
        try:
            completed = [n for n in self.project.phases
                         if self.journal.phase_record(host.name, n).state
                         is PhaseState.COMPLETED]
            if not completed or (phase_number is not None and phase_number not in completed):
                self.parts.say(f"{reason.text} on {host.name}: already rolled back elsewhere")
                return None
            phase = self.project.phases[max(completed)]
            origin = self.journal.phase_record(host.name, phase.number).run_id or watch_run
            self.parts.say(f"{reason.text} on {host.name}: rolling back phase {phase.number}")
            recorder = JournalRecorder(self.journal, self.parts.hooks)
            ctx = self._context(phase, origin, CancelToken())
            return self.roll_back(ctx, recorder, [host], reason)
        finally:
            holding.__exit__(None, None, None)

    # --- plumbing ----------------------------------------------------------------------------
    def _context(self, phase: Phase, run_id: str, cancel: CancelToken, dry_run: bool = False,
                 tmp: Path | None = None) -> StepContext:
        return StepContext(self.project, self.inventory, phase, run_id, self.parts, cancel,
                           dry_run, tmp, self.parts.clock.monotonic())

    @contextmanager
    def _holding(self, hosts: list[Host], run_id: str, command: str,
                 cancel: CancelToken | None = None) -> Iterator[None]:
        """Hold the hosts' lock for the block. While it is held, a journal that stays
        unwritable past `state.timeout` (or a lost lock) cancels the step in flight."""
        self.journal.acquire([h.name for h in hosts], run_id, command)
        self._announce_reaped()
        if cancel is not None:
            self.journal.on_unavailable = lambda reason: cancel.cancel(
                f"journal unreachable: {reason}")
        try:
            yield
        finally:
            self.journal.on_unavailable = None
            self.journal.release(run_id)

    def _announce_reaped(self) -> None:
        """Runs the journal found dead were journaled `run_interrupted`; now tell the hooks."""
        while self.journal.interrupted:
            run_id, host, phase, detail = self.journal.interrupted.pop(0)
            self.parts.hooks.emit(RunEvent(EventKind.RUN_INTERRUPTED, run_id, host, phase, None,
                                           detail))


def _worst(reports: list[RunReport], run_id: str, hosts: list[Host]) -> RunReport:
    worst = max(reports, key=lambda r: r.outcome is RunOutcome.ROLLBACK_FAILED)
    return RunReport(run_id, worst.phase, [h.name for h in hosts], worst.outcome, worst.reason,
                     [n for r in reports for n in r.needs_human])
