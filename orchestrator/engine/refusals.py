"""Why a phase may not start on a host: checked under the lock, before anything runs.

Each refusal is a `RefusedError` (exit 4) naming the host and what to do. The
checks: an interrupted run on the host, `requires:` (with `observed:` durations),
the phase's own state, and preconditions that must pass now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator._exceptions import RefusedError
from orchestrator.config.inventory import Host
from orchestrator.core.durations import format_duration
from orchestrator.core.model import Phase, Project
from orchestrator.core.states import STARTABLE, PhaseState
from orchestrator.core.timestamps import parse_time
from orchestrator.state.journal import Journal

if TYPE_CHECKING:  # a type only: `plan` reads requirements without the engine's parts
    from orchestrator.engine.context import Checker


def observation_left(journal: Journal, host: str, phase: int, needed: float,
                     now: datetime | None = None, migration: str | None = None
                     ) -> tuple[float, str | None]:
    """Seconds still to wait before `phase` (of this migration, or of `migration`) counts
    as observed for `needed` seconds on `host` (0 when it does), and why when it never
    can without a new run."""
    now = now or datetime.now(UTC)
    rec = journal.phase_record(host, phase, migration)
    if rec.state is not PhaseState.COMPLETED or rec.updated_at is None:
        return needed, f"phase {phase} is {rec.state.value}"
    since = parse_time(rec.updated_at)
    owner = journal.migration if migration is None else migration
    fired = [e for e in journal.events(host=host, every_migration=True)
             if e.kind == "trigger_fired" and e.phase == phase and e.host == host
             and e.migration == owner and parse_time(e.at) >= since]
    if fired:
        return needed, (f"a trigger of phase {phase} fired at {fired[-1].at} "
                        f"({fired[-1].detail})")
    elapsed = (now - since).total_seconds()
    return max(0.0, needed - elapsed), None


def requirement_states(phase: Phase, hosts: list[Host], journal: Journal,
                       now: datetime | None = None) -> list[dict[str, object]]:
    """Every requirement of `phase` on each host with its state now: what `plan` prints and
    what the refusal says. Each: {for_host, migration, phase, host, state, observed_s,
    left_s, met, text}; `text` completes "phase P requires ..."."""
    out: list[dict[str, object]] = []
    known: list[str] | None = None
    own = journal.migration
    for host in hosts:
        wanted = [(own, n, host.name, phase.observed.get(n)) for n in phase.requires]
        wanted += [(r.migration, r.phase, r.host or host.name, r.observed) for r in phase.cross]
        for migration, number, where, needed in wanted:
            entry: dict[str, object] = {"for_host": host.name, "migration": migration,
                                        "phase": number, "host": where, "observed_s": needed}
            label = (f"phase {number}" if migration == own
                     else f"migration {migration} phase {number} on {where}")
            if migration != own:
                known = journal.migrations() if known is None else known
                if migration not in known:
                    entry.update(state="unknown", met=False, left_s=None, text=(
                        f"{label}, and the journal at {journal.location} has no record of "
                        f"migration {migration}"))
                    out.append(entry)
                    continue
            rec = journal.phase_record(where, number, migration)
            entry["state"] = rec.state.value
            if rec.state is not PhaseState.COMPLETED:
                entry.update(met=False, left_s=None,
                             text=f"{label} completed, and it is {rec.state.value}")
            elif needed:
                left, why = observation_left(journal, where, number, needed, now, migration)
                entry.update(left_s=left, met=why is None and left <= 0)
                if why is not None:
                    entry["text"] = (f"{label} observed for {format_duration(needed)} with "
                                     f"nothing firing: {why}")
                elif left > 0:
                    entry["text"] = (f"{label} observed for {format_duration(needed)}; "
                                     f"observed {format_duration(needed - left)} of "
                                     f"{format_duration(needed)}, {format_duration(left)} left")
                else:
                    entry["text"] = f"{label} observed for {format_duration(needed)}: met"
            else:
                entry.update(met=True, left_s=0.0, text=f"{label} completed: met")
            out.append(entry)
    return out


def refuse_if_not_ready(project: Project, phase: Phase, hosts: list[Host], journal: Journal,
                        dry_run: bool, say: Callable[[str], None] | None = None) -> None:
    """Refuse (exit 4, one line per problem) an interrupted run on a host, an unmet
    requirement (this migration's phases or another migration's), or a phase that is
    not startable. In a rehearsal (`project.state_dir_override`), a requirement on another
    migration is printed with what it would check and counted as met."""
    problems: list[str] = []
    rehearsal = project.state_dir_override is not None
    if not dry_run:
        for req in requirement_states(phase, hosts, journal):
            if req["met"]:
                continue
            if rehearsal and req["migration"] != journal.migration:
                if say is not None:
                    say(f"rehearsal: would require {req['text']}; counted as met")
                continue
            problems.append(f"host {req['for_host']}: phase {phase.number} requires "
                            f"{req['text']}")
    # every phase state of every host in one query, not hosts x phases round trips
    records = journal.phase_records([h.name for h in hosts])
    for host in hosts:
        for number in sorted(project.phases):
            rec = records.get((host.name, number))
            if rec is not None and rec.state is PhaseState.INTERRUPTED:
                problems.append(
                    f"host {host.name}: phase {number} was interrupted (run {rec.run_id}); "
                    f"run `migrate resume --host {host.name}` or "
                    f"`migrate rollback --host {host.name} --phase {number}` first")
        now = records.get((host.name, phase.number))
        state = now.state if now is not None else PhaseState.PENDING
        if state not in STARTABLE:
            hint = {PhaseState.COMPLETED: "already completed; roll it back to run it again",
                    PhaseState.ROLLBACK_FAILED: "its rollback failed: a human must look, "
                    f"then `migrate rollback --host {host.name} --phase {phase.number}`"
                    }.get(state, f"it is {state.value}")
            problems.append(f"host {host.name}: phase {phase.number} is {state.value}: {hint}")
    if problems:
        raise RefusedError("\n".join(dict.fromkeys(problems)))


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
