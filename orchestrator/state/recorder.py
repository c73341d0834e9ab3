"""Where the engine writes what happens: the journal, or (for a dry run) memory only.

Every state change goes through a named transition (`core.states.PhaseTransition`,
`StepTransition`) and every fact is a typed `EventKind` with a payload. The
recorder writes it durably first, then hands a `RunEvent` to the run's hooks
(notifications, live view, /metrics), so a listener never sees what the journal
does not hold.

A dry run must leave no trace but one rehearsal entry: `DryRunRecorder` keeps
states in memory with the same transition checks and writes a single
`rehearsal` event when the run ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from orchestrator.core.events import EventHooks, EventKind, EventSink, RunEvent
from orchestrator.core.states import (
    PHASE_EDGES,
    STEP_EDGES,
    PhaseState,
    PhaseTransition,
    StepState,
    StepTransition,
    advance,
)
from orchestrator.state.journal import Journal, utc_stamp


class Recorder(Protocol):
    journal: Journal
    hooks: EventSink

    def event(self, kind: EventKind, run_id: str, host: str | None, phase: int | None,
              step: str | None = None, detail: str | None = None, **payload: Any) -> None: ...

    def move_phase(self, transition: PhaseTransition, run_id: str, host: str, phase: int,
                   detail: str | None = None, reason: str | None = None,
                   **payload: Any) -> None: ...

    def move_step(self, transition: StepTransition, run_id: str, host: str, phase: int,
                  step: str, idx: int, detail: str | None = None, *,
                  owner: str | None = None, **payload: Any) -> None:
        """Move run `run_id`'s step; `owner` is the rollback run undoing it, if another."""
        ...

    def step_state(self, run_id: str, host: str, step: str) -> StepState: ...

    def phase_state(self, host: str, phase: int) -> PhaseState: ...

    def finish(self, run_id: str, outcome: str) -> None: ...

    def batch(self) -> AbstractContextManager[None]: ...


def _clean(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if v is not None}


class JournalRecorder:
    def __init__(self, journal: Journal, hooks: EventSink | None = None) -> None:
        self.journal = journal
        self.hooks: EventSink = hooks or EventHooks()
        self._local = threading.local()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Moves inside the block are one journal transaction; their events reach the hooks
        after it commits, so a listener still never sees what the journal does not hold."""
        if getattr(self._local, "held", None) is not None:
            yield
            return
        self._local.held = []
        try:
            with self.journal.batch():
                yield
        finally:
            held, self._local.held = self._local.held, None
        for event in held:
            self.hooks.emit(event)

    def _emit(self, kind: EventKind, run_id: str, host: str | None, phase: int | None,
              step: str | None, detail: str | None, payload: dict[str, Any]) -> None:
        event = RunEvent(kind, run_id, host, phase, step, detail, payload)
        held = getattr(self._local, "held", None)
        if held is not None:
            held.append(event)
        else:
            self.hooks.emit(event)

    def event(self, kind: EventKind, run_id: str, host: str | None, phase: int | None,
              step: str | None = None, detail: str | None = None, **payload: Any) -> None:
        payload = _clean(payload)
        self.journal.event(run_id, host, phase, step, kind.value, detail, payload)
        self._emit(kind, run_id, host, phase, step, detail, payload)

    def move_phase(self, transition: PhaseTransition, run_id: str, host: str, phase: int,
                   detail: str | None = None, reason: str | None = None,
                   **payload: Any) -> None:
        edge = transition.value
        payload = _clean(payload)
        self.journal.move_phase(run_id, host, phase, PhaseState(edge.target.value),
                                edge.event.value, detail,
                                reason, payload)
        self._emit(edge.event, run_id, host, phase, None, detail, payload)

    def move_step(self, transition: StepTransition, run_id: str, host: str, phase: int,
                  step: str, idx: int, detail: str | None = None, *,
                  owner: str | None = None, **payload: Any) -> None:
        edge = transition.value
        payload = _clean(payload)
        self.journal.move_step(run_id, host, phase, step, idx, StepState(edge.target.value),
                               edge.event.value, detail, payload, owner=owner)
        self._emit(edge.event, owner or run_id, host, phase, step, detail, payload)

    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        return self.journal.step_state(run_id, host, step)

    def phase_state(self, host: str, phase: int) -> PhaseState:
        return self.journal.phase_record(host, phase).state

    def finish(self, run_id: str, outcome: str) -> None:
        self.journal.end_run(run_id, outcome)


class DryRunRecorder:
    def __init__(self, journal: Journal, hooks: EventSink | None = None) -> None:
        self.journal = journal
        self.hooks: EventSink = hooks or EventHooks()
        self._phases: dict[tuple[str, int], PhaseState] = {}
        self._steps: dict[tuple[str, str], StepState] = {}
        self.timeline: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._phase: int | None = None

    def event(self, kind: EventKind, run_id: str, host: str | None, phase: int | None,
              step: str | None = None, detail: str | None = None, **payload: Any) -> None:
        with self._lock:
            self._phase = phase
            self.timeline.append({"at": utc_stamp(), "host": host, "step": step,
                                  "kind": kind.value, "detail": detail,
                                  "payload": _clean(payload)})
        self.hooks.emit(RunEvent(kind, run_id, host, phase, step, detail, _clean(payload)))

    def move_phase(self, transition: PhaseTransition, run_id: str, host: str, phase: int,
                   detail: str | None = None, reason: str | None = None,
                   **payload: Any) -> None:
        edge = transition.value
        old = self.phase_state(host, phase)
        if old is not edge.target:
            advance(PHASE_EDGES, old, edge.target)  # type: ignore[arg-type]
        self._phases[(host, phase)] = edge.target  # type: ignore[assignment]
        self.event(edge.event, run_id, host, phase, None, detail, **payload)

    def move_step(self, transition: StepTransition, run_id: str, host: str, phase: int,
                  step: str, idx: int, detail: str | None = None, *,
                  owner: str | None = None, **payload: Any) -> None:
        edge = transition.value
        advance(STEP_EDGES, self.step_state(run_id, host, step), edge.target)  # type: ignore[arg-type]
        self._steps[(host, step)] = edge.target  # type: ignore[assignment]
        self.event(edge.event, run_id, host, phase, step, detail, **payload)

    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        return self._steps.get((host, step), StepState.PENDING)

    def phase_state(self, host: str, phase: int) -> PhaseState:
        # a dry run starts from a clean slate for the phase it rehearses
        return self._phases.get((host, phase), PhaseState.PENDING)

    @contextmanager
    def batch(self) -> Iterator[None]:
        yield  # nothing is written until the end anyway

    def finish(self, run_id: str, outcome: str) -> None:
        hosts = sorted({str(e["host"]) for e in self.timeline if e["host"]})
        self.journal.event(run_id, None, self._phase, None, EventKind.REHEARSAL.value,
                           json.dumps({"dry_run": True, "outcome": outcome, "hosts": hosts,
                                       "timeline": self.timeline}),
                           {"dry_run": True, "outcome": outcome, "hosts": hosts})
