"""Why a phase may not start on a host: checked under the lock, before anything runs.

Each refusal is a `RefusedError` (exit 4) naming the host and what to do. The
checks: an interrupted run on the host, `requires:` (with `observed:` durations),
the phase's own state, and preconditions that must pass now.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator._exceptions import RefusedError
from orchestrator.config.inventory import Host
from orchestrator.core.durations import format_duration
from orchestrator.core.model import Phase, Project
from orchestrator.core.states import STARTABLE, PhaseState
from orchestrator.engine.context import Checker
from orchestrator.state.journal import Journal


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def observation_left(journal: Journal, host: str, phase: int, needed: float,
                     now: datetime | None = None) -> tuple[float, str | None]:
    """Seconds still to wait before `phase` counts as observed for `needed` seconds on
    `host` (0 when it does), and why when it never can without a new run."""
    now = now or datetime.now(UTC)
    rec = journal.phase_record(host, phase)
    if rec.state is not PhaseState.COMPLETED or rec.updated_at is None:
        return needed, f"phase {phase} is {rec.state.value}"
    since = _parse_stamp(rec.updated_at)
    fired = [e for e in journal.events(host=host)
             if e.kind == "trigger_fired" and e.phase == phase and e.host == host
             and _parse_stamp(e.at) >= since]
    if fired:
        return needed, (f"a trigger of phase {phase} fired at {fired[-1].at} "
                        f"({fired[-1].detail})")
    elapsed = (now - since).total_seconds()
    return max(0.0, needed - elapsed), None


def refuse_if_not_ready(project: Project, phase: Phase, hosts: list[Host], journal: Journal,
                        dry_run: bool) -> None:
    problems: list[str] = []
    for host in hosts:
        for number in sorted(project.phases):
            rec = journal.phase_record(host.name, number)
            if rec.state is PhaseState.INTERRUPTED:
                problems.append(
                    f"host {host.name}: phase {number} was interrupted (run {rec.run_id}); "
                    f"run `migrate resume --host {host.name}` or "
                    f"`migrate rollback --host {host.name} --phase {number}` first")
        if dry_run:
            continue
        for required in phase.requires:
            state = journal.phase_record(host.name, required).state
            if state is not PhaseState.COMPLETED:
                problems.append(f"host {host.name}: phase {phase.number} requires "
                                f"phase {required} completed, and it is {state.value}")
                continue
            needed = phase.observed.get(required)
            if needed:
                left, why = observation_left(journal, host.name, required, needed)
                if why is not None:
                    problems.append(f"host {host.name}: phase {phase.number} requires phase "
                                    f"{required} observed for {format_duration(needed)} with "
                                    f"nothing firing: {why}")
                elif left > 0:
                    problems.append(f"host {host.name}: phase {phase.number} requires phase "
                                    f"{required} observed for {format_duration(needed)}; "
                                    f"{format_duration(left)} left")
        state = journal.phase_record(host.name, phase.number).state
        if state not in STARTABLE:
            hint = {PhaseState.COMPLETED: "already completed; roll it back to run it again",
                    PhaseState.ROLLBACK_FAILED: "its rollback failed: a human must look, "
                    f"then `migrate rollback --host {host.name} --phase {phase.number}`"
                    }.get(state, f"it is {state.value}")
            problems.append(f"host {host.name}: phase {phase.number} is {state.value}: {hint}")
    if problems:
        raise RefusedError("; ".join(dict.fromkeys(problems)))


def refuse_failing_preconditions(checker: Checker | None, phase: Phase,
                                 hosts: list[Host]) -> None:
    if not phase.preconditions or checker is None:
        return
    failing = []
    for host in hosts:
        for metric in phase.preconditions:
            ok, why = checker.passes_now(metric, host)
            if not ok:
                failing.append(f"{metric} on {host.name} ({why})")
    if failing:
        raise RefusedError(f"phase {phase.number}: preconditions failing, nothing was "
                           f"run: {'; '.join(failing)}")


def refuse_if_not_resumable(phase: Phase, hosts: list[Host], journal: Journal,
                            run_id: str) -> None:
    for host in hosts:
        rec = journal.phase_record(host.name, phase.number)
        if rec.state is not PhaseState.INTERRUPTED or rec.run_id != run_id:
            raise RefusedError(f"host {host.name}: phase {phase.number} is "
                               f"{rec.state.value} (run {rec.run_id}); nothing to resume")
