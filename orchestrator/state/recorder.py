"""Where the engine writes what happens: the journal, or (for a dry run) memory only.

A dry run must leave no trace but one rehearsal entry, so the engine talks to a
`Recorder`; `JournalRecorder` writes through to SQLite, `DryRunRecorder` keeps
states in memory with the same transition checks and writes a single
`rehearsal` event when the run ends.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Protocol

from orchestrator.core.states import PHASE_EDGES, STEP_EDGES, PhaseState, StepState, advance
from orchestrator.state.journal import Journal, utc_stamp

if TYPE_CHECKING:
    from orchestrator.monitoring.notify import Notifications


class Recorder(Protocol):
    journal: Journal

    def event(self, run_id: str, host: str | None, phase: int, step: str | None, kind: str,
              detail: str | None = None) -> None: ...

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None) -> None: ...

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None) -> None: ...

    def step_state(self, run_id: str, host: str, step: str) -> StepState: ...

    def phase_state(self, host: str, phase: int) -> PhaseState: ...

    def finish(self, run_id: str, outcome: str) -> None: ...


class JournalRecorder:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def event(self, run_id: str, host: str | None, phase: int, step: str | None, kind: str,
              detail: str | None = None) -> None:
        self.journal.event(run_id, host, phase, step, kind, detail)

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None) -> None:
        self.journal.move_phase(run_id, host, phase, new, kind, detail, reason)

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None) -> None:
        self.journal.move_step(run_id, host, phase, step, idx, new, kind, detail)

    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        return self.journal.step_state(run_id, host, step)

    def phase_state(self, host: str, phase: int) -> PhaseState:
        return self.journal.phase_record(host, phase).state

    def finish(self, run_id: str, outcome: str) -> None:
        self.journal.end_run(run_id, outcome)


class DryRunRecorder:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._phases: dict[tuple[str, int], PhaseState] = {}
        self._steps: dict[tuple[str, str], StepState] = {}
        self.timeline: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._phase: int | None = None

    def event(self, run_id: str, host: str | None, phase: int, step: str | None, kind: str,
              detail: str | None = None) -> None:
        with self._lock:
            self._phase = phase
            self.timeline.append({"at": utc_stamp(), "host": host, "step": step, "kind": kind,
                                  "detail": detail})

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None) -> None:
        old = self.phase_state(host, phase)
        if old is not new:
            advance(PHASE_EDGES, old, new)  # type: ignore[arg-type]
        self._phases[(host, phase)] = new
        self.event(run_id, host, phase, None, kind, detail)

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None) -> None:
        advance(STEP_EDGES, self.step_state(run_id, host, step), new)  # type: ignore[arg-type]
        self._steps[(host, step)] = new
        self.event(run_id, host, phase, step, kind, detail)

    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        return self._steps.get((host, step), StepState.PENDING)

    def phase_state(self, host: str, phase: int) -> PhaseState:
        if (host, phase) in self._phases:
            return self._phases[(host, phase)]
        # a dry run starts from a clean slate for the phase it rehearses
        return PhaseState.PENDING

    def finish(self, run_id: str, outcome: str) -> None:
        hosts = sorted({str(e["host"]) for e in self.timeline if e["host"]})
        self.journal.event(run_id, None, self._phase, None, "rehearsal",
                           json.dumps({"dry_run": True, "outcome": outcome, "hosts": hosts,
                                       "timeline": self.timeline}))


_NOTIFY_TEXT = {
    "trigger_fired": "trigger fired on {host} (phase {phase}): {detail}",
    "rollback_started": "rolling back phase {phase} on {host}: {detail}",
    "rollback_completed": "phase {phase} rolled back on {host}: {detail}",
    "rollback_failed": "ROLLBACK FAILED for phase {phase} on {host}: {detail}",
    "phase_completed": "phase {phase} completed on {host}",
    "metric_nodata": "no data on {host} (phase {phase}): {detail}",
    "run_interrupted": "run interrupted on {host} (phase {phase}): {detail}",
    "run_started": "phase {phase} started on {host}",
}


class NotifyingRecorder:
    """Journal first, then queue a webhook for the events operators subscribed to.

    Notifications come from journal events in this one place, so every path that
    journals a rollback (engine, watch, manual rollback) also notifies.
    """

    def __init__(self, inner: Recorder, notifications: Notifications) -> None:
        self.inner = inner
        self.journal = inner.journal
        self.notifications = notifications

    def _notify(self, run_id: str, host: str | None, phase: int, step: str | None, kind: str,
                detail: str | None) -> None:
        if kind not in _NOTIFY_TEXT or not self.notifications.wants(kind):
            return
        shown = detail or ""
        if kind == "trigger_fired" and shown.startswith("{"):
            try:
                shown = json.loads(shown).get("reason", shown)
            except ValueError:
                pass
        text = _NOTIFY_TEXT[kind].format(host=host, phase=phase, detail=shown)
        self.notifications.send(kind, text, run_id=run_id, host=host, phase=phase, step=step,
                                detail=detail)

    def event(self, run_id: str, host: str | None, phase: int, step: str | None, kind: str,
              detail: str | None = None) -> None:
        self.inner.event(run_id, host, phase, step, kind, detail)
        self._notify(run_id, host, phase, step, kind, detail)

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None) -> None:
        self.inner.move_phase(run_id, host, phase, new, kind, detail, reason)
        self._notify(run_id, host, phase, None, kind, detail)

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None) -> None:
        self.inner.move_step(run_id, host, phase, step, idx, new, kind, detail)

    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        return self.inner.step_state(run_id, host, step)

    def phase_state(self, host: str, phase: int) -> PhaseState:
        return self.inner.phase_state(host, phase)

    def finish(self, run_id: str, outcome: str) -> None:
        self.inner.finish(run_id, outcome)
